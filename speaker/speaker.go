package speaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vipcast/vipcast/peers"
	"github.com/vipcast/vipcast/policy"
)

// Deps are the speaker's collaborators, injected so tests can swap them.
// Settings belong in Config.
type Deps struct {
	Router    peers.Router
	Addresses Addresses
	Prober    Prober
	Log       *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
	// Observer, if set, hears probes, transitions and sessions (metrics,
	// events); it must never block.
	Observer Observer
}

// peerPoll is how often session state is read when the router does not
// say when it changes (peers.SessionNotifier), and as a backstop (status
// counters, a missed notice) when it does. It only feeds status and the
// no-established-peer reason; routing never waits for it.
const peerPoll = 200 * time.Millisecond

// peerPollNotifier is peerPoll's backstop with a SessionNotifier (a var
// only so a test can prove the notices alone keep status current).
var peerPollNotifier = 2 * time.Second

// loopbackCheck is how often the VIPs held on the loopback are checked, as
// a backstop to the netlink watch (RTM_DELADDR), and how often putting them
// back is retried after it failed.
const loopbackCheck = time.Second

// historyLen is how many transitions Status keeps.
const historyLen = 32

// Speaker is the reconcile loop. One goroutine (Run) owns the machine and
// every side effect; other goroutines talk to it through channels.
type Speaker struct {
	cfg  Config
	vips []netip.Prefix
	d    Deps

	shutdownOnce sync.Once
	shutdownCh   chan struct{}
	drainCh      chan drainReq
	drainMu      sync.Mutex
	lc           lifecycle
	subs         subscribers
	restored     State // from the state file, applied at the start of Run

	// Owned by Run.
	inRIB, onLo map[netip.Prefix]bool
	removeAt    time.Time
	// ribKind: which attributes the path in the RIB carries.
	ribKind map[netip.Prefix]pathKind

	mu     sync.Mutex
	status Status
}

// Status is a snapshot of what the speaker is doing and why.
type Status struct {
	Decisions   []Decision
	LastProbe   ProbeResult
	OKRun       int
	FailRun     int
	Penalty     float64
	Peers       []peers.PeerStatus
	Drained     bool
	Transitions []Transition
	// RecentProbes are the last 20 probe results, oldest first.
	RecentProbes []ProbeResult
	// DrainReason is the operator's reason for the current drain.
	DrainReason string
	// Rise, Fall and TimeoutFall are the health thresholds OKRun and
	// FailRun count towards (health.rise, health.fall, health.timeoutFall).
	Rise, Fall, TimeoutFall int
}

// New checks the wiring; cfg must already be validated.
func New(cfg Config, d Deps) (*Speaker, error) {
	if d.Router == nil || d.Addresses == nil || d.Prober == nil {
		return nil, errors.New("speaker: router, addresses and prober are required")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	vips, err := cfg.Prefixes()
	if err != nil {
		return nil, fmt.Errorf("speaker: %w", err)
	}
	s := &Speaker{
		cfg: cfg, vips: vips, d: d,
		shutdownCh: make(chan struct{}),
		drainCh:    make(chan drainReq),
		lc:         newLifecycle(),
		inRIB:      map[netip.Prefix]bool{},
		onLo:       map[netip.Prefix]bool{},
	}
	s.ribKind = map[netip.Prefix]pathKind{}
	s.status.Decisions = s.newMachine().Decisions()
	s.status.Rise, s.status.Fall, s.status.TimeoutFall = cfg.Health.Rise, cfg.Health.Fall, cfg.Health.TimeoutFall
	if cfg.StateFile != "" {
		st, truncated, err := readState(cfg.StateFile)
		if err != nil {
			return nil, err
		}
		if truncated {
			d.Log.Warn("state file: drain reason truncated", "file", cfg.StateFile, "limit", MaxDrainReason)
		}
		s.restored = st
		s.status.Drained, s.status.DrainReason = st.Drained, st.Reason
	}
	return s, nil
}

// Shutdown asks Run for the graceful sequence: withdraw, wait the drain
// period, remove the VIPs, close the sessions. Cancelling Run's context
// instead (a second signal) skips the wait.
func (s *Speaker) Shutdown() { s.shutdownOnce.Do(func() { close(s.shutdownCh) }) }

// SetDrained takes the node out of rotation or puts it back.
func (s *Speaker) SetDrained(ctx context.Context, drained bool) error {
	return s.SetDrainedReason(ctx, drained, "")
}

// Status returns a copy of the current state.
func (s *Speaker) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Decisions = append([]Decision(nil), st.Decisions...)
	st.Peers = append([]peers.PeerStatus(nil), st.Peers...)
	st.Transitions = append([]Transition(nil), st.Transitions...)
	st.RecentProbes = append([]ProbeResult(nil), st.RecentProbes...)
	return st
}

func (s *Speaker) newMachine() *Machine {
	mc := MachineConfig{Rise: s.cfg.Health.Rise, Fall: s.cfg.Health.Fall, TimeoutFall: s.cfg.Health.TimeoutFall, Damping: s.cfg.Damping,
		Interval: s.cfg.Health.Interval, ConfirmInterval: s.cfg.Health.ConfirmInterval}
	if s.cfg.GracefulShutdown.Active() {
		mc.GracefulWait = s.cfg.GracefulShutdown.Wait
	}
	mc.LastResort = s.cfg.LastResort.Enabled
	return NewMachine(mc, s.vips, s.d.Now())
}

// Run starts the router and reconciles until Shutdown completes or ctx is
// cancelled. The VIPs are never left on lo when it returns.
func (s *Speaker) Run(ctx context.Context) error {
	defer s.markDone()
	m, err := s.begin(ctx)
	if err != nil {
		return err
	}
	l := s.newLoop(m)
	defer l.stopTimers()
	stopWorkers := l.startWorkers(ctx)
	defer stopWorkers()
	for {
		tr, stop, err := l.next(ctx)
		if stop {
			return err
		}
		stop, err = l.apply(ctx, tr)
		if l.drainApplied != nil {
			close(l.drainApplied)
			l.drainApplied = nil
		}
		if stop {
			return err
		}
	}
}

// begin readies the node and the machine: no stale VIP on lo, BGP started,
// an operator's drain restored from the state file.
func (s *Speaker) begin(ctx context.Context) (*Machine, error) {
	// A crashed predecessor may have left VIPs on lo: start clean, so the
	// node never answers for a VIP it does not advertise.
	if err := s.d.Addresses.Cleanup(s.vips); err != nil {
		return nil, fmt.Errorf("remove stale VIPs: %w", err)
	}
	if err := s.d.Router.Start(ctx); err != nil {
		return nil, fmt.Errorf("start BGP: %w", err)
	}
	m := s.newMachine()
	var restored *Transition
	if s.restored.Drained {
		s.d.Log.Warn("starting drained, as the state file says", "file", s.cfg.StateFile, "reason", s.restored.Reason, "since", s.restored.At)
		if restored = m.SetDrained(true, s.d.Now()); restored != nil {
			restored.Detail = "drain restored from " + s.cfg.StateFile
			if s.restored.Reason != "" {
				restored.Detail += ": " + s.restored.Reason
			}
		}
	}
	s.record(m, restored, nil)
	s.markStarted()
	return m, nil
}

// loop is one Run's event loop: the machine and the channels and timers
// that feed it. Only Run's goroutine touches it.
type loop struct {
	s *Speaker
	m *Machine
	// drainApplied is the pending drain request's, closed once applied.
	drainApplied chan struct{}

	results    chan ProbeResult
	nextProbe  chan time.Time
	removed    chan netip.Prefix
	stopProbes context.CancelFunc // set by startWorkers; safe to call twice

	loTick, peerTick *time.Ticker
	// peersChanged is the router's SessionsChanged, nil without one.
	peersChanged <-chan struct{}
	removeTimer  *time.Timer
	// gracefulTimer ends a graceful-shutdown phase on time, at gracefulAt.
	gracefulTimer *time.Timer
	gracefulAt    time.Time
	// shutdownCh goes nil once a shutdown waits for the graceful phase to end.
	shutdownCh <-chan struct{}
	peerList   []peers.PeerStatus
}

func (s *Speaker) newLoop(m *Machine) *loop {
	l := &loop{
		s: s, m: m,
		results:       make(chan ProbeResult),
		nextProbe:     make(chan time.Time, 1),
		removed:       make(chan netip.Prefix, 16),
		stopProbes:    func() {},
		loTick:        time.NewTicker(loopbackCheck),
		peerTick:      time.NewTicker(peerPoll),
		removeTimer:   time.NewTimer(time.Hour),
		gracefulTimer: time.NewTimer(time.Hour),
		shutdownCh:    s.shutdownCh,
	}
	l.removeTimer.Stop()
	l.gracefulTimer.Stop()
	if n, ok := s.d.Router.(peers.SessionNotifier); ok {
		l.peersChanged = n.SessionsChanged()
		l.peerTick.Reset(peerPollNotifier)
	}
	return l
}

func (l *loop) stopTimers() {
	l.loTick.Stop()
	l.peerTick.Stop()
	l.removeTimer.Stop()
	l.gracefulTimer.Stop()
}

// startWorkers starts the probe loop and the loopback watch; the returned
// func stops both and waits for them.
func (l *loop) startWorkers(ctx context.Context) (stop func()) {
	s := l.s
	probeCtx, stopProbes := context.WithCancel(ctx)
	l.stopProbes = stopProbes
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.probeLoop(probeCtx, l.results, l.nextProbe) }()
	// The loopback watch lives as long as Run: a VIP deleted during the
	// drain period is still put back.
	watchCtx, stopWatch := context.WithCancel(ctx)
	if w, ok := s.d.Addresses.(RemovalWatcher); ok {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.WatchRemovals(watchCtx, l.removed); err != nil {
				s.d.Log.Warn("not watching the loopback for removed VIPs; checking every "+loopbackCheck.String()+" instead", "err", err)
			}
		}()
	}
	return func() { stopProbes(); stopWatch(); wg.Wait() }
}

// next waits for one event and feeds it to the machine. stop means Run is
// over and returns err.
func (l *loop) next(ctx context.Context) (tr *Transition, stop bool, err error) {
	s, m := l.s, l.m
	select {
	case <-ctx.Done():
		s.d.Log.Warn("stopping at once: withdrawing and removing VIPs without a drain period")
		l.stopProbes()
		return nil, true, s.finish(ctx, m, false)
	case <-l.shutdownCh:
		return l.onShutdown(ctx)
	case <-l.gracefulTimer.C:
		l.gracefulAt = time.Time{}
		tr = m.Tick(s.d.Now())
	case r := <-l.results:
		tr = l.onProbe(r)
	case req := <-s.drainCh:
		l.drainApplied = req.applied
		tr = l.onDrain(ctx, req)
	case <-l.peersChanged:
		tr = l.refreshPeers(ctx)
	case <-l.peerTick.C:
		tr = l.refreshPeers(ctx)
		if t2 := m.Tick(s.d.Now()); t2 != nil {
			tr = t2
		}
	case <-l.removeTimer.C:
	case v := <-l.removed:
		tr = s.checkLoopback(m, v)
	case <-l.loTick.C:
		tr = s.checkLoopback(m, netip.Prefix{})
	}
	return tr, false, nil
}

// onShutdown starts the graceful sequence: at once, or after a
// graceful-shutdown phase if the VIPs are announced and it is on.
func (l *loop) onShutdown(ctx context.Context) (tr *Transition, stop bool, err error) {
	s, m := l.s, l.m
	l.recordPeers(ctx)
	if tr = m.Shutdown(s.d.Now()); m.Announce() {
		// Keep probing: a health failure during the wait still
		// withdraws at once.
		s.d.Log.Info("shutting down: announcing VIPs with GRACEFUL_SHUTDOWN before withdrawing", "wait", s.cfg.GracefulShutdown.Wait, "drain", s.cfg.Shutdown.DrainPeriod)
		l.shutdownCh = nil
		return tr, false, nil
	}
	s.d.Log.Info("shutting down: withdrawing VIPs", "drain", s.cfg.Shutdown.DrainPeriod)
	l.stopProbes()
	s.record(m, tr, nil)
	return nil, true, s.finish(ctx, m, true)
}

func (l *loop) onProbe(r ProbeResult) *Transition {
	s, m := l.s, l.m
	tr := m.Probe(r, s.d.Now())
	l.nextProbe <- m.NextProbe()
	s.noteProbe(r)
	if _, fail := m.Counters(); fail == 1 {
		s.d.Log.Warn("health probe failed", "reason", r.Reason, "latency", r.Latency)
	}
	return tr
}

func (l *loop) onDrain(ctx context.Context, req drainReq) *Transition {
	l.recordPeers(ctx)
	tr := l.m.SetDrained(req.drained, l.s.d.Now())
	if tr != nil && req.reason != "" {
		if tr.To == ReasonGracefulShutdown {
			tr.Detail = req.reason + "; " + tr.Detail
		} else {
			tr.Detail = req.reason
		}
	}
	return tr
}

// refreshPeers reads the sessions now and tells the machine whether one
// is established.
func (l *loop) refreshPeers(ctx context.Context) *Transition {
	s := l.s
	ps, err := s.d.Router.Peers(ctx)
	if err != nil {
		s.d.Log.Warn("reading BGP sessions", "err", err)
		return nil
	}
	l.peerList = ps
	s.notePeers(ps)
	return l.m.SetPeerUp(peers.AnyEstablished(ps), s.d.Now())
}

// recordPeers is refreshPeers for a drain or shutdown, which must see the
// sessions first: the periodic poll can lag a session that just came up,
// and graceful shutdown must not be skipped for a route the router has.
func (l *loop) recordPeers(ctx context.Context) {
	if t := l.refreshPeers(ctx); t != nil {
		l.s.record(l.m, t, l.peerList)
	}
}

// apply makes the RIB and lo follow the machine after an event, records
// tr, and ends Run (stop) once a graceful shutdown's phase is over.
func (l *loop) apply(ctx context.Context, tr *Transition) (stop bool, err error) {
	s, m := l.s, l.m
	s.reconcile(ctx, m, l.removeTimer)
	s.record(m, tr, l.peerList)
	if l.shutdownCh == nil && !m.Announce() {
		l.stopProbes()
		return true, s.finish(ctx, m, true)
	}
	if until := m.GracefulUntil(); !until.Equal(l.gracefulAt) {
		l.gracefulAt = until
		l.gracefulTimer.Stop()
		if !until.IsZero() {
			l.gracefulTimer.Reset(max(until.Sub(s.d.Now()), 0))
		}
	}
	return false, nil
}

// probeLoop probes when the machine says (next, answered for every result)
// or at once when the prober hears the apiserver close its connection.
func (s *Speaker) probeLoop(ctx context.Context, out chan<- ProbeResult, next <-chan time.Time) {
	var closed <-chan struct{}
	if cp, ok := s.d.Prober.(ClosingProber); ok {
		closed = cp.Closed()
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	woken := false // this probe was started by a close, not by the schedule
	for {
		r := s.d.Prober.Probe(ctx)
		select {
		case out <- r:
		case <-ctx.Done():
			return
		}
		var at time.Time
		select {
		case at = <-next:
		case <-ctx.Done():
			return
		}
		if at.IsZero() {
			at = r.At.Add(s.cfg.Health.Interval)
		}
		// A close heard during the probe was the probe's own connection
		// failing, which its result already says.
		select {
		case <-closed:
		default:
		}
		// A close that proved a false alarm (a server that closes idle
		// connections) is not heeded again before the scheduled probe, so
		// such a server costs at most one extra probe per interval.
		wake := closed
		if woken && r.OK {
			wake = nil
		}
		timer.Reset(max(at.Sub(s.d.Now()), 0))
		select {
		case <-timer.C:
			woken = false
		case <-wake:
			woken = true
			timer.Stop() // since Go 1.23 no stale tick can follow
		case <-ctx.Done():
			return
		}
	}
}

// checkLoopback finds the VIPs that should be on the loopback but are not
// (only, or all of them if only is the zero Prefix), puts them back at once,
// and tells the machine, which withdraws if that failed. After a failure it
// retries adding them instead.
func (s *Speaker) checkLoopback(m *Machine, only netip.Prefix) *Transition {
	log := s.d.Log
	if m.LoopbackFailed() {
		if only.IsValid() {
			return nil // the periodic retry is due soon enough
		}
		for _, v := range s.vips {
			if err := s.d.Addresses.Add(v); err != nil {
				log.Debug("loopback still failing", "vip", v, "err", err)
				return nil
			}
			s.onLo[v] = true
		}
		log.Info("VIPs back on the loopback", "vip", s.vips)
		return m.LoopbackRestored(s.d.Now())
	}
	var held []netip.Prefix
	for _, v := range s.vips {
		// Our own removals (onLo false) are reported by the watch too.
		if s.onLo[v] && (!only.IsValid() || only == v) {
			held = append(held, v)
		}
	}
	if len(held) == 0 {
		return nil
	}
	missing, err := s.d.Addresses.Missing(held)
	if err != nil {
		log.Warn("checking the VIPs on the loopback", "err", err)
		return nil
	}
	if len(missing) == 0 {
		return nil
	}
	var errs []error
	for _, v := range missing {
		s.onLo[v] = false
		if err := s.d.Addresses.Add(v); err != nil {
			log.Error("VIP removed from the loopback behind vipcast's back, and putting it back failed: withdrawing", "vip", v, "err", err)
			errs = append(errs, err)
			continue
		}
		s.onLo[v] = true
		log.Warn("VIP removed from the loopback behind vipcast's back: put it back", "vip", v)
	}
	return m.LoopbackMissing(missing, errors.Join(errs...), s.d.Now())
}

// reconcile makes the RIB and lo match the machine. A failed step leaves
// its flag unset and is retried on the next event (at least every peerPoll).
func (s *Speaker) reconcile(ctx context.Context, m *Machine, removeTimer *time.Timer) {
	log := s.d.Log
	now := s.d.Now()
	if m.Announce() {
		s.removeAt = time.Time{}
		kind := pathNormal
		switch {
		case m.GracefulShutdown():
			kind = pathGraceful
		case m.LastResort():
			kind = pathLastResort
		}
		want := map[netip.Prefix]policy.Attributes{}
		changed := false
		for _, v := range s.vips {
			// The address goes up before the route, so the first packet a
			// router sends finds the node answering.
			if !s.onLo[v] {
				if err := s.d.Addresses.Add(v); err != nil {
					log.Error("adding VIP to loopback", "vip", v, "err", err)
					if s.inRIB[v] {
						want[v] = s.ribAttrs(s.ribKind[v]) // left as it is
					}
					continue
				}
				s.onLo[v] = true
			}
			want[v] = s.ribAttrs(kind)
			changed = changed || !s.inRIB[v] || s.ribKind[v] != kind
		}
		if !changed {
			return
		}
		if err := s.d.Router.Set(ctx, want); err != nil {
			log.Error("announcing VIPs", "vip", slices.SortedFunc(maps.Keys(want), netip.Prefix.Compare), "err", err)
			return
		}
		for v := range want {
			if s.onLo[v] {
				s.inRIB[v], s.ribKind[v] = true, kind
			}
		}
		return
	}
	anyOnLo := false
	anyInRIB := false
	for _, v := range s.vips {
		anyInRIB = anyInRIB || s.inRIB[v]
		anyOnLo = anyOnLo || s.onLo[v]
	}
	if anyInRIB {
		if err := s.d.Router.Set(ctx, nil); err != nil {
			log.Error("withdrawing VIPs", "err", err)
		} else {
			clear(s.inRIB)
			clear(s.ribKind)
		}
	}
	if !anyOnLo || s.cfg.Loopback.OnWithdraw == OnWithdrawKeep {
		return
	}
	if s.removeAt.IsZero() {
		// Keep answering while routers converge, then send the node's own
		// clients of the VIP elsewhere.
		s.removeAt = now.Add(s.cfg.Loopback.RemoveDelay)
		removeTimer.Reset(s.cfg.Loopback.RemoveDelay)
		return
	}
	if now.Before(s.removeAt) {
		return
	}
	for _, v := range s.vips {
		if s.onLo[v] {
			if err := s.d.Addresses.Remove(v); err != nil {
				log.Error("removing VIP from loopback", "vip", v, "err", err)
				continue
			}
			s.onLo[v] = false
		}
	}
}

// finish withdraws everything, optionally waits the drain period, removes
// the VIPs and closes the sessions. runCtx only cuts the drain short; the
// work itself runs on a fresh context, as runCtx may already be cancelled.
func (s *Speaker) finish(runCtx context.Context, m *Machine, drain bool) error {
	log := s.d.Log
	s.markStopping()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tr := m.Shutdown(s.d.Now())
	var errs []error
	if err := s.d.Router.Set(ctx, nil); err != nil {
		errs = append(errs, fmt.Errorf("withdraw: %w", err))
	}
	clear(s.inRIB)
	s.record(m, tr, nil)
	if drain && s.cfg.Shutdown.DrainPeriod > 0 {
		t := time.NewTimer(s.cfg.Shutdown.DrainPeriod)
		select {
		case <-t.C:
		case <-runCtx.Done():
			log.Warn("second signal: skipping the rest of the drain period")
		}
		t.Stop()
	}
	if err := s.d.Addresses.Cleanup(s.vips); err != nil {
		errs = append(errs, fmt.Errorf("remove VIPs: %w", err))
	}
	clear(s.onLo)
	if err := s.d.Router.Stop(ctx); err != nil {
		errs = append(errs, fmt.Errorf("stop BGP: %w", err))
	}
	log.Info("stopped", "err", errors.Join(errs...))
	return errors.Join(errs...)
}

// pathKind says which attributes a VIP path carries.
type pathKind uint8

const (
	pathNormal pathKind = iota
	pathGraceful
	pathLastResort
)

// ribAttrs are the attributes of the VIP paths of kind k.
func (s *Speaker) ribAttrs(k pathKind) policy.Attributes {
	switch k {
	case pathGraceful:
		return s.cfg.Attributes.WithGracefulShutdown(s.cfg.GracefulShutdown)
	case pathLastResort:
		return s.cfg.Attributes.WithLastResort(s.cfg.LastResort)
	}
	return s.cfg.Attributes
}

func (s *Speaker) record(m *Machine, tr *Transition, ps []peers.PeerStatus) {
	if tr != nil {
		for _, d := range m.Decisions() {
			msg := "VIP not announced"
			switch {
			case len(tr.Loopback) > 0 && tr.From == tr.To:
				msg = "VIP put back on the loopback"
			case tr.To == ReasonGracefulShutdown:
				msg = "VIP announced with GRACEFUL_SHUTDOWN, withdraw follows"
			case tr.To == ReasonLastResort:
				msg = "VIP degraded: announced as a last resort, losing to every healthy path"
			case tr.Announce && tr.From == ReasonLastResort:
				msg = "VIP announced, no longer a last resort"
			case tr.Announce && tr.From == ReasonGracefulShutdown:
				msg = "VIP announced again, graceful shutdown cancelled"
			case tr.Announce && tr.From != ReasonHealthy && tr.From != ReasonNoPeer:
				msg = "VIP announced"
			case tr.Announce:
				msg = "VIP still announced"
			case tr.From == ReasonHealthy || tr.From == ReasonNoPeer || tr.From == ReasonGracefulShutdown || tr.From == ReasonLastResort:
				msg = "VIP withdrawn"
			}
			s.d.Log.Info(msg, "vip", d.VIP, "reason", tr.To, "from", tr.From, "detail", tr.Detail)
		}
	}
	ok, fail := m.Counters()
	if tr != nil {
		// Runs after s.mu is released, so an observer may read Status.
		defer s.noteTransition(*tr, m.Decisions())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.Decisions = m.Decisions()
	s.status.LastProbe = m.LastProbe()
	s.status.OKRun, s.status.FailRun = ok, fail
	s.status.Penalty = m.Penalty(s.d.Now())
	s.status.Drained = m.Drained()
	if ps != nil {
		s.status.Peers = ps
	}
	if tr != nil {
		s.status.Transitions = append(s.status.Transitions, *tr)
		if n := len(s.status.Transitions); n > historyLen {
			s.status.Transitions = s.status.Transitions[n-historyLen:]
		}
	}
}
