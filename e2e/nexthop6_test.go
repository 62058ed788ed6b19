package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// overIPv4Only edits a lab-generated vipcast config so the IPv6 VIP goes
// over the IPv4 session: the IPv6 peer is dropped and the IPv4 one carries
// both families.
func overIPv4Only(t *testing.T) func(string) string {
	addFamilies := withPeerField(t, lab.RouterAddr4.String(), "families: [ipv4, ipv6]")
	return func(config string) string {
		t.Helper()
		var out []string
		dropped := false
		for _, line := range strings.Split(addFamilies(config), "\n") {
			if strings.HasPrefix(line, fmt.Sprintf("  - {address: %q,", lab.RouterAddr6.String())) {
				dropped = true
				continue
			}
			out = append(out, line)
		}
		if !dropped {
			t.Errorf("no IPv6 peer in the lab's vipcast config:\n%s", config)
		}
		return strings.Join(out, "\n")
	}
}

// TestIPv6OverIPv4Session: issue 15 item 4. An IPv6 VIP sent over an IPv4
// session used to carry the IPv4-mapped next hop ::ffff:192.0.2.1N, which
// FRR cannot resolve: the /128 never reached the FIB while vipcast said
// "advertised". Now FRR installs it via each node's global IPv6 address on
// the link (found by vipcast itself, nothing configured). A node without
// one does not send the IPv6 VIP, says why in its status, and sends it once
// the address is back, without a restart.
func TestIPv6OverIPv4Session(t *testing.T) {
	lab.Require(t, lab.FRR)
	l := lab.New(t, lab.Options{Router: lab.FRR, Nodes: 2, IPv6: true})
	l.DumpOnFailure(t)
	v6 := lab.VIP6

	// The router: IPv6 unicast on the IPv4 sessions, and no IPv6 sessions
	// left that could bring the /128 in another way.
	cmds := []string{"-c", "configure terminal", "-c", fmt.Sprintf("router bgp %d", lab.RouterASN)}
	for _, n := range l.Nodes() {
		cmds = append(cmds, "-c", "no neighbor "+n.Addr6.String())
	}
	cmds = append(cmds, "-c", "address-family ipv6 unicast", "-c", "neighbor NODES activate")
	if out, err := l.RouterVtysh(cmds...); err != nil || len(vtyshErrors(out)) > 0 {
		t.Fatalf("vtysh %v: %v\n%s", cmds, err, out)
	}
	l.WaitNexthops(t, v6, nil, 20*time.Second)
	for _, n := range l.Nodes() {
		restartVipcast(t, n, overIPv4Only(t))
	}

	l.WaitNexthops(t, v6, l.AllAddrs(v6), 30*time.Second)
	l.WaitNexthops(t, v4, l.AllAddrs(v4), 10*time.Second)
	paths, err := l.RouterBGPPaths(v6)
	if err != nil {
		t.Fatal(err)
	}
	var peers []netip.Addr
	for _, pa := range paths {
		peers = append(peers, pa.Peer)
		if !pa.NextHop.Is6() || pa.NextHop.Is4In6() || pa.NextHop.IsLinkLocalUnicast() {
			t.Errorf("path for %s from %s: next hop %s, want the node's global IPv6 address", v6, pa.Peer, pa.NextHop)
		}
	}
	slices.SortFunc(peers, netip.Addr.Compare)
	if want := l.AllAddrs(v4); !slices.Equal(peers, want) {
		t.Errorf("%s learned from %v, want the IPv4 sessions %v", v6, peers, want)
	}

	// Node 2 loses its global IPv6 address: the IPv6 VIP is withdrawn from
	// its IPv4 session (its IPv4 VIP stays), and its status says why.
	n := l.Node(2)
	prefix6 := n.Addr6.String() + "/64"
	if out, err := l.NodeExec(n, "ip", "addr", "del", prefix6, "dev", "eth0"); err != nil {
		t.Fatalf("ip addr del: %v\n%s", err, out)
	}
	// vipcast looks again every 10s.
	l.WaitNexthops(t, v6, l.Addrs(v6, l.Node(1)), 30*time.Second)
	l.HoldNexthops(t, v4, l.AllAddrs(v4), time.Second)
	var status string
	lab.WaitFor(t, "node 2's status naming the missing IPv6 next hop", 10*time.Second, func() bool {
		status, _ = n.Vipcast("status")
		return strings.Contains(status, "IPv6 VIPs not sent") && strings.Contains(status, "no global IPv6 address on eth0")
	})

	// The address comes back: so does the IPv6 VIP, on the same session.
	if out, err := l.NodeExec(n, "ip", "addr", "add", prefix6, "dev", "eth0", "nodad"); err != nil {
		t.Fatalf("ip addr add: %v\n%s", err, out)
	}
	l.WaitNexthops(t, v6, l.AllAddrs(v6), 30*time.Second)
	lab.WaitFor(t, "node 2's status without the next hop error", 10*time.Second, func() bool {
		status, _ = n.Vipcast("status")
		return status != "" && !strings.Contains(status, "IPv6 VIPs not sent")
	})
}
