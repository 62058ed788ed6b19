package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// restartVipcast stops n's vipcast (SIGTERM) and starts it again with its
// generated config passed through edit (nil: the plain config).
func restartVipcast(t *testing.T, n *lab.Node, edit func(string) string) {
	t.Helper()
	if _, err := n.KillVipcast(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := n.WaitVipcastExit(15 * time.Second); err != nil {
		t.Fatalf("vipcast SIGTERM: %v", err)
	}
	var err error
	if edit == nil {
		err = n.StartVipcast()
	} else {
		err = n.StartVipcastEdited(edit)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// withPeerField adds a field (e.g. "ttlSecurityHops: 1") to the peer at
// address in a lab-generated config, as the lab writes it (IPv6 quoted), or
// to every peer when address is "".
func withPeerField(t *testing.T, address, field string) func(string) string {
	return func(config string) string {
		t.Helper()
		var out []string
		found := false
		for _, line := range strings.Split(config, "\n") {
			if strings.HasPrefix(line, "  - {address: "+address) && (address == "" || strings.HasPrefix(line, "  - {address: "+address+",")) {
				line = strings.Replace(line, "{", "{"+field+", ", 1)
				found = true
			}
			out = append(out, line)
		}
		if !found {
			t.Errorf("no peer %q in the lab's vipcast config:\n%s", address, config)
		}
		return strings.Join(out, "\n")
	}
}

// TestPeerSelection: peers[].nodeCIDRs. A node with no address in a peer's
// nodeCIDRs never opens that session (and says why in its log); a node
// inside them peers as usual.
func TestPeerSelection(t *testing.T) {
	lab.Require(t, lab.FRR)
	l := lab.New(t, lab.Options{Router: lab.FRR, Nodes: 3})
	t.Run("excluded-node-never-peers", func(t *testing.T) {
		l.DumpOnFailure(t)
		l.Restore(t)
		n := l.Node(3)
		t.Cleanup(func() {
			restartVipcast(t, n, nil)
			l.WaitAllRouted(t, 30*time.Second)
		})
		logStart := len(n.LogRecords())
		restartVipcast(t, n, withPeerField(t, "", "nodeCIDRs: [198.51.100.0/26]"))
		others := l.Addrs(v4, l.Except(n)...)
		l.WaitNexthops(t, v4, others, 5*time.Second)
		// Several connect retries (1s) and a rise later: still no session.
		end := time.Now().Add(5 * time.Second)
		for time.Now().Before(end) {
			if s, err := l.RouterSessions(); err == nil && s[n.Addr4] == "Established" {
				t.Fatalf("%s peered although its address %s is outside nodeCIDRs", n.Name, n.Addr4)
			}
			if _, ok := pathFrom(t, l, v4, n.Addr4); ok {
				t.Fatalf("%s's path reached the router", n.Name)
			}
			time.Sleep(100 * time.Millisecond)
		}
		l.HoldNexthops(t, v4, others, 200*time.Millisecond)
		found := false
		for _, r := range n.LogRecords()[logStart:] {
			if r["msg"] == "peer not used on this node" && strings.Contains(asString(r["reason"]), "nodeCIDRs") {
				found = true
			}
		}
		if !found {
			t.Errorf("%s's log does not say why the peer was skipped", n.Name)
		}
	})
	t.Run("included-node-peers", func(t *testing.T) {
		l.DumpOnFailure(t)
		l.Restore(t)
		n := l.Node(2)
		t.Cleanup(func() {
			restartVipcast(t, n, nil)
			l.WaitAllRouted(t, 30*time.Second)
		})
		restartVipcast(t, n, withPeerField(t, "", "nodeCIDRs: [198.51.100.0/26, 192.0.2.0/26]"))
		l.WaitAllRouted(t, 30*time.Second)
		checkPaths(t, l, v4, l.Nodes())
	})
}

func asString(v any) string { s, _ := v.(string); return s }

// TestNothingImported: routes the router advertises to the nodes (here a
// default route and 198.51.100.0/24) never reach a node's kernel: vipcast's
// GoBGP has no FIB and its import policy rejects everything.
func TestNothingImported(t *testing.T) {
	lab.Require(t, lab.FRR)
	l := lab.New(t, lab.Options{Router: lab.FRR, Nodes: 2})
	l.DumpOnFailure(t)
	before := map[string]string{}
	for _, n := range l.Nodes() {
		out, err := l.NodeExec(n, "ip", "-4", "route", "show", "table", "all")
		if err != nil {
			t.Fatal(err)
		}
		before[n.Name] = out
	}
	bgp := []string{"-c", "configure terminal", "-c", "router bgp " + fmt.Sprint(lab.RouterASN), "-c", "no bgp network import-check",
		"-c", "address-family ipv4 unicast", "-c", "network 198.51.100.0/24", "-c", "neighbor NODES default-originate"}
	if out, err := l.RouterVtysh(bgp...); err != nil {
		t.Fatalf("configuring FRR: %v\n%s", err, out)
	}
	for _, n := range l.Nodes() {
		lab.WaitFor(t, "FRR advertising 0.0.0.0/0 and 198.51.100.0/24 to "+n.Name, 10*time.Second, func() bool {
			out, err := l.RouterVtysh("-c", "show bgp ipv4 unicast neighbors "+n.Addr4.String()+" advertised-routes json")
			return err == nil && strings.Contains(out, "198.51.100.0/24") && strings.Contains(out, "0.0.0.0/0")
		})
	}
	// Give a (wrongly) importing speaker time to install.
	time.Sleep(2 * time.Second)
	for _, n := range l.Nodes() {
		out, err := l.NodeExec(n, "ip", "-4", "route", "show", "table", "all")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "198.51.100.") || out != before[n.Name] {
			t.Errorf("%s's kernel routes changed after the router advertised routes:\nbefore:\n%s\nafter:\n%s", n.Name, before[n.Name], out)
		}
	}
	// The sessions and the VIP are unaffected.
	l.WaitAllRouted(t, 5*time.Second)
	checkPaths(t, l, v4, l.Nodes())
}
