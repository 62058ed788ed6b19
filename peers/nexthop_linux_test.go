package peers

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// netnsHandle returns a netlink handle in a fresh, unnamed network
// namespace. The test's own thread never changes namespace: a throwaway
// goroutine creates it on a locked thread the runtime then destroys.
func netnsHandle(t *testing.T) *netlink.Handle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: needs root (CAP_NET_ADMIN) for a network namespace")
	}
	ch := make(chan netns.NsHandle, 1)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		ns, err := netns.New()
		if err != nil {
			errc <- err
			return
		}
		ch <- ns
	}()
	var ns netns.NsHandle
	select {
	case err := <-errc:
		t.Fatalf("new network namespace: %v", err)
	case ns = <-ch:
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

// TestGlobalIPv6At: the automatic next hop is the global IPv6 address of
// the interface the kernel routes the peer through, not of another one, and
// never a link-local address.
func TestGlobalIPv6At(t *testing.T) {
	h := netnsHandle(t)
	mustAddr := func(link netlink.Link, cidr string, flags int) {
		t.Helper()
		a, err := netlink.ParseAddr(cidr)
		if err != nil {
			t.Fatal(err)
		}
		a.Flags = flags
		if err := h.AddrAdd(link, a); err != nil {
			t.Fatalf("adding %s: %v", cidr, err)
		}
	}
	// Two links: eth0 towards the router, eth1 elsewhere with its own
	// global IPv6 address, which must not be picked.
	var links []netlink.Link
	for _, name := range []string{"eth0", "eth1"} {
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}); err != nil {
			t.Fatalf("veth %s: %v", name, err)
		}
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{name, name + "p"} {
			if err := h.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: n}}); err != nil {
				t.Fatalf("up %s: %v", n, err)
			}
		}
		links = append(links, l)
	}
	const nodad = 0x02 // IFA_F_NODAD: usable at once
	mustAddr(links[0], "192.0.2.11/24", 0)
	mustAddr(links[0], "fe80::11/64", nodad)
	mustAddr(links[1], "198.51.100.11/24", 0)
	mustAddr(links[1], "2001:db8:9::11/64", nodad)
	peer := netip.MustParseAddr("192.0.2.1")

	if a, ifname, err := globalIPv6At(h, peer); !errors.Is(err, errNoGlobalIPv6) || ifname != "eth0" {
		t.Errorf("without a global address on eth0: %v, %q, %v; want errNoGlobalIPv6 on eth0", a, ifname, err)
	}
	mustAddr(links[0], "2001:db8:2::12/64", nodad)
	mustAddr(links[0], "2001:db8:2::11/64", nodad)
	if a, ifname, err := globalIPv6At(h, peer); err != nil || ifname != "eth0" || a != netip.MustParseAddr("2001:db8:2::11") {
		t.Errorf("globalIPv6At(%s) = %v, %q, %v; want 2001:db8:2::11 on eth0", peer, a, ifname, err)
	}
	// A peer behind a gateway: the interface of the route to it.
	if err := h.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.ParseIP("203.0.113.0"), Mask: net.CIDRMask(24, 32)}, Gw: net.ParseIP("198.51.100.1"), LinkIndex: links[1].Attrs().Index}); err != nil {
		t.Fatal(err)
	}
	if a, ifname, err := globalIPv6At(h, netip.MustParseAddr("203.0.113.1")); err != nil || ifname != "eth1" || a != netip.MustParseAddr("2001:db8:9::11") {
		t.Errorf("behind a gateway: %v, %q, %v; want 2001:db8:9::11 on eth1", a, ifname, err)
	}
	if _, _, err := globalIPv6At(h, netip.MustParseAddr("100.64.0.1")); err == nil {
		t.Error("a peer with no route: no error")
	}
}
