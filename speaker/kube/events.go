package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vipcast/vipcast/peers"
	"github.com/vipcast/vipcast/speaker"
)

// Event reasons, one per kind of transition.
const (
	ReasonAnnounced  = "VIPAnnounced"          // Normal: the VIPs are announced (healthy, or undrained and healthy)
	ReasonWithdrawn  = "VIPWithdrawn"          // Warning: withdrawn because the local apiserver failed its probes
	ReasonDamped     = "VIPDamped"             // Warning: held back because health flapped
	ReasonNoPeer     = "VIPNoPeer"             // Warning: announced, but no BGP session carries it any more
	ReasonDrained    = "VIPDrained"            // Normal: an operator drained the node
	ReasonUndrained  = "VIPUndrained"          // Normal: undrained, not (yet) announced
	ReasonShutdown   = "VIPShutdown"           // Normal: vipcast is stopping and withdrew
	ReasonGraceful   = "VIPGracefulShutdown"   // Normal: still announced, with GRACEFUL_SHUTDOWN, before a drain or shutdown withdraws
	ReasonNotReady   = "VIPNotAnnounced"       // Normal: withdrawn for another reason (e.g. back to starting)
	ReasonLoRestored = "VIPRestoredOnLoopback" // Warning: a VIP was removed from the loopback behind vipcast's back; put back, route kept
	ReasonLoFailed   = "VIPLoopbackFailed"     // Warning: a VIP removed from the loopback could not be put back; withdrawn
	ReasonLastResort = "VIPLastResort"         // Warning: the local apiserver fails its probes but answers; announced as a last resort, losing to every healthy path
	EventsNamespace  = metav1.NamespaceDefault // where Events about cluster-scoped Nodes go
	ReportingName    = "vipcast.io/vipcast"
	EventsQueueDepth = 64
	noteLimit        = 1024 // events/v1 note limit, in bytes
)

// Events records a Kubernetes Event (events.k8s.io/v1) on the Node for
// every transition. It implements speaker.Observer. The reconcile loop only
// ever does a non-blocking send on a bounded queue; one goroutine writes
// the Events. When the queue is full the event is dropped and counted; when
// the API is unreachable or refuses, the event is dropped and counted and
// the outage is logged once. Routing never depends on it.
type Events struct {
	client   API
	node     string
	instance string
	log      *slog.Logger
	timeout  time.Duration

	q       chan item
	closing chan struct{}
	done    chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	once    sync.Once
	closed  atomic.Bool
	full    atomic.Bool // a full queue was logged; reset once the writer has caught up
	dropped atomic.Uint64
	sent    atomic.Uint64

	// Owned by the worker goroutine.
	uid     types.UID
	uidDone bool
	down    bool
	seq     uint64
}

// reasonGracefulShutdown is the speaker's graceful-shutdown phase (RFC 8326
// GRACEFUL_SHUTDOWN before a drain or shutdown withdraws), named by value so
// this package does not depend on the phase being built in.
const reasonGracefulShutdown speaker.Reason = "graceful-shutdown"

type item struct {
	tr   speaker.Transition
	vips []netip.Prefix
}

var _ speaker.Observer = (*Events)(nil)

// NewEvents starts the writer; Close stops it.
func NewEvents(client API, nodeName string, log *slog.Logger) *Events {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	inst := "vipcast-" + nodeName
	if len(inst) > 128 {
		inst = inst[:128]
	}
	e := &Events{
		client: client, node: nodeName, instance: inst, log: log.With("component", "kube-events"),
		timeout: RequestTimeout,
		q:       make(chan item, EventsQueueDepth), closing: make(chan struct{}), done: make(chan struct{}),
		ctx: ctx, cancel: cancel,
	}
	go e.run()
	return e
}

// Dropped counts the events not written: queue full, API unreachable or
// refusing, or vipcast stopping.
func (e *Events) Dropped() uint64 { return e.dropped.Load() }

// Sent counts the events the API accepted.
func (e *Events) Sent() uint64 { return e.sent.Load() }

// OnProbe does nothing.
func (e *Events) OnProbe(speaker.ProbeResult) {}

// OnPeers does nothing.
func (e *Events) OnPeers([]peers.PeerStatus) {}

// OnTransition queues an Event without ever waiting.
func (e *Events) OnTransition(tr speaker.Transition, ds []speaker.Decision) {
	if e == nil {
		return
	}
	if e.closed.Load() {
		e.dropped.Add(1)
		return
	}
	it := item{tr: tr, vips: make([]netip.Prefix, 0, len(ds))}
	for _, d := range ds {
		it.vips = append(it.vips, d.VIP)
	}
	select {
	case e.q <- it:
	default:
		e.dropped.Add(1)
		if e.full.CompareAndSwap(false, true) {
			e.log.Warn("kubernetes events: queue full, dropping events; routing unaffected", "queue", EventsQueueDepth)
		}
	}
}

// Close writes what is queued until ctx ends, then stops the writer.
func (e *Events) Close(ctx context.Context) {
	if e == nil {
		return
	}
	e.once.Do(func() {
		e.closed.Store(true)
		close(e.closing)
	})
	select {
	case <-e.done:
	case <-ctx.Done():
		// Abort the request in flight; the writer drops the rest and
		// returns without being waited for.
	}
	e.cancel()
}

func (e *Events) run() {
	defer close(e.done)
	defer func() {
		// Stopping: what is left in the queue is dropped, and counted.
		for {
			select {
			case <-e.q:
				e.dropped.Add(1)
			default:
				return
			}
		}
	}()
	for {
		select {
		case it := <-e.q:
			if e.ctx.Err() != nil {
				e.dropped.Add(1)
				continue
			}
			e.write(it)
		case <-e.closing:
			for {
				select {
				case it := <-e.q:
					if e.ctx.Err() != nil {
						e.dropped.Add(1)
						continue
					}
					e.write(it)
				default:
					return
				}
			}
		case <-e.ctx.Done():
			return
		}
	}
}

func (e *Events) write(it item) {
	if !e.uidDone {
		n, err := GetNode(e.ctx, e.client, e.node)
		switch {
		case err == nil:
			e.uid, e.uidDone = n.UID, true
		case errors.Is(err, ErrNodeNotFound):
			e.uidDone = true // no Node object: the Event names it anyway
		}
	}
	ev := e.event(it)
	ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
	defer cancel()
	err := e.client.CreateEvent(ctx, ev)
	if err != nil {
		n := e.dropped.Add(1)
		if !e.down {
			e.down = true
			what := "API unreachable"
			var se *StatusError
			if errors.As(err, &se) {
				what = "API refused the event"
			}
			e.log.Warn(fmt.Sprintf("kubernetes events disabled: %s: %v; routing unaffected", what, err), "node", e.node, "dropped", n)
		}
		return
	}
	e.sent.Add(1)
	if len(e.q) == 0 {
		e.full.Store(false)
	}
	if e.down {
		e.down = false
		e.log.Info("kubernetes events resumed", "node", e.node, "dropped", e.dropped.Load())
	}
}

// Classify maps a transition to the Event's type, reason and action.
func Classify(tr speaker.Transition) (typ, reason, action string) {
	switch {
	case len(tr.Loopback) > 0 && tr.To == speaker.ReasonLoopbackFailed:
		return corev1.EventTypeWarning, ReasonLoFailed, "Withdraw"
	case len(tr.Loopback) > 0:
		return corev1.EventTypeWarning, ReasonLoRestored, "Repair"
	case tr.To == speaker.ReasonDrained:
		return corev1.EventTypeNormal, ReasonDrained, "Drain"
	case tr.To == reasonGracefulShutdown:
		return corev1.EventTypeNormal, ReasonGraceful, "Drain"
	case tr.To == speaker.ReasonShuttingDown:
		return corev1.EventTypeNormal, ReasonShutdown, "Withdraw"
	case tr.To == speaker.ReasonLastResort:
		return corev1.EventTypeWarning, ReasonLastResort, "Degrade"
	case tr.To == speaker.ReasonNoPeer && tr.From == speaker.ReasonHealthy:
		return corev1.EventTypeWarning, ReasonNoPeer, "Announce"
	case tr.Announce:
		return corev1.EventTypeNormal, ReasonAnnounced, "Announce"
	case tr.From == speaker.ReasonDrained:
		return corev1.EventTypeNormal, ReasonUndrained, "Undrain"
	case tr.To == speaker.ReasonUnhealthy:
		return corev1.EventTypeWarning, ReasonWithdrawn, "Withdraw"
	case tr.To == speaker.ReasonDamped:
		return corev1.EventTypeWarning, ReasonDamped, "Withdraw"
	}
	return corev1.EventTypeNormal, ReasonNotReady, "Withdraw"
}

// Note is the Event's message: VIPs, verdict, reasons, detail.
func Note(tr speaker.Transition, vips []netip.Prefix) string {
	vs := make([]string, len(vips))
	for i, v := range vips {
		vs[i] = v.String()
	}
	verdict := "withdrawn"
	if tr.Announce {
		verdict = "announced"
	}
	s := fmt.Sprintf("VIP %s %s (%s -> %s)", strings.Join(vs, ", "), verdict, tr.From, tr.To)
	if tr.Detail != "" {
		s += ": " + tr.Detail
	}
	if len(s) > noteLimit {
		s = s[:noteLimit-3] + "..."
	}
	return s
}

func (e *Events) event(it item) *eventsv1.Event {
	typ, reason, action := Classify(it.tr)
	at := it.tr.At
	if at.IsZero() {
		at = time.Now()
	}
	e.seq++
	name := e.node
	if len(name) > 200 {
		name = strings.TrimRight(name[:200], ".-")
	}
	return &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s.%x.%x", name, time.Now().UnixNano(), e.seq),
			Namespace: EventsNamespace,
		},
		EventTime:           metav1.NewMicroTime(at),
		ReportingController: ReportingName,
		ReportingInstance:   e.instance,
		Action:              action,
		Reason:              reason,
		Type:                typ,
		Note:                Note(it.tr, it.vips),
		Regarding: corev1.ObjectReference{
			APIVersion: "v1", Kind: "Node", Name: e.node, UID: e.uid,
		},
	}
}
