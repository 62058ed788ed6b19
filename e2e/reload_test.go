package e2e

import (
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// frrConnections returns FRR's established/dropped counters for peer.
func frrConnections(t *testing.T, l *lab.Lab, peer string) (established, dropped int) {
	t.Helper()
	out, err := l.RouterVtysh("-c", "show bgp neighbors "+peer+" json")
	if err != nil {
		t.Fatalf("show bgp neighbors: %v\n%s", err, out)
	}
	var doc map[string]struct {
		Established int `json:"connectionsEstablished"`
		Dropped     int `json:"connectionsDropped"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("show bgp neighbors json: %v\n%s", err, out)
	}
	return doc[peer].Established, doc[peer].Dropped
}

// TestReloadAddsPeer: a configuration reload (SIGHUP, and a file change)
// that adds a peer brings the new session up and leaves the existing one
// alone: FRR counts no new connection and no drop for it.
func TestReloadAddsPeer(t *testing.T) {
	lab.Require(t, lab.FRR)
	l := lab.New(t, lab.Options{Router: lab.FRR, Nodes: 1, IPv6: true})
	l.DumpOnFailure(t)
	n := l.Node(1)
	var full string
	onlyV4 := func(c string) string {
		full = c
		var keep []string
		for _, line := range strings.Split(c, "\n") {
			if !strings.Contains(line, "families: [ipv6]") {
				keep = append(keep, line)
			}
		}
		return strings.Join(keep, "\n")
	}
	restartVipcast(t, n, onlyV4)
	v4peer := n.Addr4.String()
	lab.WaitFor(t, "IPv4 session up", 20*time.Second, func() bool { return l.Established(n.Addr4) })
	lab.WaitFor(t, "IPv6 session down", 10*time.Second, func() bool { return !l.Established(n.Addr6) })
	time.Sleep(time.Second)
	est0, drop0 := frrConnections(t, l, v4peer)

	// Reload through the file watch: write the config with both peers.
	if err := os.WriteFile(n.ConfigFile(), []byte(full), 0o644); err != nil {
		t.Fatal(err)
	}
	lab.WaitFor(t, "IPv6 session up after the file changed", 20*time.Second, func() bool { return l.Established(n.Addr6) })
	l.WaitNexthops(t, lab.VIP6, l.AllAddrs(lab.VIP6), 10*time.Second)
	if est, drop := frrConnections(t, l, v4peer); est != est0 || drop != drop0 || !l.Established(n.Addr4) {
		t.Errorf("IPv4 session flapped on reload: established %d->%d, dropped %d->%d", est0, est, drop0, drop)
	}

	// SIGHUP with a broken file: rejected, both sessions stay.
	if err := os.WriteFile(n.ConfigFile(), []byte(full+"\nbogusKey: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, err := n.KillVipcast(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if !l.Established(n.Addr4) || !l.Established(n.Addr6) || !n.VipcastAlive() {
		t.Errorf("after a rejected reload: v4 %v, v6 %v, vipcast alive %v; want both sessions up", l.Established(n.Addr4), l.Established(n.Addr6), n.VipcastAlive())
	}
	rejected := false
	for _, r := range n.LogRecords() {
		if m, _ := r["msg"].(string); strings.Contains(m, "reload rejected") && strings.Contains(strings.ToLower(m), "boguskey") {
			rejected = true
		}
	}
	if !rejected {
		t.Error("the rejected reload is not in vipcast's log with its problem")
	}
	if est, drop := frrConnections(t, l, v4peer); est != est0 || drop != drop0 {
		t.Errorf("IPv4 session flapped: established %d->%d, dropped %d->%d", est0, est, drop0, drop)
	}
	// Leave the node with its generated config for the lab's cleanup.
	_ = os.WriteFile(n.ConfigFile(), []byte(full), 0o644)
}
