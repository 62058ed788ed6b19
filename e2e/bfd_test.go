package e2e

import (
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// bfdTimers are the BFD timers of the BFD lab, on both ends: detection in
// 300 ms, an order of magnitude under the 3 s hold time.
var bfdTimers = lab.BFDOptions{Interval: 100 * time.Millisecond, Multiplier: 3}

// Trials per timed BFD scenario and router: enough for a median and a max.
const (
	bfdLinkTrials = 5
	bfdStopTrials = 2
)

// TestBFD runs vipcast's BFD against FRR's bfdd and BIRD's BFD: one 3-node
// lab per router with BFD at 100 ms x 3 on every session (hold time 3 s, as
// in TestAnycast, so anything under hold − keepalive can only be BFD), in
// vipcast's default (non-strict) mode. frr-dynamic: FRR accepts the nodes
// through `bgp listen range` (dynamic neighbors), so it creates a node's
// neighbor and BFD session only once BGP connects, and deletes both when
// BGP drops: strict BFD would never come up there.
func TestBFD(t *testing.T) {
	scenarios := []scenario{
		{"sessions-up", bfdSessionsUp},
		{"node-link-down-up", bfdLinkDownUp},
		{"vipcast-sigstop", bfdVipcastStop},
	}
	variants := []struct {
		name    string
		router  lab.Router
		dynamic bool
	}{{"frr", lab.FRR, false}, {"bird", lab.BIRD, false}, {"frr-dynamic", lab.FRR, true}}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			lab.Require(t, v.router)
			timers := bfdTimers
			l := lab.New(t, lab.Options{Router: v.router, Nodes: 3, BFD: &timers, DynamicPeers: v.dynamic})
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) {
					l.DumpOnFailure(t)
					l.Restore(t)
					sc.run(t, l)
				})
			}
		})
	}
}

// bfdMaxWithdraw is the loose bound on a BFD-driven withdraw: the hold
// timer cannot fire sooner than hold − keepalive after the last keepalive,
// so a withdraw faster than that (less a margin) was BFD's doing.
func bfdMaxWithdraw(l *lab.Lab) time.Duration {
	return l.Opts.HoldExpiryFloor()
}

// (1) BFD Up on both ends, BGP established (strict: only after BFD was
// Up); 3-way ECMP with the usual paths.
func bfdSessionsUp(t *testing.T, l *lab.Lab) {
	l.WaitRouterBFD(t, "Up", 5*time.Second, l.Nodes()...)
	s, err := l.RouterBFDSessions()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("router BFD sessions: %v", s)
	// FRR 8.4 replaces each BFD session once after the first BGP up, which
	// can cost a node its session right after the lab is ready: wait for
	// the steady state rather than sampling it once.
	l.WaitNexthops(t, v4, l.AllAddrs(v4), 30*time.Second)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) { // poll interval
		paths, err := l.RouterBGPPaths(v4)
		if err == nil && len(paths) == len(l.Nodes()) || time.Now().After(deadline) {
			break
		}
	}
	checkPaths(t, l, v4, l.Nodes())
	sess, err := l.RouterSessions()
	if err != nil {
		t.Fatal(err)
	}
	peer := lab.RouterAddr4.String()
	for _, n := range l.Nodes() {
		if sess[n.Addr4] != "Established" {
			t.Errorf("BGP session with %s: %q, want Established", n.Addr4, sess[n.Addr4])
		}
		// vipcast's side, from its log: its BFD session with the router
		// went Up, and BGP was established (strict: only after that).
		var bfdUp, established int
		for i, r := range n.LogRecords() {
			if fmt.Sprint(r["peer"]) != peer {
				continue
			}
			switch r["msg"] {
			case "bfd session state changed":
				// State is logged as its number (3) by the JSON handler.
				if st := fmt.Sprint(r["state"]); (st == "Up" || st == "3") && bfdUp == 0 {
					bfdUp = i + 1
				}
			case "BGP session established":
				if established == 0 {
					established = i + 1
				}
			}
		}
		// FRR 8.4 replaces its BFD session once BGP is up: a restart,
		// not a failure, so BGP must not have been torn down.
		if f := logsSince(n, msgBFDFailed, time.Time{}); len(f) > 0 {
			t.Errorf("%s: vipcast tore BGP down for BFD with no failure in the lab: %v", n.Name, f)
		}
		// Nor FRR (its bgpd closes BGP with Cease/BFD Down when it replaces
		// a session that was Up): non-strict, vipcast starts BFD only once
		// BGP is up, so the session FRR replaces was never Up.
		if !l.Opts.BFD.Strict {
			if e := logsSince(n, "BGP session established", time.Time{}); len(e) != 1 {
				t.Errorf("%s: BGP established %d times since start, want 1 (no flap): %v", n.Name, len(e), e)
			}
		}
		switch {
		case bfdUp == 0:
			t.Errorf("%s: vipcast never logged its BFD session with %s Up", n.Name, peer)
		case established == 0:
			t.Errorf("%s: vipcast never logged its BGP session with %s established", n.Name, peer)
		case l.Opts.BFD.Strict && established < bfdUp:
			t.Errorf("%s: strict BFD, but BGP established (log line %d) before BFD Up (line %d)", n.Name, established, bfdUp)
		}
	}
}

// samples collects one metric's trials and logs their summary.
type samples struct {
	metric string
	ds     []time.Duration
}

func (s *samples) add(d time.Duration) { s.ds = append(s.ds, d) }

func (s *samples) summary(t *testing.T, l *lab.Lab) {
	t.Helper()
	if len(s.ds) == 0 {
		return
	}
	c := slices.Clone(s.ds)
	slices.Sort(c)
	med := c[len(c)/2]
	if len(c)%2 == 0 {
		med = (c[len(c)/2-1] + c[len(c)/2]) / 2
	}
	r := func(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
	t.Logf("SUMMARY %s %s: n=%d min=%v median=%v max=%v", l.Opts.Router, s.metric, len(c), r(c[0]), r(med), r(c[len(c)-1]))
}

// expectRouterBFD checks the router's BFD state for n right now.
func expectRouterBFD(t *testing.T, l *lab.Lab, n *lab.Node, want ...string) {
	t.Helper()
	if l.Opts.DynamicPeers {
		// FRR deletes a dynamic neighbour when its session drops, and its
		// BFD session with it: no session is the down state here.
		want = append(want, "")
	}
	s, err := l.RouterBFDSessions()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(want, s[n.Addr4]) {
		t.Errorf("router BFD session with %s: %q, want one of %v", n.Name, s[n.Addr4], want)
	}
}

// (2)+(3) The node's link goes down (router side of its veth: vipcast can
// neither withdraw nor reset TCP): the router's BFD notices within its
// detection time and the nexthop leaves the FIB long before the hold time.
// Link up: BFD Up, then BGP, then the nexthop, with no action on the node.
func bfdLinkDownUp(t *testing.T, l *lab.Lab) {
	down := samples{metric: "bfd_link_down_to_fib_withdraw"}
	upBFD := samples{metric: "bfd_link_up_to_router_bfd_up"}
	upFIB := samples{metric: "bfd_link_up_to_fib_return"}
	defer down.summary(t, l)
	defer upBFD.summary(t, l)
	defer upFIB.summary(t, l)
	for i := range bfdLinkTrials {
		n := l.Node(i%len(l.Nodes()) + 1)
		t.Logf("trial %d: %s link down", i+1, n.Name)
		m, err := l.MonitorFIB(v4)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		others := addrs(l, v4, l.Except(n)...)
		t0 := time.Now()
		if err := n.LinkDown(); err != nil {
			t.Fatal(err)
		}
		gone, err := m.WaitExactly(t0, l.Opts.HoldTime+3*time.Second, others)
		if err != nil {
			t.Fatal(err)
		}
		d := gone.Sub(t0)
		l.Record(t, down.metric, d)
		down.add(d)
		if d > bfdMaxWithdraw(l) {
			t.Errorf("trial %d: route left %v after link down: that is the hold timer (%v), not BFD (detection %v)",
				i+1, d, l.Opts.HoldTime, l.Opts.BFD.DetectTime())
		}
		expectRouterBFD(t, l, n, "Down", "Init")
		// The node's own BFD detects the dead link too, a little after the
		// router did (its timer started from its last packet): wait for
		// it, so the failure it acts on is this outage and not one that
		// seems to come after the link is back.
		lab.WaitFor(t, n.Name+" vipcast sees the BFD failure", l.Opts.HoldTime+3*time.Second, func() bool {
			return len(logsSince(n, msgBFDFailed, t0)) > 0
		})

		t1 := time.Now()
		if err := n.LinkUp(); err != nil {
			t.Fatal(err)
		}
		bfdUp := l.WaitRouterBFD(t, "Up", 10*time.Second, n)
		lab.WaitFor(t, n.Name+" BGP session Established after link up", 15*time.Second, func() bool { return l.Established(n.Addr4) })
		// BFD's slow-rate handshake (up to ~1s each way), then vipcast
		// recreates the peer (no idle hold) and dials after 1-2s; the
		// bound is loose because a loaded CI host has taken 14s with the
		// old 5s idle hold. make bench measures it.
		back, err := m.WaitExactly(t1, 45*time.Second, l.AllAddrs(v4))
		if err != nil {
			t.Fatal(err)
		}
		l.Record(t, upBFD.metric, bfdUp.Sub(t1))
		l.Record(t, upFIB.metric, back.Sub(t1))
		upBFD.add(bfdUp.Sub(t1))
		upFIB.add(back.Sub(t1))
		if l.Opts.BFD.Strict && !back.After(bfdUp.Add(-10*time.Millisecond)) {
			t.Errorf("trial %d: nexthop back %v before the router saw BFD Up: BGP did not wait for BFD", i+1, bfdUp.Sub(back))
		}
		// Settled: FRR has replaced the BFD session it created with BGP
		// (dynamic neighbors: every time). That restart must not have
		// torn BGP down again: one failure (the link), one re-establishment.
		l.WaitBFDSettled(t, 30*time.Second)
		l.WaitNexthops(t, v4, l.AllAddrs(v4), 10*time.Second)
		if f := logsSince(n, msgBFDFailed, t1); len(f) > 0 {
			t.Errorf("trial %d: %s: BGP torn down by BFD after the link came back: %v", i+1, n.Name, f)
		}
		if e := logsSince(n, "BGP session established", t1); len(e) != 1 {
			t.Errorf("trial %d: %s: BGP established %d times after link up, want 1: %v", i+1, n.Name, len(e), e)
		}
		if mi := m.Missed(); mi > 0 {
			t.Logf("trial %d: %d FIB change(s) timed by the 20 ms backstop poll, not by a notification", i+1, mi)
		}
		m.Close()
	}
}

// (4) vipcast hung (SIGSTOP): its BFD stops with it, so the router drops the
// nexthop at BFD's detection time instead of the hold time; SIGCONT brings
// BFD, BGP and the nexthop back.
func bfdVipcastStop(t *testing.T, l *lab.Lab) {
	stop := samples{metric: "bfd_vipcast_sigstop_to_fib_withdraw"}
	cont := samples{metric: "bfd_vipcast_sigcont_to_fib_return"}
	defer stop.summary(t, l)
	defer cont.summary(t, l)
	for i := range bfdStopTrials {
		n := l.Node(i%len(l.Nodes()) + 1)
		t.Logf("trial %d: %s vipcast SIGSTOP", i+1, n.Name)
		m, err := l.MonitorFIB(v4)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		others := addrs(l, v4, l.Except(n)...)
		t0, err := n.KillVipcast(syscall.SIGSTOP)
		if err != nil {
			t.Fatal(err)
		}
		gone, err := m.WaitExactly(t0, l.Opts.HoldTime+3*time.Second, others)
		if err != nil {
			t.Fatal(err)
		}
		d := gone.Sub(t0)
		l.Record(t, stop.metric, d)
		stop.add(d)
		if d > bfdMaxWithdraw(l) {
			t.Errorf("trial %d: route left %v after SIGSTOP: that is the hold timer (%v), not BFD (detection %v)",
				i+1, d, l.Opts.HoldTime, l.Opts.BFD.DetectTime())
		}
		expectRouterBFD(t, l, n, "Down", "Init")

		t1, err := n.KillVipcast(syscall.SIGCONT)
		if err != nil {
			t.Fatal(err)
		}
		// BFD's slow-rate handshake (up to ~1s each way), then vipcast
		// recreates the peer (no idle hold) and dials after 1-2s; the
		// bound is loose because a loaded CI host has taken 14s with the
		// old 5s idle hold. make bench measures it.
		back, err := m.WaitExactly(t1, 45*time.Second, l.AllAddrs(v4))
		if err != nil {
			t.Fatal(err)
		}
		l.Record(t, cont.metric, back.Sub(t1))
		cont.add(back.Sub(t1))
		// Non-strict BFD starts once BGP is up, and FRR then replaces
		// the session it registered with BGP: Up follows the route.
		l.WaitRouterBFD(t, "Up", 15*time.Second, n)
		m.Close()
	}
}

const msgBFDFailed = "BFD failed: tearing the BGP session down"

// logsSince returns the times of n's vipcast log records with message msg
// at or after since.
func logsSince(n *lab.Node, msg string, since time.Time) []time.Time {
	var out []time.Time
	for _, r := range n.LogRecords() {
		if r["msg"] != msg {
			continue
		}
		s, _ := r["time"].(string)
		at, err := time.Parse(time.RFC3339Nano, s)
		if err == nil && !at.Before(since) {
			out = append(out, at)
		}
	}
	return out
}
