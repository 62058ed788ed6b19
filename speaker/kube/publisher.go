package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipcast/vipcast/peers"
	"github.com/vipcast/vipcast/speaker"
	"github.com/vipcast/vipcast/speaker/kube/nodestatus"
)

// PublisherConfig sets where and how often the status Lease is written.
type PublisherConfig struct {
	Namespace string
	Node      string
	Version   string
	// MinInterval spaces the writes: a change is written at once unless
	// the last write was more recent than this, then as soon as it is not
	// (a flapping node costs the API at most 1/MinInterval writes a second).
	MinInterval time.Duration
	// Renew rewrites an unchanged status, so readers can tell a live
	// speaker from a stopped one; it also carries the last probe.
	Renew time.Duration
	// Duration is the Lease's leaseDurationSeconds: readers call the
	// status stale once renewTime + Duration is past.
	Duration time.Duration
	// RetryMin and RetryMax bound the wait before another try after a
	// failed write (doubling from RetryMin).
	RetryMin, RetryMax time.Duration
	// Timeout bounds one write (a read and a write, at most).
	Timeout time.Duration
	// LogEvery spaces the log lines about continued failures.
	LogEvery time.Duration
}

// quickRetries is how many failed tries are retried after RetryMin before
// the wait starts doubling.
const quickRetries = 5

// DefaultPublisher: writes at most every 500 ms, renewed every 10 s, stale
// after 40 s without renewal (four missed renewals); a failed write is
// tried again five times every 200 ms, then after a wait doubling up to 5 s.
// The first retries are quick because the write that matters most,
// "withdrawn", is the one most likely to fail at first: the node's own
// apiserver just died, and the API is reached through the VIP, which the
// node still holds on lo for loopback.removeDelay.
func DefaultPublisher(namespace, node, version string) PublisherConfig {
	return PublisherConfig{Namespace: namespace, Node: node, Version: version,
		MinInterval: 500 * time.Millisecond, Renew: 10 * time.Second, Duration: 40 * time.Second,
		RetryMin: 200 * time.Millisecond, RetryMax: 5 * time.Second, Timeout: 2 * time.Second, LogEvery: time.Minute}
}

// Publisher writes the speaker's status to its node's Lease. It implements
// speaker.Observer: the reconcile loop only ever does a non-blocking send
// on a channel of one; one goroutine (Start, Close) reads the speaker's
// snapshot and writes. Failures are retried, counted and logged (once, then
// at most every LogEvery) and never reach the routing path.
type Publisher struct {
	api    LeaseAPI
	cfg    PublisherConfig
	log    *slog.Logger
	source func() speaker.Status
	now    func() time.Time

	kick    chan struct{}
	closing chan struct{}
	done    chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	start   sync.Once
	stop    sync.Once

	writes   atomic.Uint64
	failures atomic.Uint64

	// Owned by the goroutine.
	lease       *coordinationv1.Lease // as last stored; nil: read it first
	attempted   nodestatus.Status     // what the last try wrote
	tried       bool
	lastTry     time.Time
	lastOK      time.Time
	failing     bool
	retryAt     time.Time
	backoff     time.Duration
	lastLog     time.Time
	failedSince uint64 // failures since the last success
}

var _ speaker.Observer = (*Publisher)(nil)

// NewPublisher prepares the publisher; source is the speaker's Status
// (called only from the publisher's goroutine, after Start). It makes no
// request before Start.
func NewPublisher(api LeaseAPI, cfg PublisherConfig, source func() speaker.Status, log *slog.Logger) *Publisher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Publisher{api: api, cfg: cfg, source: source, now: time.Now,
		log:  log.With("component", "status-lease", "lease", cfg.Namespace+"/"+LeaseName(cfg.Node)),
		kick: make(chan struct{}, 1), closing: make(chan struct{}), done: make(chan struct{}),
		ctx: ctx, cancel: cancel}
}

// Start starts the goroutine; Close stops it.
func (p *Publisher) Start() {
	p.start.Do(func() { go p.run() })
}

// Writes counts the Lease writes the API accepted.
func (p *Publisher) Writes() uint64 { return p.writes.Load() }

// Failures counts the failed tries.
func (p *Publisher) Failures() uint64 { return p.failures.Load() }

// Notify asks for a look at the status, without ever waiting.
func (p *Publisher) Notify() {
	if p == nil {
		return
	}
	select {
	case p.kick <- struct{}{}:
	default: // one look is already due
	}
}

func (p *Publisher) OnProbe(speaker.ProbeResult)                         { p.Notify() }
func (p *Publisher) OnTransition(speaker.Transition, []speaker.Decision) { p.Notify() }
func (p *Publisher) OnPeers([]peers.PeerStatus)                          { p.Notify() }

// Close writes the latest status once more if it changed (within ctx), then
// stops the goroutine. The Lease is left to go stale: a reader then sees
// the speaker's last word (e.g. shutting-down) and that it stopped.
func (p *Publisher) Close(ctx context.Context) {
	if p == nil {
		return
	}
	p.start.Do(func() { close(p.done) }) // never started: nothing to stop
	p.stop.Do(func() { close(p.closing) })
	select {
	case <-p.done:
	case <-ctx.Done():
	}
	p.cancel()
	<-p.done
}

func (p *Publisher) run() {
	defer close(p.done)
	defer p.cancel()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-p.closing:
			p.flush()
			return
		case <-p.kick:
		case <-t.C:
		}
		wait := p.step()
		t.Reset(wait)
	}
}

// step writes if a write is due and returns how long until the next look.
func (p *Publisher) step() time.Duration {
	now := p.now()
	st := FromSpeaker(p.cfg.Node, p.cfg.Version, p.source())
	due := p.due(st, now)
	if now.Before(due) {
		return due.Sub(now)
	}
	p.write(st, now)
	return p.due(st, p.now()).Sub(p.now())
}

// due is when st should be written.
func (p *Publisher) due(st nodestatus.Status, now time.Time) time.Time {
	switch {
	case !p.tried:
		return now
	case !nodestatus.SameState(st, p.attempted):
		return p.lastTry.Add(p.cfg.MinInterval)
	case p.failing:
		return p.retryAt
	}
	return p.lastOK.Add(p.cfg.Renew)
}

// flush writes the latest status if it changed since the last success.
func (p *Publisher) flush() {
	st := FromSpeaker(p.cfg.Node, p.cfg.Version, p.source())
	if p.tried && !p.failing && nodestatus.SameState(st, p.attempted) {
		return
	}
	p.write(st, p.now())
}

func (p *Publisher) write(st nodestatus.Status, now time.Time) {
	p.tried, p.attempted, p.lastTry = true, st, now
	err := p.put(st, now)
	if err == nil {
		p.writes.Add(1)
		if p.failing {
			p.log.Info("status lease: published again; routing was never affected", "failed", p.failedSince)
		}
		p.failing, p.backoff, p.failedSince, p.lastOK = false, 0, 0, now
		return
	}
	p.failures.Add(1)
	p.failedSince++
	if errors.Is(err, ErrConflict) || errors.Is(err, ErrNotFound) {
		// Changed or deleted behind our back: read it again, at once.
		p.lease = nil
	}
	// Five quick tries first (about a second at the defaults: long enough
	// for the VIP to leave lo after a withdraw), then doubling.
	if p.failedSince <= quickRetries {
		p.backoff = p.cfg.RetryMin
	} else {
		p.backoff = min(max(p.backoff*2, p.cfg.RetryMin), p.cfg.RetryMax)
	}
	p.retryAt = now.Add(p.backoff)
	if !p.failing || now.Sub(p.lastLog) >= p.cfg.LogEvery {
		p.log.Warn("status lease: cannot publish; status --all shows this node as stale until it can; routing unaffected",
			"err", err, "failed", p.failedSince)
		p.lastLog = now
	}
	p.failing = true
}

// put reads the Lease if not known, then creates or replaces it.
func (p *Publisher) put(st nodestatus.Status, now time.Time) error {
	if p.api == nil {
		return errNoLeaseAPI
	}
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.Timeout)
	defer cancel()
	raw, err := st.Marshal()
	if err != nil {
		return err
	}
	create := false
	if p.lease == nil {
		l, err := p.api.GetLease(ctx, p.cfg.Namespace, LeaseName(p.cfg.Node))
		switch {
		case errors.Is(err, ErrNotFound):
			l, create = newStatusLease(p.cfg.Namespace, p.cfg.Node), true
		case err != nil:
			return fmt.Errorf("reading the Lease: %w", err)
		}
		p.lease = l
	}
	l := p.lease.DeepCopy()
	if l.Labels == nil {
		l.Labels = map[string]string{}
	}
	maps.Copy(l.Labels, statusLabels(p.cfg.Node))
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[StatusAnnotation] = raw
	holder := p.cfg.Node
	secs := int32(p.cfg.Duration / time.Second)
	renew := metav1.NewMicroTime(now)
	l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &holder, &secs, &renew
	if l.Spec.AcquireTime == nil {
		l.Spec.AcquireTime = &renew
	}
	var out *coordinationv1.Lease
	if create {
		out, err = p.api.CreateLease(ctx, l)
	} else {
		out, err = p.api.UpdateLease(ctx, l)
	}
	if err != nil {
		if create && errors.Is(err, ErrConflict) {
			p.lease = nil // created meanwhile (409 AlreadyExists): read it next time
		}
		return err
	}
	p.lease = out
	return nil
}
