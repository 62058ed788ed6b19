package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// lastResortPrepend is vipcast's default policy.lastResort.prepend, which
// the test leaves as it is: the default is what it proves.
const lastResortPrepend = 8

// TestLastResort: every etcd stopped at once (every /readyz fails), with
// policy.lastResort on the router keeps all three nodes as ECMP nexthops on
// degraded paths and the apiservers answer through the VIP; one node healthy
// again wins alone; with the last resort off the VIP is gone.
func TestLastResort(t *testing.T) {
	for _, r := range routers {
		t.Run(string(r), func(t *testing.T) {
			lab.Require(t, r)
			l := lab.New(t, lab.Options{Router: r, Nodes: 3, LastResort: "{enabled: true}"})
			l.DumpOnFailure(t)
			all := l.AllAddrs(v4)
			asn := fmt.Sprint(lab.NodeASN)
			degraded := strings.TrimSpace(strings.Repeat(asn+" ", 1+lastResortPrepend))
			// paths reports whether every node's path is in the router's BGP
			// table, with the AS path of a last resort for the nodes in lr
			// and a plain one for the others.
			paths := func(lr ...*lab.Node) (bool, string) {
				ps, err := l.RouterBGPPaths(v4)
				if err != nil || len(ps) != len(l.Nodes()) {
					return false, fmt.Sprintf("%+v (err %v)", ps, err)
				}
				for _, p := range ps {
					want := asn
					if slices.ContainsFunc(lr, func(n *lab.Node) bool { return n.AddrFor(v4) == p.Peer }) {
						want = degraded
					}
					if p.ASPath != want || !slices.Equal(p.Communities, l.Opts.Communities) {
						return false, fmt.Sprintf("%+v", ps)
					}
				}
				return true, ""
			}
			waitRoutes := func(what string, timeout time.Duration, fib []netip.Addr, lr ...*lab.Node) time.Time {
				t.Helper()
				var last string
				at := lab.WaitFor(t, what, timeout, func() bool {
					ok, why := paths(lr...)
					last = why
					got, err := l.RouterNexthops(v4)
					return ok && err == nil && slices.Equal(got, fib)
				})
				if t.Failed() {
					t.Logf("last BGP paths: %s", last)
				}
				return at
			}
			waitRoutes("3 healthy paths", 30*time.Second, all)

			// 1. Every etcd down: each node's /readyz hangs (~4 s, then 500),
			// so each vipcast sees timeouts and degrades after timeoutFall.
			fib, err := l.MonitorFIB(v4)
			if err != nil {
				t.Fatal(err)
			}
			defer fib.Close()
			t0 := stopEtcds(l.Nodes())
			fell := waitRoutes("3 degraded paths, all in the FIB", 30*time.Second, all, l.Nodes()...)
			l.Record(t, "etcd_stop_all_to_last_resort_ecmp", fell.Sub(t0))
			for _, s := range fib.History(t0) {
				if len(s.Nexthops) == 0 {
					t.Errorf("the FIB lost the VIP at %v after the etcds stopped: with the last resort on it must always have a nexthop (history %+v)", s.At.Sub(t0), fib.History(t0))
					break
				}
			}
			for _, n := range l.Nodes() {
				if on, err := n.VIPOnLo(v4); err != nil || !on {
					t.Errorf("%s: VIP on lo = %v (err %v), want true while a last resort", n.Name, on, err)
				}
			}
			start := time.Now()
			code, body, err := l.ClientGet("/livez", 10*time.Second)
			if err != nil || code == 0 {
				t.Errorf("GET /livez through the VIP with every etcd down: %v; want an answer from a degraded apiserver", err)
			} else {
				t.Logf("GET /livez through the VIP with every etcd down: HTTP %d in %v: %.200q", code, time.Since(start).Round(time.Millisecond), body)
			}
			if out, err := l.Node(2).Vipcast("status"); err != nil || !strings.Contains(out, "last-resort") {
				t.Errorf("vipcast status on n2 (err %v) does not show last-resort:\n%s", err, out)
			}

			// 2. n1's etcd back: n1 healthy wins alone; n2 and n3 stay as
			// degraded paths in the BGP table, out of the FIB.
			n1 := l.Node(1)
			t1 := time.Now()
			if err := n1.StartEtcd(); err != nil {
				t.Fatal(err)
			}
			back, err := fib.WaitExactly(t1, 60*time.Second, l.Addrs(v4, n1))
			if err != nil {
				t.Fatal(err)
			}
			l.Record(t, "etcd_start_to_healthy_node_alone", back.Sub(t1))
			waitRoutes("n1 healthy, n2 and n3 degraded", 10*time.Second, l.Addrs(v4, n1), l.Node(2), l.Node(3))

			// Everything healthy again before the next part.
			for _, n := range l.Except(n1) {
				if err := n.StartEtcd(); err != nil {
					t.Fatal(err)
				}
			}
			waitRoutes("3 healthy paths again", 60*time.Second, all)

			// 3. The last resort off: the same outage withdraws every node.
			l.Opts.LastResort = ""
			restartVipcasts(t, l.Nodes())
			waitRoutes("3 healthy paths after the restart", 30*time.Second, all)
			t2 := stopEtcds(l.Nodes())
			gone, err := fib.WaitExactly(t2, 30*time.Second, nil)
			if err != nil {
				t.Fatal(err)
			}
			l.Record(t, "etcd_stop_all_to_vip_gone_last_resort_off", gone.Sub(t2))
		})
	}
}

// stopEtcds stops the nodes' etcds together and returns when it began.
func stopEtcds(nodes []*lab.Node) time.Time {
	var wg sync.WaitGroup
	t0 := time.Now()
	for _, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.StopEtcd() }()
	}
	wg.Wait()
	return t0
}

// restartVipcasts restarts every node's vipcast with the lab's current
// options, the SIGTERM drains running together.
func restartVipcasts(t *testing.T, nodes []*lab.Node) {
	t.Helper()
	for _, n := range nodes {
		if _, err := n.KillVipcast(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		if err := n.WaitVipcastExit(15 * time.Second); err != nil {
			t.Fatalf("%s: vipcast SIGTERM: %v", n.Name, err)
		}
		if err := n.StartVipcast(); err != nil {
			t.Fatal(err)
		}
	}
}
