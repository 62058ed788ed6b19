package e2e

import (
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
		})
	}
}
