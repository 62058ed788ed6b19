package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// TestRouteFlood: FRR leaks more routes to a node than peers[].maxPrefixes
// (default 1000; vipcast imports none). vipcast must close that session
// (Cease, maximum number of prefixes), keep it down instead of flapping,
// and say why in status and the log: GoBGP would otherwise hold every route
// (about 0.8 KB each) for as long as the session lasts.
func TestRouteFlood(t *testing.T) {
	lab.Require(t, lab.FRR)
	l := lab.New(t, lab.Options{Router: lab.FRR, Nodes: 1})
	l.DumpOnFailure(t)
	l.WaitAllRouted(t, 30*time.Second)
	n := l.Nodes()[0]

	bgp := []string{"-c", "configure terminal", "-c", "router bgp " + fmt.Sprint(lab.RouterASN), "-c", "no bgp network import-check",
		"-c", "address-family ipv4 unicast"}
	for i := range 1200 {
		bgp = append(bgp, "-c", fmt.Sprintf("network 10.%d.%d.0/24", i/256, i%256))
	}
	if out, err := l.RouterVtysh(bgp...); err != nil {
		t.Fatalf("configuring FRR: %v\n%s", err, out)
	}
	lab.WaitFor(t, "vipcast closing the session at the prefix limit", 60*time.Second, func() bool {
		out, err := n.Vipcast("status")
		return err == nil && strings.Contains(out, "prefix limit: the router sent more than 1000 ipv4-unicast routes")
	})
	logged := 0
	for _, r := range n.LogRecords() {
		if m, _ := r["msg"].(string); strings.HasPrefix(m, "BGP peer exceeded the prefix limit") {
			logged++
		}
	}
	if logged != 1 {
		t.Errorf("%d log records of the prefix limit, want 1", logged)
	}
	// The session stays down: no churn while the router keeps leaking.
	deadline := time.Now().Add(8 * time.Second) // > GoBGP's 5 s idle hold and the 1-5 s connect retry
	for time.Now().Before(deadline) {
		out, err := l.RouterVtysh("-c", "show bgp ipv4 unicast summary")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 9 && strings.TrimPrefix(f[0], "*") == n.Addr4.String() {
				if _, err := fmt.Sscan(f[9], new(int)); err == nil {
					t.Fatalf("the session came back while the router still leaks:\n%s", out)
				}
			}
		}
		time.Sleep(500 * time.Millisecond) // polling interval
	}
}
