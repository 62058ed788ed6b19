package e2e

import (
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// gshutWait is the lab's policy.gracefulShutdown.wait.
const gshutWait = 3 * time.Second

// hasGshut: FRR shows 65535:0 by its well-known name.
func hasGshut(pa lab.Path) bool {
	return slices.Contains(pa.Communities, "graceful-shutdown") || slices.Contains(pa.Communities, "65535:0")
}

// pathFrom returns the router's path for p learnt from peer.
func pathFrom(t *testing.T, l *lab.Lab, p netip.Prefix, peer netip.Addr) (lab.Path, bool) {
	t.Helper()
	paths, err := l.RouterBGPPaths(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, pa := range paths {
		if pa.Peer == peer {
			return pa, true
		}
	}
	return lab.Path{}, false
}

// gshutPhase asserts the RFC 8326 sequence after t0: the node's path comes
// back with GRACEFUL_SHUTDOWN, loses best/multipath (FRR gives a received
// GSHUT path local-pref 0) and leaves the FIB while it is still in the BGP
// table; the withdraw follows only after the wait.
func gshutPhase(t *testing.T, l *lab.Lab, n *lab.Node, t0 time.Time, statusCheck bool) {
	t.Helper()
	others := l.Addrs(v4, l.Except(n)...)
	var seen lab.Path
	marked := lab.WaitFor(t, "the path re-advertised with graceful-shutdown", gshutWait, func() bool {
		pa, ok := pathFrom(t, l, v4, n.Addr4)
		seen = pa
		return ok && hasGshut(pa)
	})
	t.Logf("GSHUT path seen %v after the drain: %+v", marked.Sub(t0), seen)
	if !slices.Contains(seen.Communities, "64512:100") {
		t.Errorf("GSHUT path lost the configured community: %v", seen.Communities)
	}
	moved := l.WaitNexthops(t, v4, others, gshutWait)
	l.Record(t, "gshut_to_fib_move", moved.Sub(t0))
	pa, ok := pathFrom(t, l, v4, n.Addr4)
	if !ok {
		t.Fatalf("%s's path left the BGP table %v after the drain, before the %v graceful wait", n.Name, time.Since(t0), gshutWait)
	}
	if pa.Best || pa.Multipath || !hasGshut(pa) {
		t.Errorf("during the graceful wait %s's path is %+v; want GSHUT, not best, not multipath", n.Name, pa)
	}
	if statusCheck {
		out, err := n.Vipcast("status", "-o", "json")
		if err != nil || !strings.Contains(out, "graceful-shutdown") {
			t.Errorf("vipcast status during the wait (err %v) does not say graceful-shutdown:\n%s", err, out)
		}
	}
	if on, err := n.VIPOnLo(v4); err != nil || !on {
		t.Errorf("VIP left lo during the graceful wait (on %v, err %v)", on, err)
	}
	gone := lab.WaitFor(t, "the path withdrawn after the wait", gshutWait+3*time.Second, func() bool {
		_, ok := pathFrom(t, l, v4, n.Addr4)
		return !ok
	})
	if d := gone.Sub(t0); d < gshutWait-200*time.Millisecond {
		t.Errorf("withdrawn %v after the drain, before the %v graceful wait", d, gshutWait)
	}
	l.Record(t, "gshut_to_withdraw", gone.Sub(t0))
	// Traffic never came back to the node during the wait.
	l.HoldNexthops(t, v4, others, 300*time.Millisecond)
}

// TestGracefulShutdown: an operator drain and a SIGTERM announce the VIP
// with GRACEFUL_SHUTDOWN (RFC 8326) for policy.gracefulShutdown.wait before
// withdrawing; FRR moves traffic away before the route disappears. An
// undrain during the wait cancels it; a health failure skips it. FRR only:
// it honours a received GSHUT from eBGP by itself; BIRD needs a filter.
func TestGracefulShutdown(t *testing.T) {
	lab.Require(t, lab.FRR)
	// Lenient health settings: a probe timeout on a loaded machine would
	// end the graceful wait early (by design) and fail the timing checks.
	l := lab.New(t, lab.Options{Router: lab.FRR, Nodes: 3, GracefulShutdownWait: gshutWait,
		HealthInterval: 200 * time.Millisecond, HealthTimeout: 180 * time.Millisecond, Fall: 4})
	t.Run("drain", func(t *testing.T) {
		l.DumpOnFailure(t)
		l.Restore(t)
		n := l.Node(1)
		t0 := time.Now()
		if out, err := n.Vipcast("drain", "--reason", "e2e graceful shutdown"); err != nil {
			t.Fatalf("drain: %v\n%s", err, out)
		}
		gshutPhase(t, l, n, t0, true)
		if out, err := n.Vipcast("undrain"); err != nil {
			t.Fatalf("undrain: %v\n%s", err, out)
		}
		l.WaitAllRouted(t, 10*time.Second)
		checkPaths(t, l, v4, l.Nodes())
	})
	t.Run("undrain-cancels", func(t *testing.T) {
		l.DumpOnFailure(t)
		l.Restore(t)
		n := l.Node(2)
		if out, err := n.Vipcast("drain"); err != nil {
			t.Fatalf("drain: %v\n%s", err, out)
		}
		lab.WaitFor(t, "graceful-shutdown path", gshutWait, func() bool {
			pa, ok := pathFrom(t, l, v4, n.Addr4)
			return ok && hasGshut(pa)
		})
		// The router has moved traffic away before the undrain; otherwise
		// its FIB could still show the old state and change under the hold.
		l.WaitNexthops(t, v4, addrs(l, v4, l.Except(n)...), gshutWait)
		if out, err := n.Vipcast("undrain"); err != nil {
			t.Fatalf("undrain: %v\n%s", err, out)
		}
		l.WaitNexthops(t, v4, l.AllAddrs(v4), 2*time.Second)
		// Past the wait: the path is still there, plain again.
		l.HoldNexthops(t, v4, l.AllAddrs(v4), gshutWait+500*time.Millisecond)
		checkPaths(t, l, v4, l.Nodes())
	})
	t.Run("health-failure-skips-it", func(t *testing.T) {
		l.DumpOnFailure(t)
		l.Restore(t)
		n := l.Node(3)
		t0, err := n.KillAPIServer(syscall.SIGKILL)
		if err != nil {
			t.Fatal(err)
		}
		gone := lab.WaitFor(t, "the path withdrawn at once", 2*time.Second, func() bool {
			pa, ok := pathFrom(t, l, v4, n.Addr4)
			if ok && hasGshut(pa) {
				t.Fatalf("a health failure sent GRACEFUL_SHUTDOWN: %+v", pa)
			}
			return !ok
		})
		t.Logf("withdrawn %v after the apiserver SIGKILL", gone.Sub(t0))
	})
	t.Run("sigterm", func(t *testing.T) {
		l.DumpOnFailure(t)
		l.Restore(t)
		n := l.Node(1)
		t0, err := n.KillVipcast(syscall.SIGTERM)
		if err != nil {
			t.Fatal(err)
		}
		gshutPhase(t, l, n, t0, false)
		if err := n.WaitVipcastExit(l.Opts.DrainPeriod + 10*time.Second); err != nil {
			t.Errorf("vipcast after SIGTERM: %v, want exit status 0", err)
		}
		if d := time.Since(t0); d < gshutWait+l.Opts.DrainPeriod {
			t.Errorf("vipcast exited %v after SIGTERM, before wait %v + drain %v", d, gshutWait, l.Opts.DrainPeriod)
		}
	})
}
