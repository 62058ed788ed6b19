package speaker

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vipcast/vipcast/peers"
	"github.com/vipcast/vipcast/policy"
)

func TestMachineGracefulShutdown(t *testing.T) {
	gs := MachineConfig{Rise: 3, Fall: 2, GracefulWait: 3 * time.Second}
	tests := []struct {
		name  string
		cfg   MachineConfig
		steps []step
	}{
		{"drain: graceful phase, then withdraw", gs, []step{
			{"peer + + +", "A:healthy"}, {"drain", "A:graceful-shutdown"}, {"+ + wait:2s", "A:graceful-shutdown"}, {"wait:1s", "W:drained"},
			{"+ + +", "W:drained"}, {"undrain", "A:healthy"},
		}},
		{"undrain during the wait cancels it", gs, []step{
			{"peer + + +", "A:healthy"}, {"drain", "A:graceful-shutdown"}, {"undrain", "A:healthy"}, {"wait:5s", "A:healthy"},
			// A new drain starts a fresh wait.
			{"drain wait:2s", "A:graceful-shutdown"}, {"wait:2s", "W:drained"},
		}},
		{"health failure during the wait withdraws at once", gs, []step{
			{"peer + + +", "A:healthy"}, {"drain", "A:graceful-shutdown"}, {"- -", "W:drained"},
			{"+ + +", "W:drained"}, // no second graceful phase
			{"wait:5s undrain", "A:healthy"},
		}},
		{"health failure never uses the graceful phase", gs, []step{
			{"peer + + +", "A:healthy"}, {"- -", "W:unhealthy"},
		}},
		{"shutdown: graceful phase, then final withdraw", gs, []step{
			{"peer + + +", "A:healthy"}, {"shutdown", "A:graceful-shutdown"}, {"undrain", "A:graceful-shutdown"},
			{"wait:3s", "W:shutting-down"}, {"+ + + undrain", "W:shutting-down"},
		}},
		{"shutdown during a drain's wait keeps its deadline", gs, []step{
			{"peer + + +", "A:healthy"}, {"drain wait:2s", "A:graceful-shutdown"}, {"shutdown", "A:graceful-shutdown"},
			{"wait:1s", "W:shutting-down"},
		}},
		{"shutdown while drained withdraws at once", gs, []step{
			{"peer + + + drain wait:3s", "W:drained"}, {"shutdown", "W:shutting-down"},
		}},
		{"no established peer: nobody to warn, withdraw at once", gs, []step{
			{"+ + +", "A:no-established-peer"}, {"drain", "W:drained"},
		}},
		{"wait 0 disables it", MachineConfig{Rise: 3, Fall: 2}, []step{
			{"peer + + +", "A:healthy"}, {"drain", "W:drained"}, {"undrain shutdown", "W:shutting-down"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { run(t, tt.cfg, tt.steps) })
	}
}

func TestMachineGracefulDecisionAndDetail(t *testing.T) {
	now := time.Unix(0, 0)
	m := NewMachine(MachineConfig{Rise: 1, Fall: 1, GracefulWait: time.Second}, []netip.Prefix{vip4}, now)
	m.SetPeerUp(true, now)
	m.Probe(ProbeResult{OK: true}, now)
	tr := m.SetDrained(true, now.Add(time.Millisecond))
	if tr == nil || tr.To != ReasonGracefulShutdown || !tr.Announce || !strings.Contains(tr.Detail, "65535:0") {
		t.Fatalf("transition = %+v", tr)
	}
	if d := m.Decisions()[0]; !d.GracefulShutdown || !d.Announce || !d.Advertised {
		t.Errorf("decision = %+v", d)
	}
	if got, want := m.GracefulUntil(), now.Add(time.Second+time.Millisecond); !got.Equal(want) {
		t.Errorf("GracefulUntil = %v, want %v", got, want)
	}
	if tr := m.Tick(now.Add(time.Second)); tr != nil {
		t.Errorf("withdrew before the wait ended: %+v", tr)
	}
	if tr := m.Tick(now.Add(time.Second + time.Millisecond)); tr == nil || tr.To != ReasonDrained || tr.Announce {
		t.Errorf("at the deadline: %+v", tr)
	}
	if d := m.Decisions()[0]; d.GracefulShutdown || !m.GracefulUntil().IsZero() {
		t.Errorf("after the wait: %+v until %v", d, m.GracefulUntil())
	}
}

var gshutTest = policy.GracefulShutdownConfig{Enabled: true, Wait: 300 * time.Millisecond, LocalPref: new(uint32(0))}

// startGraceful is start with graceful shutdown on.
func startGraceful(t *testing.T, cfg Config) *harness {
	t.Helper()
	cfg.GracefulShutdown = gshutTest
	return start(t, cfg)
}

func (h *harness) graceful() bool {
	a, ok := h.router.Announced()[vip4]
	return ok && slices.Contains(a.Communities, policy.GracefulShutdown) && a.LocalPref != nil && *a.LocalPref == 0
}

func (h *harness) plain() bool {
	a, ok := h.router.Announced()[vip4]
	return ok && !slices.Contains(a.Communities, policy.GracefulShutdown) && slices.Contains(a.Communities, 1)
}

func TestSpeakerDrainGracefulShutdown(t *testing.T) {
	h := startGraceful(t, testConfig())
	h.probe.ok.Store(true)
	h.eventually("announced", h.announced)
	h.eventually("plain attributes", h.plain)
	h.eventually("peer seen", func() bool { return h.sp.Status().Decisions[0].Advertised })

	start := time.Now()
	if err := h.sp.SetDrainedReason(context.Background(), true, "maintenance"); err != nil {
		t.Fatal(err)
	}
	// Status is recorded just after the router hears the change (reconcile,
	// then record), so wait for both.
	h.eventually("re-announced with GRACEFUL_SHUTDOWN, and so in the status", func() bool {
		d := h.sp.Status().Decisions[0]
		return h.graceful() && d.Reason == ReasonGracefulShutdown && d.Announce
	})
	h.eventually("withdrawn after the wait", h.withdrawn)
	if el := time.Since(start); el < gshutTest.Wait {
		t.Errorf("withdrawn after %v, before the %v wait", el, gshutTest.Wait)
	}
	// Status is recorded just after the router hears the withdraw.
	h.eventually("reason drained after the wait", func() bool { return h.sp.Status().Decisions[0].Reason == ReasonDrained })
	h.eventually("VIPs off lo", h.offLo)

	// Undrain during a second wait cancels it: back to plain attributes.
	if err := h.sp.SetDrained(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	h.eventually("announced again", func() bool { return h.announced() && h.plain() })
	h.eventually("peer seen", func() bool { return h.sp.Status().Decisions[0].Advertised })
	if err := h.sp.SetDrained(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	h.eventually("graceful again", h.graceful)
	if err := h.sp.SetDrained(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	h.eventually("graceful shutdown cancelled", h.plain)
	// The cancelled wait's deadline passes: nothing may withdraw. A
	// negative check's observation window, not synchronisation.
	time.Sleep(2 * gshutTest.Wait)
	if !h.plain() || h.sp.Status().Decisions[0].Reason != ReasonHealthy {
		t.Errorf("after a cancelled wait: %+v", h.sp.Status().Decisions[0])
	}
}

func TestSpeakerDrainHealthFailureSkipsTheWait(t *testing.T) {
	cfg := testConfig()
	// A wait no test outlives: only the health failure can withdraw, so
	// the test needs no clock (a 200ms bound failed once under load 30).
	cfg.GracefulShutdown = gshutTest
	cfg.GracefulShutdown.Wait = time.Hour
	h := start(t, cfg)
	h.probe.ok.Store(true)
	h.eventually("announced", h.announced)
	h.eventually("peer seen", func() bool { return h.sp.Status().Decisions[0].Advertised })
	if err := h.sp.SetDrained(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	h.eventually("graceful", h.graceful)
	h.probe.ok.Store(false)
	h.eventually("withdrawn by the health failure, not the hour-long wait", h.withdrawn)
}

func TestSpeakerShutdownGracefulShutdown(t *testing.T) {
	h := startGraceful(t, testConfig())
	h.probe.ok.Store(true)
	h.eventually("announced", h.announced)
	h.eventually("peer seen", func() bool { return h.sp.Status().Decisions[0].Advertised })
	start := time.Now()
	h.sp.Shutdown()
	// Status is recorded just after the router hears the change (reconcile,
	// then record), so wait for both.
	h.eventually("re-announced with GRACEFUL_SHUTDOWN, and so in the status", func() bool {
		return h.graceful() && h.sp.Status().Decisions[0].Reason == ReasonGracefulShutdown
	})
	if !h.addrs.Has(vip4) {
		t.Error("VIP left lo during the graceful wait")
	}
	h.eventually("withdrawn after the wait", h.withdrawn)
	if el := time.Since(start); el < gshutTest.Wait {
		t.Errorf("withdrawn after %v, before the wait", el)
	}
	if r := h.sp.Status().Decisions[0].Reason; r != ReasonShuttingDown {
		t.Errorf("reason = %s", r)
	}
	select {
	case err := <-h.done:
		h.done <- err
		if el := time.Since(start); el < gshutTest.Wait+testConfig().Shutdown.DrainPeriod {
			t.Errorf("Run returned after %v, before wait + drain period", el)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if h.router.Running() || !h.offLo() {
		t.Error("router still running or VIPs on lo after shutdown")
	}
}

func TestWithGracefulShutdownDoesNotAlias(t *testing.T) {
	base := policy.Attributes{Communities: make([]policy.Community, 1, 4)}
	g := base.WithGracefulShutdown(policy.GracefulShutdownConfig{Enabled: true, Wait: time.Second})
	if len(base.Communities) != 1 || len(g.Communities) != 2 {
		t.Errorf("base %v, graceful %v", base.Communities, g.Communities)
	}
	if base.Communities[:2][1] == policy.GracefulShutdown {
		t.Error("WithGracefulShutdown wrote into the caller's backing array")
	}
}

// A drain right after a session came up, before the periodic poll saw it,
// still uses graceful shutdown: the router already has the route.
func TestSpeakerDrainRightAfterSessionUp(t *testing.T) {
	h := startGraceful(t, testConfig())
	h.router.SetPeers(peers.PeerStatus{Address: netip.MustParseAddr("192.0.2.1"), ASN: 65000, State: peers.StateActive})
	h.probe.ok.Store(true)
	h.eventually("announced without a session", func() bool {
		return h.announced() && h.sp.Status().Decisions[0].Reason == ReasonNoPeer
	})
	h.router.SetPeers(peers.PeerStatus{Address: netip.MustParseAddr("192.0.2.1"), ASN: 65000, State: peers.StateEstablished})
	if err := h.sp.SetDrainedReason(context.Background(), true, "maintenance"); err != nil {
		t.Fatal(err)
	}
	h.eventually("re-announced with GRACEFUL_SHUTDOWN", h.graceful)
}
