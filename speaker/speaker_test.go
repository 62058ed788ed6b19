package speaker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vipcast/vipcast/peers"
	"github.com/vipcast/vipcast/peers/testutil"
	"github.com/vipcast/vipcast/policy"
	"github.com/vipcast/vipcast/speaker/addrtest"
)

// switchProber answers from a switch the test flips.
type switchProber struct{ ok atomic.Bool }

func (p *switchProber) Probe(ctx context.Context) ProbeResult {
	if p.ok.Load() {
		return ProbeResult{At: time.Now(), OK: true, Code: 200, Reason: "ok"}
	}
	return ProbeResult{At: time.Now(), Reason: "connection refused"}
}

var (
	vip4 = netip.MustParsePrefix("203.0.113.10/32")
	vip6 = netip.MustParsePrefix("2001:db8:ffff::10/128")
)

func testConfig() Config {
	c := Default()
	c.VIPs = []string{vip4.String(), vip6.String()}
	c.Health.Interval = 5 * time.Millisecond
	c.Health.Timeout = 4 * time.Millisecond
	c.Loopback.RemoveDelay = 50 * time.Millisecond
	c.Shutdown.DrainPeriod = 300 * time.Millisecond
	c.Attributes = policy.Attributes{Communities: []policy.Community{1}}
	return c
}

type harness struct {
	t      *testing.T
	sp     *Speaker
	router *peers.Fake
	addrs  *addrtest.Addrs
	probe  *switchProber
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg Config, stale ...netip.Prefix) *harness {
	t.Helper()
	return startWith(t, cfg, func(*Deps) {}, stale...)
}

// startWith is start with the Deps adjusted by mod before New.
func startWith(t *testing.T, cfg Config, mod func(*Deps), stale ...netip.Prefix) *harness {
	t.Helper()
	// No cfg.Validate: the tests run faster than the validated ranges allow.
	vips, err := cfg.Prefixes()
	if err != nil {
		t.Fatal(err)
	}
	router := peers.NewFake(vips, peers.PeerStatus{Address: netip.MustParseAddr("192.0.2.1"), ASN: 65000, State: peers.StateEstablished})
	h := &harness{t: t, router: router, addrs: addrtest.New(router.IsAnnounced, stale...), probe: &switchProber{}, done: make(chan error, 1)}
	d := Deps{Router: router, Addresses: h.addrs, Prober: h.probe}
	mod(&d)
	sp, err := New(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	h.sp = sp
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- sp.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
		for _, e := range h.addrs.Errors() {
			t.Error(e)
		}
	})
	return h
}

// eventually polls cond until it holds or the deadline passes.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	testutil.Eventually(h.t, what, cond, func() string { return fmt.Sprintf("status %+v", h.sp.Status()) })
}

func (h *harness) announced() bool {
	return h.router.IsAnnounced(vip4) && h.router.IsAnnounced(vip6) && h.addrs.Has(vip4) && h.addrs.Has(vip6)
}

func (h *harness) withdrawn() bool { return !h.router.IsAnnounced(vip4) && !h.router.IsAnnounced(vip6) }

func (h *harness) offLo() bool { return !h.addrs.Has(vip4) && !h.addrs.Has(vip6) }

func TestSpeakerFollowsHealth(t *testing.T) {
	h := start(t, testConfig())
	h.eventually("status reports starting or unhealthy", func() bool {
		r := h.sp.Status().Decisions[0].Reason
		return r == ReasonStarting || r == ReasonUnhealthy
	})
	if !h.withdrawn() || !h.offLo() {
		t.Fatal("announced before any healthy probe")
	}
	h.probe.ok.Store(true)
	h.eventually("announced with VIPs on lo", h.announced)
	h.eventually("status healthy and advertised", func() bool {
		d := h.sp.Status().Decisions
		return d[0].Reason == ReasonHealthy && d[0].Advertised && d[1].Advertised
	})
	if got := h.router.Announced()[vip4]; len(got.Communities) != 1 {
		t.Errorf("attributes not passed through: %+v", got)
	}

	h.probe.ok.Store(false)
	h.eventually("withdrawn", h.withdrawn)
	if !h.addrs.Has(vip4) {
		t.Error("VIP left lo at the withdraw; want it kept for removeDelay")
	}
	h.eventually("VIPs removed from lo after removeDelay", h.offLo)
	st := h.sp.Status()
	if st.Decisions[0].Reason != ReasonUnhealthy || st.LastProbe.Reason != "connection refused" {
		t.Errorf("status = %+v", st)
	}
	if n := len(st.Transitions); n < 2 {
		t.Errorf("transitions = %+v", st.Transitions)
	}

	h.probe.ok.Store(true)
	h.eventually("announced again", h.announced)
}

func TestSpeakerKeepOnWithdraw(t *testing.T) {
	cfg := testConfig()
	cfg.Loopback.OnWithdraw = OnWithdrawKeep
	h := start(t, cfg)
	h.probe.ok.Store(true)
	h.eventually("announced", h.announced)
	h.probe.ok.Store(false)
	h.eventually("withdrawn", h.withdrawn)
	// Several removeDelays pass: the address must stay. The sleep below
	// samples a negative check's observation window, not synchronisation:
	// on a slow machine it sees less, it never fails wrongly.
	deadline := time.Now().Add(4 * cfg.Loopback.RemoveDelay)
	for time.Now().Before(deadline) {
		if !h.addrs.Has(vip4) {
			t.Fatal("VIP removed with onWithdraw: keep")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSpeakerReannounceCancelsRemoval(t *testing.T) {
	cfg := testConfig()
	cfg.Loopback.RemoveDelay = time.Hour
	h := start(t, cfg)
	h.probe.ok.Store(true)
	h.eventually("announced", h.announced)
	h.probe.ok.Store(false)
	h.eventually("withdrawn", h.withdrawn)
	h.probe.ok.Store(true)
	h.eventually("announced again", h.announced)
}

func TestSpeakerCleansStaleVIPsAtStart(t *testing.T) {
	h := start(t, testConfig(), vip4, vip6)
	h.eventually("stale VIPs removed before any health", func() bool { return h.offLo() })
	if h.addrs.Cleanups() < 1 {
		t.Fatal("Cleanup not called at start")
	}
}

func TestSpeakerGracefulShutdown(t *testing.T) {
	h := start(t, testConfig())
	h.probe.ok.Store(true)
	h.eventually("announced", h.announced)
	began := time.Now()
	h.sp.Shutdown()
	h.eventually("withdrawn on shutdown", h.withdrawn)
	if !h.addrs.Has(vip4) && time.Since(began) < 250*time.Millisecond {
		t.Error("VIP removed before the drain period ended")
	}
	select {
	case err := <-h.done:
		h.done <- err // for Cleanup
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Shutdown")
	}
	if d := time.Since(began); d < 300*time.Millisecond {
		t.Errorf("returned after %v, before the 300ms drain period", d)
	}
	if !h.offLo() || h.router.Running() {
		t.Errorf("after shutdown: on lo %v, router running %v", !h.offLo(), h.router.Running())
	}
	if r := h.sp.Status().Decisions[0].Reason; r != ReasonShuttingDown {
		t.Errorf("reason = %s", r)
	}
}

func TestSpeakerSecondSignalSkipsDrain(t *testing.T) {
	cfg := testConfig()
	cfg.Shutdown.DrainPeriod = time.Hour
	h := start(t, cfg)
	h.probe.ok.Store(true)
	h.eventually("announced", h.announced)
	h.sp.Shutdown()
	h.eventually("withdrawn", h.withdrawn)
	h.cancel()
	select {
	case err := <-h.done:
		h.done <- err
	case <-time.After(5 * time.Second):
		t.Fatal("Run still draining after the context was cancelled")
	}
	if !h.offLo() || h.router.Running() {
		t.Error("VIPs or sessions left after a hard stop")
	}
}

func TestSpeakerDrain(t *testing.T) {
	h := start(t, testConfig())
	h.probe.ok.Store(true)
	h.eventually("announced", h.announced)
	ctx := context.Background()
	if err := h.sp.SetDrained(ctx, true); err != nil {
		t.Fatal(err)
	}
	// Status is recorded just after the router hears the change (reconcile,
	// then record), so wait for both.
	h.eventually("withdrawn by drain, and so in the status", func() bool {
		return h.withdrawn() && h.sp.Status().Decisions[0].Reason == ReasonDrained
	})
	if err := h.sp.SetDrained(ctx, false); err != nil {
		t.Fatal(err)
	}
	h.eventually("announced after undrain", h.announced)
}

func TestSpeakerRetriesFailedAnnounce(t *testing.T) {
	h := start(t, testConfig())
	h.router.SetError("Set", errors.New("injected"))
	h.probe.ok.Store(true)
	h.eventually("announce attempted", func() bool { return h.router.Calls().Set >= 2 })
	if !h.withdrawn() {
		t.Fatal("announced despite errors")
	}
	h.router.SetError("Set", nil)
	h.eventually("announced once the router recovers", h.announced)
}

func TestSpeakerNoEstablishedPeer(t *testing.T) {
	h := start(t, testConfig())
	h.router.SetPeers(peers.PeerStatus{Address: netip.MustParseAddr("192.0.2.1"), State: peers.StateActive})
	h.probe.ok.Store(true)
	h.eventually("in the RIB and on lo", h.announced)
	h.eventually("reported as not advertised", func() bool {
		d := h.sp.Status().Decisions[0]
		return d.Reason == ReasonNoPeer && !d.Advertised
	})
	h.eventually("the session's state in status", func() bool {
		return slices.ContainsFunc(h.sp.Status().Peers, func(p peers.PeerStatus) bool { return p.State == peers.StateActive })
	})
}

func TestNewRequiresDeps(t *testing.T) {
	if _, err := New(testConfig(), Deps{}); err == nil {
		t.Fatal("New with no deps succeeded")
	}
}

// closingProber is a switchProber whose connection the test can "close".
type closingProber struct {
	switchProber
	closed chan struct{}
	probes atomic.Int64
}

func (p *closingProber) Probe(ctx context.Context) ProbeResult {
	p.probes.Add(1)
	return p.switchProber.Probe(ctx)
}
func (p *closingProber) Closed() <-chan struct{} { return p.closed }

// TestCrashIsProbedAtOnce: with an hour between scheduled probes, only a
// close heard on the connection and the fast confirmation of a definite
// failure can withdraw the VIP within the test's deadline.
func TestCrashIsProbedAtOnce(t *testing.T) {
	cfg := testConfig()
	cfg.Health.Interval = time.Hour
	cfg.Health.ConfirmInterval = 5 * time.Millisecond
	cfg.Health.Rise, cfg.Health.Fall = 1, 2
	p := &closingProber{closed: make(chan struct{}, 1)}
	p.ok.Store(true)
	h := startWith(t, cfg, func(d *Deps) { d.Prober = p })
	h.eventually("announced after the first probe", h.announced)
	if n := p.probes.Load(); n != 1 {
		t.Fatalf("%d probes before any close, want 1", n)
	}

	p.ok.Store(false)
	p.closed <- struct{}{} // the apiserver died: its connection closed
	h.eventually("withdrawn: a probe at once, confirmed fast", h.withdrawn)
	if n := p.probes.Load(); n != 3 {
		t.Errorf("%d probes, want 3: the first, the one the close started and its confirmation", n)
	}
}

// watchingAddrs is an addrtest.Addrs that also reports removals, as the netlink
// watch does.
type watchingAddrs struct {
	*addrtest.Addrs
	removed chan netip.Prefix
}

func (w watchingAddrs) WatchRemovals(ctx context.Context, removed chan<- netip.Prefix) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case p := <-w.removed:
			select {
			case removed <- p:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

func TestSpeakerPutsBackVIPRemovedFromLo(t *testing.T) {
	for _, watch := range []bool{true, false} {
		t.Run(fmt.Sprintf("watch=%v", watch), func(t *testing.T) {
			removed := make(chan netip.Prefix)
			h := startWith(t, testConfig(), func(d *Deps) {
				if watch {
					d.Addresses = watchingAddrs{d.Addresses.(*addrtest.Addrs), removed}
				}
			})
			h.probe.ok.Store(true)
			h.eventually("announced and healthy", func() bool {
				return h.announced() && h.sp.Status().Decisions[0].Reason == ReasonHealthy
			})
			h.addrs.Vanish(vip4)
			if watch {
				removed <- vip4
			} // else: the periodic check (loopbackCheck) finds it
			h.eventually("VIP back on lo", func() bool { return h.addrs.Has(vip4) })
			h.eventually("the repair in the transitions", func() bool {
				trs := h.sp.Status().Transitions
				return len(trs) > 0 && len(trs[len(trs)-1].Loopback) == 1
			})
			tr := h.sp.Status().Transitions
			last := tr[len(tr)-1]
			if last.From != ReasonHealthy || last.To != ReasonHealthy || !last.Announce || last.Loopback[0] != vip4 || !strings.Contains(last.Detail, "put back") {
				t.Errorf("last transition %+v, want healthy -> healthy reporting %s put back", last, vip4)
			}
			for _, c := range h.router.History() {
				if strings.HasPrefix(c, "withdraw") {
					t.Errorf("route withdrawn although the VIP was put back: history %v", h.router.History())
				}
			}
		})
	}
}

func TestSpeakerWithdrawsWhenVIPCannotBePutBack(t *testing.T) {
	removed := make(chan netip.Prefix)
	h := startWith(t, testConfig(), func(d *Deps) { d.Addresses = watchingAddrs{d.Addresses.(*addrtest.Addrs), removed} })
	h.probe.ok.Store(true)
	h.eventually("announced", h.announced)
	h.addrs.FailAdd(errors.New("operation not permitted"))
	h.addrs.Vanish(vip6)
	removed <- vip6
	// Status is recorded just after the router hears the change (reconcile,
	// then record), so wait for both.
	h.eventually("withdrawn with "+string(ReasonLoopbackFailed)+", and so in the status", func() bool {
		d := h.sp.Status().Decisions[0]
		return h.withdrawn() && d.Reason == ReasonLoopbackFailed && !d.Announce
	})
	st := h.sp.Status()
	last := st.Transitions[len(st.Transitions)-1]
	if last.To != ReasonLoopbackFailed || !strings.Contains(last.Detail, "operation not permitted") || len(last.Loopback) != 1 {
		t.Errorf("last transition %+v, want one to %s naming the error", last, ReasonLoopbackFailed)
	}
	// Once the address can be added again (the periodic retry), the VIPs
	// go back on lo and are announced again.
	h.addrs.FailAdd(nil)
	h.eventually("announced again", h.announced)
}

// notifyingRouter is the fake router with session-change notices, as
// GoBGP gives them.
type notifyingRouter struct {
	*peers.Fake
	changed chan struct{}
}

func (r *notifyingRouter) SessionsChanged() <-chan struct{} { return r.changed }

// TestSessionNoticeUpdatesStatus: with a router that says when a session
// changes, the loop reads the sessions then; with the backstop poll an hour
// away, only the notice can bring the change into status.
func TestSessionNoticeUpdatesStatus(t *testing.T) {
	old := peerPollNotifier
	peerPollNotifier = time.Hour
	t.Cleanup(func() { peerPollNotifier = old }) // after the speaker's own cleanup has stopped Run
	var nr *notifyingRouter
	h := startWith(t, testConfig(), func(d *Deps) {
		nr = &notifyingRouter{Fake: d.Router.(*peers.Fake), changed: make(chan struct{}, 1)}
		d.Router = nr
	})
	h.probe.ok.Store(true)
	h.eventually("in the RIB and on lo", h.announced)
	h.router.SetPeers(peers.PeerStatus{Address: netip.MustParseAddr("192.0.2.1"), State: peers.StateActive})
	nr.changed <- struct{}{}
	h.eventually("the session's new state in status, and not advertised", func() bool {
		st := h.sp.Status()
		return slices.ContainsFunc(st.Peers, func(p peers.PeerStatus) bool { return p.State == peers.StateActive }) &&
			st.Decisions[0].Reason == ReasonNoPeer
	})
}
