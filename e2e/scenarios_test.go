package e2e

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

var routers = []lab.Router{lab.FRR, lab.BIRD}

type scenario struct {
	name string
	run  func(t *testing.T, l *lab.Lab)
}

// apiserverShutdownDelay is the main lab's --shutdown-delay-duration.
const apiserverShutdownDelay = 5 * time.Second

// TestAnycast runs the failure scenarios against one 3-node lab per router.
// Each scenario starts from the steady state (Restore) so one failure does
// not cascade into the next.
func TestAnycast(t *testing.T) {
	scenarios := []scenario{
		{"steady-state", steadyState},
		{"apiserver-sigkill", apiserverKill},
		{"apiserver-sigterm-shutdown-delay", apiserverTerm},
		{"apiserver-sigstop", apiserverStop},
		{"etcd-down", etcdDown},
		{"vipcast-sigterm", vipcastTerm},
		{"vipcast-sigkill", vipcastKill},
		{"vipcast-sigstop", vipcastStop},
		{"vipcast-restart-no-stale-vip", vipcastRestartNoStaleVIP},
		{"node-link-down", nodeLinkDown},
		{"router-restart", routerRestart},
		{"vip-deleted-from-lo", vipDeletedFromLo},
		{"second-instance-refused", secondInstanceRefused},
		{"failed-restart-after-sigkill-no-stale-vip", failedRestartNoStaleVIP},
		{"unwritable-state-file", unwritableStateFile},
		{"corrupted-state-file", corruptedStateFile},
	}
	for _, r := range routers {
		t.Run(string(r), func(t *testing.T) {
			lab.Require(t, r)
			l := lab.New(t, lab.Options{Router: r, Nodes: 3, ShutdownDelay: apiserverShutdownDelay})
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

var v4 = lab.VIP4

func addrs(l *lab.Lab, p netip.Prefix, nodes ...*lab.Node) []netip.Addr { return l.Addrs(p, nodes...) }

// (a) Three-way ECMP; every path carries the policy; clients reach every node.
func steadyState(t *testing.T, l *lab.Lab) {
	got, err := l.RouterNexthops(v4)
	if err != nil {
		t.Fatal(err)
	}
	if want := l.AllAddrs(v4); !slices.Equal(got, want) {
		t.Fatalf("FIB nexthops for %s = %v, want %v", v4, got, want)
	}
	checkPaths(t, l, v4, l.Nodes())
	for _, n := range l.Nodes() {
		if on, err := n.VIPOnLo(v4); err != nil || !on {
			t.Errorf("%s: VIP %s on lo = %v (err %v), want true while announced", n.Name, v4, on, err)
		}
	}
	spread := l.ClientSpread(v4.Addr(), 30)
	t.Logf("30 client connections to %s: %v", v4.Addr(), spread)
	for _, n := range l.Nodes() {
		if spread[n.Name] == 0 {
			t.Errorf("no client connection landed on %s: %v", n.Name, spread)
		}
	}
	for k := range spread {
		if strings.HasPrefix(k, "error") {
			t.Errorf("client connections failed: %v", spread)
		}
	}
}

// checkPaths asserts the router's BGP table has exactly one path per node,
// each with the configured AS path, MED and community.
func checkPaths(t *testing.T, l *lab.Lab, p netip.Prefix, nodes []*lab.Node) {
	t.Helper()
	paths, err := l.RouterBGPPaths(p)
	if err != nil {
		t.Fatal(err)
	}
	var peers []netip.Addr
	for _, pa := range paths {
		peers = append(peers, pa.Peer)
		if pa.ASPath != fmt.Sprint(lab.NodeASN) {
			t.Errorf("path from %s: AS path %q, want %d", pa.Peer, pa.ASPath, lab.NodeASN)
		}
		if !pa.HasMED || pa.MED != l.Opts.MED {
			t.Errorf("path from %s: MED %d (set %v), want %d", pa.Peer, pa.MED, pa.HasMED, l.Opts.MED)
		}
		if !slices.Equal(pa.Communities, l.Opts.Communities) {
			t.Errorf("path from %s: communities %v, want %v", pa.Peer, pa.Communities, l.Opts.Communities)
		}
		if pa.NextHop != pa.Peer {
			t.Errorf("path from %s: next hop %s, want the peer's own address", pa.Peer, pa.NextHop)
		}
		if !pa.Multipath {
			t.Errorf("path from %s is not a multipath", pa.Peer)
		}
	}
	if want := addrs(l, p, nodes...); !slices.Equal(peers, want) {
		t.Errorf("BGP paths for %s from %v, want from %v (%+v)", p, peers, want, paths)
	}
}

func noConnectionTo(t *testing.T, l *lab.Lab, n *lab.Node, vip netip.Addr) {
	t.Helper()
	spread := l.ClientSpread(vip, 12)
	if spread[n.Name] > 0 || len(spread) != len(l.Nodes())-1 {
		t.Errorf("client connections after %s was withdrawn: %v; want only the other nodes, no errors", n.Name, spread)
	}
}

// (b) kube-apiserver SIGKILL: the node leaves the FIB; after a restart it
// returns only once /readyz has passed `rise` probes.
func apiserverKill(t *testing.T, l *lab.Lab) {
	n := l.Node(1)
	t0, err := n.KillAPIServer(syscall.SIGKILL)
	if err != nil {
		t.Fatal(err)
	}
	gone := l.WaitNexthops(t, v4, addrs(l, v4, l.Except(n)...), 3*time.Second)
	l.Record(t, "apiserver_sigkill_to_fib_withdraw", gone.Sub(t0))
	noConnectionTo(t, l, n, v4.Addr())
	// onWithdraw: remove, after removeDelay.
	off := lab.WaitFor(t, n.Name+" VIP removed from lo", l.Opts.RemoveDelay+2*time.Second, func() bool {
		on, err := n.VIPOnLo(v4)
		return err == nil && !on
	})
	if d := off.Sub(gone); d < l.Opts.RemoveDelay/2 {
		t.Errorf("VIP left lo %v after the withdraw, want about removeDelay %v", d, l.Opts.RemoveDelay)
	}

	if err := n.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	ready, err := n.WaitReadyAt(60 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	back := l.WaitNexthops(t, v4, l.AllAddrs(v4), 10*time.Second)
	l.Record(t, "apiserver_ready_to_fib_return", back.Sub(ready))
	// rise 3 at a 100ms interval: at least 200ms between the first good
	// probe and the announcement (our own probe sees readiness within 5ms).
	minRise := time.Duration(l.Opts.Rise-1)*l.Opts.HealthInterval - 20*time.Millisecond
	if d := back.Sub(ready); d < minRise {
		t.Errorf("route returned %v after /readyz first passed; with rise %d every %v it must take at least %v",
			d, l.Opts.Rise, l.Opts.HealthInterval, minRise)
	}
	if on, _ := n.VIPOnLo(v4); !on {
		t.Errorf("%s announced but VIP not on lo", n.Name)
	}
}

// (b) SIGTERM with --shutdown-delay-duration: /readyz fails at once while
// the apiserver keeps serving, so the route must leave before it exits.
func apiserverTerm(t *testing.T, l *lab.Lab) {
	n := l.Node(2)
	t0, err := n.KillAPIServer(syscall.SIGTERM)
	if err != nil {
		t.Fatal(err)
	}
	gone := l.WaitNexthops(t, v4, addrs(l, v4, l.Except(n)...), 3*time.Second)
	alive := n.APIServerAlive()
	l.Record(t, "apiserver_sigterm_to_fib_withdraw", gone.Sub(t0))
	if !alive {
		t.Errorf("kube-apiserver exited before the route was withdrawn")
	}
	if err := n.WaitAPIServerExit(apiserverShutdownDelay + 60*time.Second); err != nil {
		t.Fatal(err)
	}
	exited := time.Now()
	t.Logf("kube-apiserver exited %v after SIGTERM; route withdrawn %v before that",
		exited.Sub(t0).Round(time.Millisecond), exited.Sub(gone).Round(time.Millisecond))
	if exited.Sub(t0) < apiserverShutdownDelay {
		t.Errorf("kube-apiserver exited %v after SIGTERM, before its %v shutdown delay: the lab is not testing the delay",
			exited.Sub(t0), apiserverShutdownDelay)
	}
}

// (b) A hung apiserver (SIGSTOP): probes time out, the node leaves; SIGCONT
// brings it back.
func apiserverStop(t *testing.T, l *lab.Lab) {
	n := l.Node(3)
	t0, err := n.KillAPIServer(syscall.SIGSTOP)
	if err != nil {
		t.Fatal(err)
	}
	gone := l.WaitNexthops(t, v4, addrs(l, v4, l.Except(n)...), 3*time.Second)
	l.Record(t, "apiserver_sigstop_to_fib_withdraw", gone.Sub(t0))
	t1, err := n.KillAPIServer(syscall.SIGCONT)
	if err != nil {
		t.Fatal(err)
	}
	back := l.WaitNexthops(t, v4, l.AllAddrs(v4), 10*time.Second)
	l.Record(t, "apiserver_sigcont_to_fib_return", back.Sub(t1))
}

// (b) etcd down: /readyz hangs (~4s before a 500), so the probe timeout
// withdraws; etcd back: the node returns.
func etcdDown(t *testing.T, l *lab.Lab) {
	n := l.Node(1)
	t0 := time.Now()
	n.StopEtcd()
	stopped := time.Now()
	gone := l.WaitNexthops(t, v4, addrs(l, v4, l.Except(n)...), 15*time.Second)
	l.Record(t, "etcd_stop_to_fib_withdraw", gone.Sub(t0))
	t.Logf("etcd took %v to stop", stopped.Sub(t0).Round(time.Millisecond))
	t1 := time.Now()
	if err := n.StartEtcd(); err != nil {
		t.Fatal(err)
	}
	back := l.WaitNexthops(t, v4, l.AllAddrs(v4), 30*time.Second)
	l.Record(t, "etcd_start_to_fib_return", back.Sub(t1))
}

// (c) vipcast SIGTERM: withdraw first, keep the VIP and the process through
// the drain period, then remove the VIP and exit 0.
func vipcastTerm(t *testing.T, l *lab.Lab) {
	n := l.Node(2)
	t0, err := n.KillVipcast(syscall.SIGTERM)
	if err != nil {
		t.Fatal(err)
	}
	gone := l.WaitNexthops(t, v4, addrs(l, v4, l.Except(n)...), 3*time.Second)
	alive := n.VipcastAlive()
	onLo, _ := n.VIPOnLo(v4)
	l.Record(t, "vipcast_sigterm_to_fib_withdraw", gone.Sub(t0))
	if !alive {
		t.Errorf("vipcast exited before the route left the router's FIB (want withdraw, then drain)")
	}
	if !onLo {
		t.Errorf("VIP left lo before the drain period ended; packets still on their way are refused")
	}
	err = n.WaitVipcastExit(l.Opts.DrainPeriod + 10*time.Second)
	exited := time.Now()
	if err != nil {
		t.Errorf("vipcast after SIGTERM: %v, want exit status 0", err)
	}
	if d := exited.Sub(t0); d < l.Opts.DrainPeriod {
		t.Errorf("vipcast exited %v after SIGTERM, before the %v drain period", d, l.Opts.DrainPeriod)
	}
	l.Record(t, "vipcast_sigterm_to_exit", exited.Sub(t0))
	if on, err := n.VIPOnLo(v4); err != nil || on {
		t.Errorf("after vipcast exited: VIP on lo = %v (err %v), want removed", on, err)
	}
	l.HoldNexthops(t, v4, addrs(l, v4, l.Except(n)...), 500*time.Millisecond)
}

// (c) vipcast SIGKILL: the kernel closes the session's socket, the router
// drops the route at once, without waiting for the hold time.
func vipcastKill(t *testing.T, l *lab.Lab) {
	n := l.Node(3)
	t0, err := n.KillVipcast(syscall.SIGKILL)
	if err != nil {
		t.Fatal(err)
	}
	gone := l.WaitNexthops(t, v4, addrs(l, v4, l.Except(n)...), l.Opts.HoldTime+2*time.Second)
	d := gone.Sub(t0)
	l.Record(t, "vipcast_sigkill_to_fib_withdraw", d)
	if d > l.Opts.HoldTime/2 {
		t.Errorf("route left %v after SIGKILL: that is the hold timer (%v), not the session's TCP close", d, l.Opts.HoldTime)
	}
	// SIGKILL leaves the VIP on lo; the next start must clean it up (see
	// vipcast-restart-no-stale-vip). Start again once the killed process
	// is reaped (BIRD can withdraw before that): the route returns.
	if err := n.WaitVipcastExit(5 * time.Second); err != nil && !strings.Contains(err.Error(), "killed") {
		t.Fatal(err)
	}
	if err := n.StartVipcast(); err != nil {
		t.Fatal(err)
	}
	l.WaitNexthops(t, v4, l.AllAddrs(v4), 15*time.Second)
}

// (c) vipcast hung (SIGSTOP): only the hold timer can notice.
func vipcastStop(t *testing.T, l *lab.Lab) {
	n := l.Node(1)
	t0, err := n.KillVipcast(syscall.SIGSTOP)
	if err != nil {
		t.Fatal(err)
	}
	gone := l.WaitNexthops(t, v4, addrs(l, v4, l.Except(n)...), l.Opts.HoldTime+2*time.Second)
	d := gone.Sub(t0)
	l.Record(t, "vipcast_sigstop_to_fib_withdraw", d)
	if min := l.Opts.HoldExpiryFloor(); d < min {
		t.Errorf("route left %v after SIGSTOP, sooner than the hold time allows (%v): what withdrew it?", d, min)
	}
	t1, _ := n.KillVipcast(syscall.SIGCONT)
	back := l.WaitNexthops(t, v4, l.AllAddrs(v4), 15*time.Second)
	l.Record(t, "vipcast_sigcont_to_fib_return", back.Sub(t1))
}

// (c) Restart after SIGKILL while the apiserver is down: the stale VIP must
// go from lo and stay away until the node is healthy and announced.
func vipcastRestartNoStaleVIP(t *testing.T, l *lab.Lab) {
	n := l.Node(2)
	others := addrs(l, v4, l.Except(n)...)
	if _, err := n.KillVipcast(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	l.WaitNexthops(t, v4, others, l.Opts.HoldTime+2*time.Second)
	if on, _ := n.VIPOnLo(v4); !on {
		t.Logf("note: VIP already gone from lo after SIGKILL (not expected, not wrong)")
	}
	if _, err := n.KillAPIServer(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := n.WaitAPIServerExit(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := n.StartVipcast(); err != nil {
		t.Fatal(err)
	}
	off := lab.WaitFor(t, "the stale VIP to leave lo after vipcast restarted with the apiserver down", 3*time.Second, func() bool {
		on, err := n.VIPOnLo(v4)
		return err == nil && !on
	})
	l.Record(t, "vipcast_start_to_stale_vip_removed", off.Sub(t0))
	// Unhealthy: neither the VIP nor the route may come back.
	end := time.Now().Add(2 * time.Second)
	for time.Now().Before(end) {
		if on, _ := n.VIPOnLo(v4); on {
			t.Fatalf("VIP back on lo while the apiserver is down")
		}
		if got, _ := l.RouterNexthops(v4); !slices.Equal(got, others) {
			t.Fatalf("FIB %v while %s's apiserver is down, want %v", got, n.Name, others)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := n.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	l.WaitNexthops(t, v4, l.AllAddrs(v4), 60*time.Second)
	if on, _ := n.VIPOnLo(v4); !on {
		t.Errorf("%s announced but VIP not on lo", n.Name)
	}
}

// (c)+(d) Node link down: the router notices at the hold time; link up:
// the session and the route come back with no action.
func nodeLinkDown(t *testing.T, l *lab.Lab) {
	n := l.Node(3)
	t0 := time.Now()
	if err := n.LinkDown(); err != nil {
		t.Fatal(err)
	}
	gone := l.WaitNexthops(t, v4, addrs(l, v4, l.Except(n)...), l.Opts.HoldTime+3*time.Second)
	d := gone.Sub(t0)
	l.Record(t, "link_down_to_fib_withdraw", d)
	if min := l.Opts.HoldExpiryFloor(); d < min {
		t.Errorf("route left %v after link down, sooner than the hold time allows (%v)", d, min)
	}
	t1 := time.Now()
	if err := n.LinkUp(); err != nil {
		t.Fatal(err)
	}
	back := l.WaitNexthops(t, v4, l.AllAddrs(v4), 20*time.Second)
	l.Record(t, "link_up_to_fib_return", back.Sub(t1))
}

// (d) Router daemons killed and restarted: every session and the 3-way
// route come back with no action on the nodes.
func routerRestart(t *testing.T, l *lab.Lab) {
	if err := l.KillRouter(); err != nil {
		t.Fatal(err)
	}
	if got, err := l.RouterNexthops(v4); err != nil || len(got) != 0 {
		t.Fatalf("FIB after killing the router and flushing its routes: %v (err %v), want empty", got, err)
	}
	t0 := time.Now()
	if err := l.StartRouter(); err != nil {
		t.Fatal(err)
	}
	// From here the router has its configuration and takes sessions: the
	// time vipcast adds (issue 13: GoBGP's 5 s idle hold made it ~6.5 s).
	configured := time.Now()
	back := l.WaitNexthops(t, v4, l.AllAddrs(v4), 30*time.Second)
	l.Record(t, "router_restart_to_fib_ecmp", back.Sub(t0))
	l.Record(t, "router_configured_to_fib_ecmp", back.Sub(configured))
	checkPaths(t, l, v4, l.Nodes())
	s, err := l.RouterSessions()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range l.AllAddrs(v4) {
		if s[a] != "Established" {
			t.Errorf("session with %s: %q after router restart, want Established", a, s[a])
		}
	}
}

// (e) The VIP deleted from lo behind vipcast's back (an admin, a network
// tool): vipcast puts it back at once, the router keeps every path, and
// status tells what happened.
func vipDeletedFromLo(t *testing.T, l *lab.Lab) {
	n := l.Node(1)
	t0 := time.Now()
	if err := n.DeleteVIP(v4.String()); err != nil {
		t.Fatal(err)
	}
	back := lab.WaitFor(t, "the deleted VIP back on lo", 3*time.Second, func() bool {
		on, err := n.VIPOnLo(v4)
		return err == nil && on
	})
	l.Record(t, "vip_deleted_to_back_on_lo", back.Sub(t0))
	l.HoldNexthops(t, v4, l.AllAddrs(v4), time.Second)
	out, err := n.Vipcast("status")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if !strings.Contains(out, "removed from the loopback behind vipcast's back; put back at once") {
		t.Errorf("status does not show the repair:\n%s", out)
	}
}

// (e) A second vipcast in the same node (a static pod and a DaemonSet pod
// during a migration), with its own API socket: it must exit at once,
// naming the running one, and leave the first one's VIP and route alone.
func secondInstanceRefused(t *testing.T, l *lab.Lab) {
	n := l.Node(2)
	cfg, err := n.VipcastConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg = strings.ReplaceAll(cfg, n.Socket(), n.Socket()+"-second")
	cfg = strings.ReplaceAll(cfg, "state.json", "state-second.json")
	cfg += "metrics: {listen: \"127.0.0.1:9181\"}\n"
	out, code, err := n.RunVipcastOnce(cfg, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code <= 0 {
		t.Errorf("second vipcast: exit code %d, want it refused at once (non-zero)\n%s", code, out)
	}
	if pid := fmt.Sprintf("pid %d", n.VipcastPID()); !strings.Contains(out, "already runs") || !strings.Contains(out, pid) {
		t.Errorf("second vipcast's message does not name the running one (%s):\n%s", pid, out)
	}
	if !n.VipcastAlive() {
		t.Fatal("the first vipcast died")
	}
	if on, err := n.VIPOnLo(v4); err != nil || !on {
		t.Errorf("first vipcast's VIP on lo = %v (err %v) after the second one exited, want true", on, err)
	}
	l.HoldNexthops(t, v4, l.AllAddrs(v4), time.Second)
}

// (e) vipcast SIGKILLed (the VIP stays on lo), then a restart that fails
// before the speaker runs: an unparseable config, then a missing CA file.
// Neither may leave the stale VIP on lo.
func failedRestartNoStaleVIP(t *testing.T, l *lab.Lab) {
	n := l.Node(3)
	cfg, err := n.VipcastConfig()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		config string
	}{
		{"unparseable-yaml", "vips: [" + v4.String() + "\nbgp: {asn: [\n"},
		{"missing-ca-file", strings.ReplaceAll(cfg, n.CertFile(), n.CertFile()+".missing")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !n.VipcastAlive() {
				if err := n.StartVipcast(); err != nil {
					t.Fatal(err)
				}
			}
			l.WaitNexthops(t, v4, l.AllAddrs(v4), 60*time.Second)
			if _, err := n.KillVipcast(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if err := n.WaitVipcastExit(5 * time.Second); err != nil && !strings.Contains(err.Error(), "killed") {
				t.Fatal(err)
			}
			// The router losing n3 orders this subtest's kill before the next
			// subtest's start: without it, the next one could see n3's old
			// route and kill a vipcast that had not put the VIP on lo yet.
			l.WaitNexthops(t, v4, l.Addrs(v4, l.Node(1), l.Node(2)), 30*time.Second)
			if on, err := n.VIPOnLo(v4); err != nil || !on {
				t.Fatalf("VIP on lo after SIGKILL = %v (err %v); the test needs it left behind", on, err)
			}
			out, code, err := n.RunVipcastOnce(tc.config, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if code <= 0 {
				t.Fatalf("vipcast with a broken config: exit code %d, want a failure\n%s", code, out)
			}
			if on, err := n.VIPOnLo(v4); err != nil || on {
				t.Errorf("after the failed restart (exit %d): stale VIP on lo = %v (err %v), want removed\n%s", code, on, err, out)
			}
		})
	}
}

// (f) The state file cannot be written (a directory stands where it
// belongs): drain still takes the node out at the router, but the CLI
// exits 3 and says the drain would not survive a restart.
func unwritableStateFile(t *testing.T, l *lab.Lab) {
	n := l.Node(1)
	path := filepath.Join(n.Dir, "state.json")
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = os.RemoveAll(path)
		_, _ = n.Vipcast("undrain")
	})
	out, err := n.Vipcast("drain", "--reason", "e2e unwritable state")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 || !strings.Contains(out, "NOT saved") {
		t.Fatalf("drain with an unwritable state file: %v, want exit status 3 naming the unsaved drain\n%s", err, out)
	}
	l.WaitNexthops(t, v4, l.Addrs(v4, l.Node(2), l.Node(3)), 30*time.Second)
	if st, err := n.Vipcast("status"); err != nil || !strings.Contains(st, "drained") {
		t.Errorf("status after the unsaved drain (err %v) does not say drained:\n%s", err, st)
	}

	// Once the path is writable again, the undrain is saved: exit 0.
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
	if out, err := n.Vipcast("undrain"); err != nil {
		t.Fatalf("undrain: %v\n%s", err, out)
	}
	l.WaitNexthops(t, v4, l.AllAddrs(v4), 60*time.Second)
}

// (f) The state file is corrupted (a crash mid-write on a file system
// without atomic rename, a stray edit): vipcast must not guess whether the
// node was drained. It refuses to start, naming the file and the fix, and
// neither the VIP nor the route come back; with the file removed it starts
// and the route returns.
func corruptedStateFile(t *testing.T, l *lab.Lab) {
	n := l.Node(2)
	if _, err := n.KillVipcast(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := n.WaitVipcastExit(l.Opts.DrainPeriod + 10*time.Second); err != nil {
		t.Fatalf("vipcast SIGTERM: %v", err)
	}
	others := addrs(l, v4, l.Except(n)...)
	l.WaitNexthops(t, v4, others, 3*time.Second)
	path := filepath.Join(n.Dir, "state.json")
	if err := os.WriteFile(path, []byte(`{"drained": tru`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(path) })
	cfg, err := n.VipcastConfig()
	if err != nil {
		t.Fatal(err)
	}
	out, code, err := n.RunVipcastOnce(cfg, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code <= 0 || !strings.Contains(out, path) || !strings.Contains(out, "fix or delete it") {
		t.Errorf("vipcast with a corrupted state file: exit %d, want a failure naming %s and the fix\n%s", code, path, out)
	}
	if on, err := n.VIPOnLo(v4); err != nil || on {
		t.Errorf("VIP on lo = %v (err %v) after the refused start, want absent", on, err)
	}
	l.HoldNexthops(t, v4, others, 500*time.Millisecond)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := n.StartVipcast(); err != nil {
		t.Fatal(err)
	}
	l.WaitNexthops(t, v4, l.AllAddrs(v4), 30*time.Second)
}
