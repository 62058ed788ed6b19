package speaker

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/vipcast/vipcast/peers"
)

// Observer hears what the reconcile loop does, for metrics and events. The
// loop calls it synchronously, so an implementation must return at once
// (update a counter, or hand off to its own goroutine through a bounded
// queue) and never block.
type Observer interface {
	// OnProbe is called for every health-check result.
	OnProbe(ProbeResult)
	// OnTransition is called for every change of decision, with the
	// decisions that result.
	OnTransition(Transition, []Decision)
	// OnPeers is called each time the sessions are read.
	OnPeers([]peers.PeerStatus)
}

// Observers fans out to several observers; nil entries are skipped.
type Observers []Observer

func (o Observers) OnProbe(r ProbeResult) {
	for _, x := range o {
		if x != nil {
			x.OnProbe(r)
		}
	}
}

func (o Observers) OnTransition(t Transition, ds []Decision) {
	for _, x := range o {
		if x != nil {
			x.OnTransition(t, ds)
		}
	}
}

func (o Observers) OnPeers(ps []peers.PeerStatus) {
	for _, x := range o {
		if x != nil {
			x.OnPeers(ps)
		}
	}
}

// probeHistoryLen is how many probe results Status keeps.
const probeHistoryLen = 20

// subscriberBuffer is how many transitions a subscriber may fall behind
// before it misses some.
const subscriberBuffer = 64

// lifecycle lets other goroutines (the API's health service) follow Run.
type lifecycle struct {
	startOnce, stopOnce, doneOnce sync.Once
	started, stopping, done       chan struct{}
}

func newLifecycle() lifecycle {
	return lifecycle{started: make(chan struct{}), stopping: make(chan struct{}), done: make(chan struct{})}
}

// Started is closed once Run has started the router and the loop.
func (s *Speaker) Started() <-chan struct{} { return s.lc.started }

// Stopping is closed when Run begins its shutdown (withdraw, drain, stop).
func (s *Speaker) Stopping() <-chan struct{} { return s.lc.stopping }

// Done is closed when Run has returned.
func (s *Speaker) Done() <-chan struct{} { return s.lc.done }

func (s *Speaker) markStarted()  { s.lc.startOnce.Do(func() { close(s.lc.started) }) }
func (s *Speaker) markStopping() { s.lc.stopOnce.Do(func() { close(s.lc.stopping) }) }
func (s *Speaker) markDone() {
	s.markStopping()
	s.lc.doneOnce.Do(func() { close(s.lc.done) })
}

// Subscription receives transitions as they happen. C is closed when the
// subscription's context ends or Run returns.
type Subscription struct {
	C       <-chan Transition
	c       chan Transition
	dropped atomic.Uint64
}

// Dropped counts the transitions not delivered because C was full: the
// reconcile loop never waits for a subscriber.
func (sub *Subscription) Dropped() uint64 { return sub.dropped.Load() }

type subscribers struct {
	mu  sync.Mutex
	set map[*Subscription]struct{}
}

// Subscribe delivers every later transition until ctx ends. A subscriber
// that falls more than 64 transitions behind misses the newer ones; Dropped
// counts them and the speaker logs it.
func (s *Speaker) Subscribe(ctx context.Context) *Subscription {
	c := make(chan Transition, subscriberBuffer)
	sub := &Subscription{C: c, c: c}
	s.subs.mu.Lock()
	select {
	case <-s.lc.done:
		s.subs.mu.Unlock()
		close(c)
		return sub
	default:
	}
	if s.subs.set == nil {
		s.subs.set = map[*Subscription]struct{}{}
	}
	s.subs.set[sub] = struct{}{}
	s.subs.mu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
		case <-s.lc.done:
		}
		s.subs.mu.Lock()
		defer s.subs.mu.Unlock()
		if _, ok := s.subs.set[sub]; ok {
			delete(s.subs.set, sub)
			close(c)
		}
	}()
	return sub
}

// publish hands tr to every subscriber without waiting.
func (s *Speaker) publish(tr Transition) {
	s.subs.mu.Lock()
	defer s.subs.mu.Unlock()
	for sub := range s.subs.set {
		select {
		case sub.c <- tr:
		default:
			if sub.dropped.Add(1) == 1 {
				s.d.Log.Warn("status subscriber too slow: dropping transitions for it", "buffer", subscriberBuffer)
			}
		}
	}
}

// noteProbe keeps the recent results and tells the observer.
func (s *Speaker) noteProbe(r ProbeResult) {
	s.mu.Lock()
	s.status.RecentProbes = append(s.status.RecentProbes, r)
	if n := len(s.status.RecentProbes); n > probeHistoryLen {
		s.status.RecentProbes = s.status.RecentProbes[n-probeHistoryLen:]
	}
	s.mu.Unlock()
	if s.d.Observer != nil {
		s.d.Observer.OnProbe(r)
	}
}

func (s *Speaker) notePeers(ps []peers.PeerStatus) {
	if s.d.Observer != nil {
		s.d.Observer.OnPeers(ps)
	}
}

func (s *Speaker) noteTransition(tr Transition, ds []Decision) {
	if s.d.Observer != nil {
		s.d.Observer.OnTransition(tr, ds)
	}
	s.publish(tr)
}
