package peers

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// resolveRouterID returns the configured router ID, or for "auto" (or empty)
// the node's first global unicast IPv4 address on an up, non-loopback
// interface. The router ID only has to be unique among the router's peers,
// and a node address is the conventional choice.
func resolveRouterID(configured string) (netip.Addr, error) {
	if configured != "" && configured != "auto" {
		a, err := netip.ParseAddr(configured)
		if err != nil || !a.Is4() {
			return netip.Addr{}, fmt.Errorf("bgp.routerID %q is not an IPv4 address", configured)
		}
		return a, nil
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("bgp.routerID auto: listing interfaces: %w", err)
	}
	if a, ok := firstGlobalIPv4(ifs, (*net.Interface).Addrs); ok {
		return a, nil
	}
	return netip.Addr{}, errors.New("bgp.routerID: auto, but this node has no global IPv4 address on an up interface (an IPv6-only node?); set bgp.routerID to an IPv4 address unique among the routers' peers, e.g. 192.0.2.11")
}

// ResolveRouterID is the router ID run would use; validate calls it so a
// configuration run refuses is refused by validate too.
func ResolveRouterID(configured string) (netip.Addr, error) { return resolveRouterID(configured) }

// firstGlobalIPv4 is the selection behind resolveRouterID, split out so the
// test can feed it fake interfaces.
func firstGlobalIPv4(ifs []net.Interface, addrs func(*net.Interface) ([]net.Addr, error)) (netip.Addr, bool) {
	for i := range ifs {
		ifc := &ifs[i]
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		as, err := addrs(ifc)
		if err != nil {
			continue
		}
		for _, a := range as {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			if ip = ip.Unmap(); ip.Is4() && ip.IsGlobalUnicast() {
				return ip, true
			}
		}
	}
	return netip.Addr{}, false
}
