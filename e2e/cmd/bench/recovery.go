package main

// Route back after the session could come up again: a router restart and a
// node link flap. GoBGP alone holds a dropped peer Idle for 5 s; the target
// is the route back within 2 s of the moment the session can be
// re-established.

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// recoveryTrials runs trials lo..hi-1 of both: for the router restart the
// clock starts when the restarted router has its configuration (it takes
// sessions from then on) and stops when every node is back in its FIB; for
// the link flap it starts when the link comes up again, both ends having
// dropped the session, and stops when the node is back.
func (b *bench) recoveryTrials(lo, hi int) {
	b.p.Logf("route back: router restart x %d", hi-lo)
	for range hi - lo {
		b.waitAll(30 * time.Second)
		time.Sleep(300 * time.Millisecond)
		b.fatal(b.l.KillRouter())
		b.fatal(b.l.StartRouter())
		configured := time.Now()
		back, err := b.mon.WaitExactly(configured, 30*time.Second, b.l.AllAddrs(lab.VIP4))
		b.fatal(err)
		b.add("route_back_router_restart", "router restarted, configured -> every node's nexthop back in its FIB", "all", back.Sub(configured))
	}
	nodes := b.l.Nodes()
	b.p.Logf("route back: node link flap x %d", hi-lo)
	for i := lo; i < hi; i++ {
		n := nodes[i%len(nodes)]
		b.ready(n, 300*time.Millisecond)
		t0 := time.Now()
		b.fatal(n.LinkDown())
		_, err := b.mon.WaitWithout(t0, b.l.Opts.HoldTime+10*time.Second, n.Addr4)
		b.fatal(err)
		b.fatal(b.waitSessionDown(n, b.l.Opts.HoldTime+10*time.Second))
		up := time.Now()
		b.fatal(n.LinkUp())
		back, err := b.mon.WaitUntil(up, 30*time.Second, func(nh []netip.Addr) bool { return slices.Contains(nh, n.Addr4) })
		b.fatal(err)
		b.add("route_back_link_flap", "node link up again after a flap that dropped the session -> nexthop back", n.Name, back.Sub(up))
	}
	b.waitAll(30 * time.Second)
}

// waitSessionDown waits until both ends have dropped n's session: the
// router, and vipcast (its status names no established peer).
func (b *bench) waitSessionDown(n *lab.Node, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := b.l.RouterSessions()
		routerUp := err == nil && st[n.Addr4] == "Established"
		out, err := n.Vipcast("status", "-o", "json")
		nodeUp := err != nil || strings.Contains(out, "SESSION_STATE_ESTABLISHED")
		if !routerUp && !nodeUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: session still up after %v of link down (router %v, vipcast %v)", n.Name, timeout, routerUp, nodeUp)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
