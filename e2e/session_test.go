package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// neverEstablished watches n's session with the router for d.
func neverEstablished(t *testing.T, l *lab.Lab, n *lab.Node, d time.Duration, why string) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if l.Established(n.Addr4) {
			t.Fatalf("%s's session established although %s", n.Name, why)
		}
	}
}

// TestTTLSecurity: GTSM (RFC 5082) with FRR's "ttl-security hops 1". FRR
// drops vipcast's packets unless they carry TTL 255, and vipcast drops
// FRR's unless FRR sends 255: the session comes up only with GTSM on both
// ends.
func TestTTLSecurity(t *testing.T) {
	lab.Require(t, lab.FRR)
	l := lab.New(t, lab.Options{Router: lab.FRR, Nodes: 1})
	l.DumpOnFailure(t)
	n := l.Node(1)
	t.Cleanup(func() { restartVipcast(t, n, nil) })
	frr := func(cmd string) {
		t.Helper()
		out, err := l.RouterVtysh("-c", "configure terminal", "-c", fmt.Sprintf("router bgp %d", lab.RouterASN), "-c", cmd)
		if err != nil {
			t.Fatalf("vtysh %q: %v\n%s", cmd, err, out)
		}
		// FRR resets the session itself on a ttl-security change.
	}
	gtsm := withPeerField(t, lab.RouterAddr4.String(), "ttlSecurityHops: 1")

	frr(fmt.Sprintf("neighbor %s ttl-security hops 1", n.Addr4))
	restartVipcast(t, n, nil)
	neverEstablished(t, l, n, 5*time.Second, "vipcast sends TTL 1 and FRR wants 255")

	restartVipcast(t, n, gtsm)
	lab.WaitFor(t, "the session with GTSM on both ends", 20*time.Second, func() bool { return l.Established(n.Addr4) })
	l.WaitNexthops(t, v4, l.AllAddrs(v4), 10*time.Second)

	frr(fmt.Sprintf("no neighbor %s ttl-security hops 1", n.Addr4))
	lab.WaitFor(t, "FRR to drop the session after the change", 10*time.Second, func() bool { return !l.Established(n.Addr4) })
	neverEstablished(t, l, n, 5*time.Second, "FRR sends TTL 1 and vipcast wants 255")
}

// TestGracefulRestart: with peers[].gracefulRestart, a crashed vipcast
// (SIGKILL) leaves its route in FRR as stale, so traffic keeps reaching the
// node (its apiserver still runs); the restarted vipcast refreshes it.
// Without it (the default) the route goes at once: TestAnycast's
// vipcast-sigkill.
func TestGracefulRestart(t *testing.T) {
	lab.Require(t, lab.FRR)
	l := lab.New(t, lab.Options{Router: lab.FRR, Nodes: 2})
	l.DumpOnFailure(t)
	n := l.Node(1)
	t.Cleanup(func() {
		if !n.VipcastAlive() {
			if err := n.StartVipcast(); err != nil {
				t.Error(err)
			}
			return
		}
		restartVipcast(t, n, nil)
	})
	restartVipcast(t, n, withPeerField(t, lab.RouterAddr4.String(), "gracefulRestart: {enabled: true, restartTime: 20s}"))
	l.WaitNexthops(t, v4, l.AllAddrs(v4), 20*time.Second)
	caps, err := l.RouterVtysh("-c", "show bgp neighbors "+n.Addr4.String()+" json")
	if err != nil || !strings.Contains(caps, `"remoteGrMode":"Restart"`) {
		t.Fatalf("FRR does not see %s as a graceful-restart speaker (remoteGrMode Restart) (%v):\n%s", n.Name, err, caps)
	}

	if _, err := n.KillVipcast(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	lab.WaitFor(t, "FRR to see the session drop", 5*time.Second, func() bool { return !l.Established(n.Addr4) })
	// The route stays (stale) well past the ~100ms a SIGKILL takes without
	// graceful restart, and clients still reach the node.
	l.HoldNexthops(t, v4, l.AllAddrs(v4), 3*time.Second)
	out, err := l.RouterVtysh("-c", "show bgp ipv4 unicast "+v4.String()+" json")
	if err != nil || !strings.Contains(out, `"stale":true`) {
		t.Errorf("FRR does not mark %s's path stale (%v):\n%s", n.Name, err, out)
	}
	spread := l.ClientSpread(v4.Addr(), 20)
	if spread[n.Name] == 0 {
		t.Errorf("no client connection reached %s while its route was stale: %v", n.Name, spread)
	}

	if err := n.StartVipcast(); err != nil {
		t.Fatal(err)
	}
	lab.WaitFor(t, "the session back", 20*time.Second, func() bool { return l.Established(n.Addr4) })
	lab.WaitFor(t, "the path refreshed (not stale)", 20*time.Second, func() bool {
		out, err := l.RouterVtysh("-c", "show bgp ipv4 unicast "+v4.String()+" json")
		return err == nil && !strings.Contains(out, `"stale":true`) && strings.Count(out, `"peerId"`) == 2
	})
	l.WaitNexthops(t, v4, l.AllAddrs(v4), 5*time.Second)
}
