package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vipcast/vipcast/peers/testutil"
	"github.com/vipcast/vipcast/speaker"
)

var vip = netip.MustParsePrefix("203.0.113.10/32")

func node(name string, labels map[string]string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), Labels: labels}}
}

func decisions() []speaker.Decision { return []speaker.Decision{{VIP: vip}} }

// fakeAPI is an in-memory API: it serves its nodes and records the events
// created. onCreate, if set, runs first and may block or fail the create
// (a nil error stores the event).
type fakeAPI struct {
	mu       sync.Mutex
	nodes    map[string]*corev1.Node
	gets     int
	events   []eventsv1.Event
	onCreate func(ctx context.Context, ev *eventsv1.Event) error
}

var _ API = (*fakeAPI)(nil)

func newFake(nodes ...*corev1.Node) *fakeAPI {
	f := &fakeAPI{nodes: map[string]*corev1.Node{}}
	for _, n := range nodes {
		f.nodes[n.Name] = n
	}
	return f
}

func (f *fakeAPI) GetNode(ctx context.Context, name string) (*corev1.Node, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets++
	n, ok := f.nodes[name]
	if !ok {
		return nil, fmt.Errorf("%w: %w", ErrNodeNotFound, &StatusError{Request: "GET /api/v1/nodes/" + name, Code: 404, Reason: metav1.StatusReasonNotFound})
	}
	return n.DeepCopy(), nil
}

func (f *fakeAPI) CreateEvent(ctx context.Context, ev *eventsv1.Event) error {
	f.mu.Lock()
	hook := f.onCreate
	f.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, ev); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, *ev.DeepCopy())
	return nil
}

func (f *fakeAPI) setOnCreate(h func(context.Context, *eventsv1.Event) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onCreate = h
}

func listEvents(t *testing.T, f *fakeAPI) []eventsv1.Event {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

func TestEventsFields(t *testing.T) {
	cs := newFake(node("cp1", nil))
	e := NewEvents(cs, "cp1", nil)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	trs := []speaker.Transition{
		{At: at, Announce: true, From: speaker.ReasonStarting, To: speaker.ReasonHealthy, Detail: "3 consecutive good probes"},
		{At: at.Add(time.Second), From: speaker.ReasonHealthy, To: speaker.ReasonUnhealthy, Detail: "2 consecutive failed probes, last: connection refused"},
		{At: at.Add(2 * time.Second), From: speaker.ReasonUnhealthy, To: speaker.ReasonDrained, Detail: "maintenance"},
	}
	for _, tr := range trs {
		e.OnTransition(tr, decisions())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.Close(ctx)
	if e.Sent() != 3 || e.Dropped() != 0 {
		t.Fatalf("sent %d dropped %d, want 3 and 0", e.Sent(), e.Dropped())
	}
	evs := listEvents(t, cs)
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	want := map[string]struct{ typ, action, note string }{
		ReasonAnnounced: {corev1.EventTypeNormal, "Announce", "VIP 203.0.113.10/32 announced (starting -> healthy): 3 consecutive good probes"},
		ReasonWithdrawn: {corev1.EventTypeWarning, "Withdraw", "VIP 203.0.113.10/32 withdrawn (healthy -> unhealthy): 2 consecutive failed probes, last: connection refused"},
		ReasonDrained:   {corev1.EventTypeNormal, "Drain", "VIP 203.0.113.10/32 withdrawn (unhealthy -> drained): maintenance"},
	}
	for _, ev := range evs {
		w, ok := want[ev.Reason]
		if !ok {
			t.Errorf("unexpected reason %q", ev.Reason)
			continue
		}
		delete(want, ev.Reason)
		if ev.Type != w.typ || ev.Action != w.action || ev.Note != w.note {
			t.Errorf("%s: type %q action %q note %q; want %q %q %q", ev.Reason, ev.Type, ev.Action, ev.Note, w.typ, w.action, w.note)
		}
		r := ev.Regarding
		if r.Kind != "Node" || r.APIVersion != "v1" || r.Name != "cp1" || r.UID != "uid-cp1" || r.Namespace != "" {
			t.Errorf("regarding = %+v, want Node cp1 uid-cp1", r)
		}
		if ev.Namespace != "default" || ev.ReportingController != ReportingName || ev.ReportingInstance != "vipcast-cp1" || ev.EventTime.IsZero() {
			t.Errorf("metadata: ns %q controller %q instance %q time %v", ev.Namespace, ev.ReportingController, ev.ReportingInstance, ev.EventTime)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		from, to    speaker.Reason
		announce    bool
		typ, reason string
		lo          []netip.Prefix
	}{
		{speaker.ReasonHealthy, speaker.ReasonHealthy, true, corev1.EventTypeWarning, ReasonLoRestored, []netip.Prefix{netip.MustParsePrefix("203.0.113.10/32")}},
		{speaker.ReasonHealthy, speaker.ReasonLoopbackFailed, false, corev1.EventTypeWarning, ReasonLoFailed, []netip.Prefix{netip.MustParsePrefix("203.0.113.10/32")}},
		{speaker.ReasonLoopbackFailed, speaker.ReasonHealthy, true, corev1.EventTypeNormal, ReasonAnnounced, nil},
		{speaker.ReasonStarting, speaker.ReasonNoPeer, true, corev1.EventTypeNormal, ReasonAnnounced, nil},
		{speaker.ReasonNoPeer, speaker.ReasonHealthy, true, corev1.EventTypeNormal, ReasonAnnounced, nil},
		{speaker.ReasonHealthy, speaker.ReasonNoPeer, true, corev1.EventTypeWarning, ReasonNoPeer, nil},
		{speaker.ReasonDrained, speaker.ReasonHealthy, true, corev1.EventTypeNormal, ReasonAnnounced, nil},
		{speaker.ReasonDrained, speaker.ReasonStarting, false, corev1.EventTypeNormal, ReasonUndrained, nil},
		{speaker.ReasonDrained, speaker.ReasonUnhealthy, false, corev1.EventTypeNormal, ReasonUndrained, nil},
		{speaker.ReasonHealthy, speaker.ReasonUnhealthy, false, corev1.EventTypeWarning, ReasonWithdrawn, nil},
		{speaker.ReasonUnhealthy, speaker.ReasonDamped, false, corev1.EventTypeWarning, ReasonDamped, nil},
		{speaker.ReasonHealthy, speaker.ReasonDrained, false, corev1.EventTypeNormal, ReasonDrained, nil},
		{speaker.ReasonHealthy, speaker.ReasonShuttingDown, false, corev1.EventTypeNormal, ReasonShutdown, nil},
		{speaker.ReasonHealthy, speaker.ReasonLastResort, true, corev1.EventTypeWarning, ReasonLastResort, nil},
		{speaker.ReasonUnhealthy, speaker.ReasonLastResort, true, corev1.EventTypeWarning, ReasonLastResort, nil},
		{speaker.ReasonLastResort, speaker.ReasonHealthy, true, corev1.EventTypeNormal, ReasonAnnounced, nil},
		{speaker.ReasonLastResort, speaker.ReasonUnhealthy, false, corev1.EventTypeWarning, ReasonWithdrawn, nil},
		{speaker.ReasonLastResort, speaker.ReasonDrained, false, corev1.EventTypeNormal, ReasonDrained, nil},
	}
	for _, tt := range tests {
		typ, reason, _ := Classify(speaker.Transition{From: tt.from, To: tt.to, Announce: tt.announce, Loopback: tt.lo})
		if typ != tt.typ || reason != tt.reason {
			t.Errorf("%s -> %s: %s %s, want %s %s", tt.from, tt.to, typ, reason, tt.typ, tt.reason)
		}
	}
}

// A stuck API must never hold up the loop: OnTransition returns at once,
// and what does not fit in the queue is dropped and counted.
func TestEventsQueueFullNeverBlocks(t *testing.T) {
	cs := newFake(node("cp1", nil))
	release := make(chan struct{})
	cs.setOnCreate(func(context.Context, *eventsv1.Event) error {
		<-release
		return errors.New("too late")
	})
	var logs testutil.SyncBuffer
	e := NewEvents(cs, "cp1", slog.New(slog.NewTextHandler(&logs, nil)))
	const n = 1000
	start := time.Now()
	for i := range n {
		e.OnTransition(speaker.Transition{At: time.Now(), From: speaker.ReasonHealthy, To: speaker.ReasonUnhealthy, Detail: string(rune('a' + i%26))}, decisions())
	}
	// Blocked calls would never return; the bound only has to be finite,
	// and a starved core can stall this goroutine for a while.
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("%d OnTransition calls took %v with a stuck API", n, d)
	}
	// At most the queue plus the one being written are not dropped.
	if got := e.Dropped(); got < n-EventsQueueDepth-1 {
		t.Errorf("dropped %d, want at least %d", got, n-EventsQueueDepth-1)
	}
	if c := strings.Count(logs.String(), "queue full"); c != 1 {
		t.Errorf("queue-full logged %d times, want once:\n%s", c, logs.String())
	}
	close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.Close(ctx)
	if got := e.Dropped() + e.Sent(); got != n {
		t.Errorf("dropped+sent = %d, want %d", got, n)
	}
	// After Close, events are dropped without a goroutine to write them.
	e.OnTransition(speaker.Transition{}, decisions())
	if e.Dropped()+e.Sent() != n+1 {
		t.Errorf("OnTransition after Close not counted as dropped")
	}
}

// API errors only drop events; the outage is logged once and the recovery
// once; the loop sees nothing.
func TestEventsAPIUnreachable(t *testing.T) {
	cs := newFake(node("cp1", nil))
	var mu sync.Mutex
	failing := true
	cs.setOnCreate(func(context.Context, *eventsv1.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return errors.New("dial tcp 127.0.0.1:6443: connect: connection refused")
		}
		return nil
	})
	var logs testutil.SyncBuffer
	e := NewEvents(cs, "cp1", slog.New(slog.NewTextHandler(&logs, nil)))
	tr := speaker.Transition{At: time.Now(), From: speaker.ReasonHealthy, To: speaker.ReasonUnhealthy}
	for range 5 {
		e.OnTransition(tr, decisions())
	}
	testutil.Eventually(t, "5 events dropped", func() bool { return e.Dropped() == 5 })
	mu.Lock()
	failing = false
	mu.Unlock()
	e.OnTransition(tr, decisions())
	testutil.Eventually(t, "1 event sent", func() bool { return e.Sent() == 1 })
	e.Close(context.Background())
	out := logs.String()
	if c := strings.Count(out, "kubernetes events disabled: API unreachable: dial tcp 127.0.0.1:6443: connect: connection refused; routing unaffected"); c != 1 {
		t.Errorf("outage logged %d times, want once:\n%s", c, out)
	}
	if c := strings.Count(out, "kubernetes events resumed"); c != 1 {
		t.Errorf("recovery logged %d times, want once:\n%s", c, out)
	}
	if n := len(listEvents(t, cs)); n != 1 {
		t.Errorf("%d events stored, want 1", n)
	}
}

// Close gives up on a hung API when its context ends, whether or not the
// request in flight honours its context; when it does, the writer stops and
// the rest of the queue is dropped and counted.
func TestEventsCloseBounded(t *testing.T) {
	for _, honour := range []bool{false, true} {
		t.Run(fmt.Sprintf("honours-ctx=%v", honour), func(t *testing.T) {
			cs := newFake()
			release := make(chan struct{})
			t.Cleanup(func() { close(release) })
			started := make(chan struct{}, 1)
			cs.setOnCreate(func(ctx context.Context, _ *eventsv1.Event) error {
				select {
				case started <- struct{}{}:
				default:
				}
				if honour {
					<-ctx.Done()
					return ctx.Err()
				}
				<-release // a hung API that ignores the context
				return nil
			})
			e := NewEvents(cs, "cp1", nil)
			e.timeout = time.Hour
			e.OnTransition(speaker.Transition{}, decisions())
			e.OnTransition(speaker.Transition{}, decisions())
			<-started
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			done := make(chan struct{})
			// Whether ctx had ended when Close returned, not a duration: a
			// clock read after WithTimeout can start late on a busy machine.
			var early bool
			go func() { e.Close(ctx); early = ctx.Err() == nil; close(done) }()
			select {
			case <-done:
			case <-time.After(3 * time.Second):
				t.Fatal("Close did not return after its context ended")
			}
			if early {
				t.Error("Close returned before its context ended")
			}
			if honour {
				testutil.Eventually(t, "the sender to stop", func() bool {
					select {
					case <-e.done:
						return true
					default:
						return false
					}
				})
				if e.Dropped() != 2 || e.Sent() != 0 {
					t.Errorf("dropped %d sent %d, want 2 and 0", e.Dropped(), e.Sent())
				}
			}
		})
	}
}

// An API that answers with an error status refuses the event: logged once
// as such, with the status and the API's message.
func TestEventsAPIRefused(t *testing.T) {
	cs := newFake(node("cp1", nil))
	cs.setOnCreate(func(context.Context, *eventsv1.Event) error {
		return &StatusError{Request: "POST /apis/events.k8s.io/v1/namespaces/default/events", Code: 403, Reason: metav1.StatusReasonForbidden, Message: "events.events.k8s.io is forbidden"}
	})
	var logs testutil.SyncBuffer
	e := NewEvents(cs, "cp1", slog.New(slog.NewTextHandler(&logs, nil)))
	for range 3 {
		e.OnTransition(speaker.Transition{}, decisions())
	}
	testutil.Eventually(t, "3 events dropped", func() bool { return e.Dropped() == 3 })
	e.Close(context.Background())
	out := logs.String()
	if c := strings.Count(out, "kubernetes events disabled: API refused the event: POST /apis/events.k8s.io/v1/namespaces/default/events: HTTP 403 Forbidden: events.events.k8s.io is forbidden"); c != 1 {
		t.Errorf("refusal logged %d times, want once:\n%s", c, out)
	}
}

// The Node's UID is looked up once; a missing Node leaves it empty and is
// not asked for again.
func TestEventsNodeMissing(t *testing.T) {
	cs := newFake()
	e := NewEvents(cs, "cp1", nil)
	e.OnTransition(speaker.Transition{Announce: true}, decisions())
	e.OnTransition(speaker.Transition{}, decisions())
	e.Close(context.Background())
	evs := listEvents(t, cs)
	if len(evs) != 2 || evs[0].Regarding.Name != "cp1" || evs[0].Regarding.UID != "" {
		t.Fatalf("events %+v, want two about cp1 without a UID", evs)
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.gets != 1 {
		t.Errorf("node looked up %d times, want once", cs.gets)
	}
}

func TestNodeLabels(t *testing.T) {
	cs := newFake(node("cp1", map[string]string{"topology.kubernetes.io/zone": "a"}))
	got, err := NodeLabels(context.Background(), cs, "cp1")
	if err != nil || got["topology.kubernetes.io/zone"] != "a" {
		t.Fatalf("labels %v, err %v", got, err)
	}
	if got, err := NodeLabels(context.Background(), cs, "nope"); !errors.Is(err, ErrNodeNotFound) {
		t.Errorf("missing node: labels %v, err %v, want ErrNodeNotFound", got, err)
	}
	if _, err := NodeLabels(context.Background(), nil, "cp1"); !errors.Is(err, ErrNoAPI) {
		t.Errorf("nil client: %v, want ErrNoAPI", err)
	}
}

// An unreachable API at start costs at most LookupTimeout.
func TestNodeLabelsAPIDown(t *testing.T) {
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	// A blackholed address (TEST-NET-1 on an unused port) and a closed
	// local port: neither may hold the caller longer than LookupTimeout.
	for _, server := range []string{"https://127.0.0.1:1", "https://192.0.2.254:6443"} {
		writeKubeconfig(t, kc, server)
		cs, _, err := NewClient(Config{Kubeconfig: kc}, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = NodeLabels(context.Background(), cs, "cp1")
		if err == nil {
			t.Fatalf("%s: no error", server)
		}
		if d := time.Since(start); d > LookupTimeout+500*time.Millisecond {
			t.Errorf("%s: NodeLabels took %v (err %v)", server, d, err)
		}
	}
}

func writeKubeconfig(t *testing.T, path, server string) {
	t.Helper()
	kc := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "` + server + `", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestRESTConfigSources(t *testing.T) {
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	writeKubeconfig(t, kc, "https://127.0.0.1:6443")
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	if _, _, err := RESTConfig(Config{}, env(nil)); !errors.Is(err, ErrNoAPI) {
		t.Errorf("nothing set: %v, want ErrNoAPI", err)
	}
	rc, src, err := RESTConfig(Config{}, env(map[string]string{"KUBECONFIG": kc}))
	if err != nil || rc.Host != "https://127.0.0.1:6443" || !strings.HasPrefix(src, "$KUBECONFIG") {
		t.Errorf("$KUBECONFIG: host %v src %q err %v", rc, src, err)
	}
	rc, src, err = RESTConfig(Config{Kubeconfig: kc}, env(map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1"}))
	if err != nil || rc.Timeout != RequestTimeout || rc.QPS != qps || !strings.HasPrefix(src, "kubeconfig ") {
		t.Errorf("explicit kubeconfig wins: %v %q %v", rc, src, err)
	}
	// In a pod without the service account files: an error, not a hang.
	if _, src, err := RESTConfig(Config{}, env(map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1"})); err == nil || src != "in-cluster" {
		t.Errorf("in-cluster without a token: src %q err %v", src, err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (NodeConfig{Name: "cp-1.example.com"}).Validate(); err != nil {
		t.Error(err)
	}
	if err := (NodeConfig{}).Validate(); err != nil {
		t.Errorf("empty (unknown) node name: %v", err)
	}
	for _, bad := range []string{"CP_1", "cp_1", strings.Repeat("a", 254)} {
		if err := (NodeConfig{Name: bad}).Validate(); err == nil || !strings.HasPrefix(err.Error(), "node.name: ") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	missing := Default()
	missing.Kubeconfig = "/nonexistent/kubeconfig"
	if err := missing.Validate(); err == nil || !strings.HasPrefix(err.Error(), "kubernetes.kubeconfig: ") {
		t.Errorf("missing kubeconfig: %v", err)
	}
	// Every problem at once.
	both := Config{Kubeconfig: "/nonexistent/kubeconfig", Namespace: "Kube_System"}
	if err := both.Validate(); err == nil || !strings.Contains(err.Error(), "kubernetes.kubeconfig: ") || !strings.Contains(err.Error(), "kubernetes.namespace: \"Kube_System\"") {
		t.Errorf("bad namespace and kubeconfig: %v", err)
	}
	if err := Default().Validate(); err != nil || !Default().Events {
		t.Errorf("default: %v %+v", err, Default())
	}
	if n := DefaultNode().Name; n != strings.ToLower(n) {
		t.Errorf("default node name %q not lower case", n)
	}
}
