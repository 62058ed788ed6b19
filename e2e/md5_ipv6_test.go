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

const md5Password = "vipcast-e2e-md5"

// (e) TCP MD5: with the same key on both ends every session establishes;
// with a wrong key on one node its session never does, and vipcast's log
// says which peer is affected.
func TestMD5(t *testing.T) {
	for _, r := range routers {
		t.Run(string(r), func(t *testing.T) {
			lab.Require(t, r)
			// New returns only once both nodes are routed: that is the
			// right-password case end to end.
			l := lab.New(t, lab.Options{Router: r, Nodes: 2, MD5Password: md5Password})
			t.Run("right-password", func(t *testing.T) {
				l.DumpOnFailure(t)
				l.Restore(t)
				s, err := l.RouterSessions()
				if err != nil {
					t.Fatal(err)
				}
				for _, n := range l.Nodes() {
					if s[n.Addr4] != "Established" {
						t.Errorf("MD5 session with %s: %q, want Established", n.Addr4, s[n.Addr4])
					}
				}
				checkPaths(t, l, v4, l.Nodes())
			})
			t.Run("wrong-password", func(t *testing.T) {
				l.DumpOnFailure(t)
				l.Restore(t)
				n := l.Node(2)
				if _, err := n.KillVipcast(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				if err := n.WaitVipcastExit(10 * time.Second); err != nil {
					t.Fatalf("vipcast SIGTERM: %v", err)
				}
				l.WaitNexthops(t, v4, l.Addrs(v4, l.Node(1)), 3*time.Second)
				if err := n.SetPassword("not-the-password"); err != nil {
					t.Fatal(err)
				}
				logStart := len(n.LogRecords())
				if err := n.StartVipcast(); err != nil {
					t.Fatal(err)
				}
				// Long enough for several connect retries (1s) and rise.
				end := time.Now().Add(5 * time.Second)
				for time.Now().Before(end) {
					if l.Established(n.Addr4) {
						t.Fatalf("session with %s established with a wrong MD5 key", n.Addr4)
					}
					if got, _ := l.RouterNexthops(v4); !slices.Equal(got, l.Addrs(v4, l.Node(1))) {
						t.Fatalf("FIB %v with a wrong MD5 key on %s", got, n.Name)
					}
					time.Sleep(20 * time.Millisecond)
				}
				if !n.VipcastAlive() {
					t.Fatalf("vipcast exited with a wrong MD5 key (it should keep retrying)")
				}
				// The operator must be able to tell which session is down.
				// At info level, so WARN or ERROR, not only DEBUG.
				var mention []string
				for _, rec := range n.LogRecords()[logStart:] {
					peer, _ := rec["peer"].(string)
					level, _ := rec["level"].(string)
					msg, _ := rec["msg"].(string)
					if peer == lab.RouterAddr4.String() && (level == "WARN" || level == "ERROR") {
						mention = append(mention, level+" "+msg)
					}
				}
				t.Logf("vipcast WARN/ERROR records naming peer %s with a wrong key: %d: %.300s", lab.RouterAddr4, len(mention), strings.Join(mention, " | "))
				if len(mention) == 0 {
					t.Errorf("vipcast logs no warning naming peer %s while its session cannot establish", lab.RouterAddr4)
				}
			})
		})
	}
}

// (f) An IPv6 VIP over IPv6 peering, next to the IPv4 one.
func TestIPv6(t *testing.T) {
	v6 := lab.VIP6
	for _, r := range routers {
		t.Run(string(r), func(t *testing.T) {
			lab.Require(t, r)
			l := lab.New(t, lab.Options{Router: r, Nodes: 2, IPv6: true})
			t.Run("steady-state", func(t *testing.T) {
				l.DumpOnFailure(t)
				l.Restore(t)
				checkPaths(t, l, v6, l.Nodes())
				checkPaths(t, l, v4, l.Nodes())
				for _, n := range l.Nodes() {
					if on, err := n.VIPOnLo(v6); err != nil || !on {
						t.Errorf("%s: %s on lo = %v (err %v), want true", n.Name, v6, on, err)
					}
				}
				spread := l.ClientSpread(v6.Addr(), 20)
				t.Logf("20 client connections to %s: %v", v6.Addr(), spread)
				for _, n := range l.Nodes() {
					if spread[n.Name] == 0 {
						t.Errorf("no client connection to %s landed on %s: %v", v6.Addr(), n.Name, spread)
					}
				}
				if len(spread) != len(l.Nodes()) {
					t.Errorf("unexpected answers: %v", spread)
				}
			})
			t.Run("apiserver-sigkill", func(t *testing.T) {
				l.DumpOnFailure(t)
				l.Restore(t)
				n := l.Node(1)
				t0, err := n.KillAPIServer(syscall.SIGKILL)
				if err != nil {
					t.Fatal(err)
				}
				gone := l.WaitNexthops(t, v6, l.Addrs(v6, l.Node(2)), 3*time.Second)
				l.Record(t, "ipv6_apiserver_sigkill_to_fib_withdraw", gone.Sub(t0))
				l.WaitNexthops(t, v4, l.Addrs(v4, l.Node(2)), 3*time.Second)
				lab.WaitFor(t, "the IPv6 VIP to leave lo", 3*time.Second, func() bool {
					on, err := n.VIPOnLo(v6)
					return err == nil && !on
				})
				if err := n.StartAPIServer(); err != nil {
					t.Fatal(err)
				}
				l.WaitNexthops(t, v6, l.AllAddrs(v6), 60*time.Second)
			})
			t.Run("ipv6-refused-on-lo-withdraws", func(t *testing.T) {
				l.DumpOnFailure(t)
				l.Restore(t)
				ipv6RefusedOnLo(t, l)
			})
			t.Run("failed-restart-after-sigkill-no-stale-ipv6-vip", func(t *testing.T) {
				l.DumpOnFailure(t)
				l.Restore(t)
				failedRestartNoStaleIPv6VIP(t, l)
			})
		})
	}
}

// Issue 15 item 1: a VIP removed from lo that cannot be put back. Disabling
// IPv6 on the node's lo removes the IPv6 VIP and makes the kernel refuse it
// ("IPv6 is disabled on this device"): vipcast must withdraw the node with
// reason loopback-failed, say so in status, stay withdrawn while lo keeps
// refusing, and announce again by itself once lo takes the address.
func ipv6RefusedOnLo(t *testing.T, l *lab.Lab) {
	v6 := lab.VIP6
	n := l.Node(1)
	sysctl := func(v string) {
		t.Helper()
		if out, err := l.NodeExec(n, "sysctl", "-w", "net.ipv6.conf.lo.disable_ipv6="+v); err != nil {
			t.Fatalf("sysctl: %v\n%s", err, out)
		}
	}
	t.Cleanup(func() { _, _ = l.NodeExec(n, "sysctl", "-w", "net.ipv6.conf.lo.disable_ipv6=0") })
	t0 := time.Now()
	sysctl("1")
	gone := l.WaitNexthops(t, v6, l.Addrs(v6, l.Node(2)), 5*time.Second)
	l.Record(t, "ipv6_refused_on_lo_to_fib_withdraw", gone.Sub(t0))
	l.WaitNexthops(t, v4, l.Addrs(v4, l.Node(2)), 5*time.Second)
	var status string
	lab.WaitFor(t, "status naming the loopback failure", 5*time.Second, func() bool {
		status, _ = n.Vipcast("status")
		return strings.Contains(status, "loopback-failed") && strings.Contains(status, "putting it back failed")
	})
	l.HoldNexthops(t, v6, l.Addrs(v6, l.Node(2)), time.Second)
	if !n.VipcastAlive() {
		t.Fatal("vipcast exited")
	}
	t1 := time.Now()
	sysctl("0")
	back := l.WaitNexthops(t, v6, l.AllAddrs(v6), 15*time.Second)
	l.Record(t, "ipv6_allowed_on_lo_to_fib_return", back.Sub(t1))
	l.WaitNexthops(t, v4, l.AllAddrs(v4), 5*time.Second)
	if on, err := n.VIPOnLo(v6); err != nil || !on {
		t.Errorf("%s announced again but %s on lo = %v (err %v)", n.Name, v6, on, err)
	}
}

// Issue 15 item 3 for IPv6: IPv6 addresses have no labels, yet a restart
// after a SIGKILL that cannot even parse its configuration must remove the
// stale IPv6 VIP (vipcast marks it with the address protocol).
func failedRestartNoStaleIPv6VIP(t *testing.T, l *lab.Lab) {
	v6 := lab.VIP6
	n := l.Node(2)
	if _, err := n.KillVipcast(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := n.WaitVipcastExit(5 * time.Second); err != nil && !strings.Contains(err.Error(), "killed") {
		t.Fatal(err)
	}
	if on, err := n.VIPOnLo(v6); err != nil || !on {
		t.Fatalf("%s on lo after SIGKILL = %v (err %v); the test needs it left behind", v6, on, err)
	}
	out, code, err := n.RunVipcastOnce("vips: ["+v6.String()+"\nbgp: {asn: [\n", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code <= 0 {
		t.Fatalf("vipcast with an unparseable config: exit code %d, want a failure\n%s", code, out)
	}
	for _, p := range []netip.Prefix{v6, v4} {
		if on, err := n.VIPOnLo(p); err != nil || on {
			t.Errorf("after the failed restart (exit %d): stale %s on lo = %v (err %v), want removed\n%s", code, p, on, err, out)
		}
	}
}
