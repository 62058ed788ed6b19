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
		started := time.Now()
		b.fatal(b.l.StartRouter())
		configured := time.Now()
		back, err := b.mon.WaitExactly(configured, 30*time.Second, b.l.AllAddrs(lab.VIP4))
		b.fatal(err)
		b.add("route_back_router_restart", "router restarted, configured -> every node's nexthop back in its FIB", "all", back.Sub(configured))
		// FRR keeps no session before bgpd releases its config-pending
		// hold (a few seconds after vtysh -f): that is when the session
		// can be re-established, the starting point.
		if released, ok := b.l.RouterReleased(started); ok {
			b.add("route_back_router_restart_from_release", "FRR bgpd released from config-pending hold -> every node's nexthop back in its FIB", "all", back.Sub(released))
		}
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
		ready := b.routerReady(n, up, 30*time.Second)
		back, err := b.mon.WaitUntil(up, 30*time.Second, func(nh []netip.Addr) bool { return slices.Contains(nh, n.Addr4) })
		b.fatal(err)
		b.add("route_back_link_flap", "node link up again after a flap that dropped the session -> nexthop back", n.Name, back.Sub(up))
		b.add("route_back_link_flap_from_router_ready", "link up and the router's session out of Idle (its error-wait backoff) -> nexthop back", n.Name, back.Sub(ready))
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

// routerReady is when the router would take n's session again after the
// link came up at up: at once, or when its session leaves Idle. Routers
// back off after a session error, and repeated errors lengthen it: BIRD's
// "error wait time" (1 s doubling to 5 s in the lab) refuses connections
// until it ends. That wait is the router's, not vipcast's, so the target is
// timed from whichever comes later.
func (b *bench) routerReady(n *lab.Node, up time.Time, timeout time.Duration) time.Time {
	deadline := up.Add(timeout)
	for first := true; ; first = false {
		st, err := b.l.RouterSessions()
		if err == nil && st[n.Addr4] != "" && st[n.Addr4] != "Idle" {
			if first {
				return up
			}
			return time.Now()
		}
		if time.Now().After(deadline) {
			b.fatal(fmt.Errorf("%s: the router's session still Idle %v after link up", n.Name, timeout))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
