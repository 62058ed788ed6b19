package peers

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// globalIPv6Towards asks the kernel which interface routes to peer (the
// session's interface) and returns that interface's global IPv6 address.
// Addresses still in duplicate address detection, failed it, deprecated or
// temporary (privacy) are skipped: the router must reach the next hop for as
// long as the route lives.
func globalIPv6Towards(peer netip.Addr) (netip.Addr, string, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return netip.Addr{}, "", fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	return globalIPv6At(h, peer)
}

// globalIPv6At is globalIPv6Towards in h's network namespace.
func globalIPv6At(h *netlink.Handle, peer netip.Addr) (netip.Addr, string, error) {
	routes, err := h.RouteGet(net.IP(peer.AsSlice()))
	if err != nil {
		return netip.Addr{}, "", fmt.Errorf("route to %s: %w", peer, err)
	}
	if len(routes) == 0 || routes[0].LinkIndex == 0 {
		return netip.Addr{}, "", fmt.Errorf("route to %s: %w", peer, errors.New("the kernel names no interface"))
	}
	link, err := h.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return netip.Addr{}, "", fmt.Errorf("interface %d towards %s: %w", routes[0].LinkIndex, peer, err)
	}
	name := link.Attrs().Name
	addrs, err := h.AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		return netip.Addr{}, name, fmt.Errorf("addresses of %s: %w", name, err)
	}
	var cands []netip.Addr
	for _, a := range addrs {
		if a.Scope != unix.RT_SCOPE_UNIVERSE || a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED|unix.IFA_F_DEPRECATED|unix.IFA_F_TEMPORARY) != 0 {
			continue
		}
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			cands = append(cands, ip)
		}
	}
	if a, ok := pickGlobalIPv6(cands); ok {
		return a, name, nil
	}
	return netip.Addr{}, name, errNoGlobalIPv6
}
