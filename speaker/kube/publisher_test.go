package kube

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/vipcast/vipcast/peers"
	"github.com/vipcast/vipcast/peers/testutil"
	"github.com/vipcast/vipcast/speaker"
	"github.com/vipcast/vipcast/speaker/kube/nodestatus"
)

// clientsetLeases adapts client-go's fake clientset to LeaseAPI: the
// publisher is tested against the same object tracker client-go's own
// tests use (resource versions, NotFound, AlreadyExists), while vipcast
// itself keeps its two plain HTTP calls (see NewForConfig).
type clientsetLeases struct{ c kubernetes.Interface }

func wrapAPIError(err error) error {
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return err
}

func (f clientsetLeases) GetLease(ctx context.Context, ns, name string) (*coordinationv1.Lease, error) {
	l, err := f.c.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
	return l, wrapAPIError(err)
}

func (f clientsetLeases) CreateLease(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	out, err := f.c.CoordinationV1().Leases(l.Namespace).Create(ctx, l, metav1.CreateOptions{})
	return out, wrapAPIError(err)
}

func (f clientsetLeases) UpdateLease(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	out, err := f.c.CoordinationV1().Leases(l.Namespace).Update(ctx, l, metav1.UpdateOptions{})
	return out, wrapAPIError(err)
}

func (f clientsetLeases) ListLeases(ctx context.Context, ns, selector string) ([]coordinationv1.Lease, error) {
	out, err := f.c.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, wrapAPIError(err)
	}
	return out.Items, nil
}

// fakeSpeaker is a speaker.Status source the test changes.
type fakeSpeaker struct {
	mu sync.Mutex
	st speaker.Status
}

func (f *fakeSpeaker) Status() speaker.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeSpeaker) set(reason speaker.Reason, advertised bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st.Decisions = []speaker.Decision{{VIP: vip, Announce: advertised, Advertised: advertised, Reason: reason, Since: time.Now()}}
}

func newFakeSpeaker() *fakeSpeaker {
	f := &fakeSpeaker{}
	f.set(speaker.ReasonHealthy, true)
	f.st.Peers = []peers.PeerStatus{{Address: netip.MustParseAddr("192.0.2.1"), ASN: 65000, State: peers.StateEstablished, Since: time.Now()}}
	f.st.LastProbe = speaker.ProbeResult{At: time.Now(), OK: true, Reason: "ok", Latency: time.Millisecond}
	return f
}

// writeLog records the renewTime and status of every accepted write.
type writeLog struct {
	mu     sync.Mutex
	renews []time.Time
	status []nodestatus.Status
}

func (w *writeLog) record(a k8stesting.Action) {
	w2, ok := a.(interface{ GetObject() runtime.Object })
	if !ok || (a.GetVerb() != "create" && a.GetVerb() != "update") {
		return
	}
	l := w2.GetObject().(*coordinationv1.Lease)
	st, err := nodestatus.Parse(l.Annotations[StatusAnnotation])
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		w.status = append(w.status, st)
	}
	w.renews = append(w.renews, l.Spec.RenewTime.Time)
}

func (w *writeLog) snapshot() ([]time.Time, []nodestatus.Status) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Time(nil), w.renews...), append([]nodestatus.Status(nil), w.status...)
}

func (w *writeLog) last() (nodestatus.Status, bool) {
	_, st := w.snapshot()
	if len(st) == 0 {
		return nodestatus.Status{}, false
	}
	return st[len(st)-1], true
}

// fakeCluster is a fake clientset whose lease writes are logged and can be
// made to fail.
type fakeCluster struct {
	cs   *fake.Clientset
	log  writeLog
	fail atomic.Bool
}

func newFakeCluster() *fakeCluster {
	f := &fakeCluster{cs: fake.NewClientset()}
	f.cs.PrependReactor("*", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if f.fail.Load() {
			return true, nil, errors.New("dial tcp 203.0.113.10:6443: connect: connection refused")
		}
		return false, nil, nil
	})
	f.cs.PrependReactor("*", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if !f.fail.Load() {
			f.log.record(a)
		}
		return false, nil, nil
	})
	return f
}

func (f *fakeCluster) api() LeaseAPI { return clientsetLeases{f.cs} }

func testPublisherConfig() PublisherConfig {
	c := DefaultPublisher("vipcast-system", "cp1", "v9.9.9")
	c.MinInterval, c.Renew, c.RetryMin, c.RetryMax = 100*time.Millisecond, time.Hour, 20*time.Millisecond, 100*time.Millisecond
	return c
}

func startPublisher(t *testing.T, api LeaseAPI, cfg PublisherConfig, sp *fakeSpeaker, log *testutil.SyncBuffer) *Publisher {
	t.Helper()
	var lg = testutil.SyncBuffer{}
	if log == nil {
		log = &lg
	}
	p := NewPublisher(api, cfg, sp.Status, log.Logger())
	p.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		p.Close(ctx)
	})
	return p
}

func TestPublisherWritesTheLease(t *testing.T) {
	fc := newFakeCluster()
	sp := newFakeSpeaker()
	p := startPublisher(t, fc.api(), testPublisherConfig(), sp, nil)

	testutil.Eventually(t, "the Lease", func() bool { _, ok := fc.log.last(); return ok })
	leases, err := fc.api().ListLeases(context.Background(), "vipcast-system", StatusSelector)
	if err != nil || len(leases) != 1 {
		t.Fatalf("list %s: %v %v", StatusSelector, leases, err)
	}
	l := leases[0]
	if l.Name != "vipcast-cp1" || *l.Spec.HolderIdentity != "cp1" || *l.Spec.LeaseDurationSeconds != 40 ||
		l.Labels[LabelNode] != "cp1" || l.Spec.RenewTime == nil || l.Spec.AcquireTime == nil {
		t.Errorf("lease: %+v", l)
	}
	e := EntryFromLease(&l, time.Now())
	if e.Stale || e.Status == nil || e.Node != "cp1" {
		t.Fatalf("entry: %+v", e)
	}
	want := []nodestatus.VIP{{Prefix: vip.String(), Advertised: true, Announce: true, Reason: "healthy"}}
	if d := cmp.Diff(want, e.Status.VIPs, cmpIgnoreSince); d != "" {
		t.Errorf("vips (-want +got):\n%s", d)
	}
	if !e.Status.Advertised || e.Status.Version != "v9.9.9" || len(e.Status.Sessions) != 1 || e.Status.Sessions[0].State != "established" ||
		e.Status.LastProbe == nil || !e.Status.LastProbe.OK {
		t.Errorf("status: %+v", e.Status)
	}

	// A withdraw is written at once (MinInterval after the last write at most).
	// (Renew is an hour: only the transition's Notify wakes the publisher.)
	sp.set(speaker.ReasonUnhealthy, false)
	p.OnTransition(speaker.Transition{}, nil)
	testutil.Eventually(t, "the withdraw in the Lease", func() bool {
		st, _ := fc.log.last()
		return len(st.VIPs) == 1 && st.VIPs[0].Reason == "unhealthy" && !st.Advertised
	})
}

var cmpIgnoreSince = cmp.Comparer(func(a, b time.Time) bool { return true })

func TestPublisherThrottlesAndPublishesTheLast(t *testing.T) {
	fc := newFakeCluster()
	sp := newFakeSpeaker()
	cfg := testPublisherConfig()
	p := startPublisher(t, fc.api(), cfg, sp, nil)
	testutil.Eventually(t, "the first write", func() bool { _, ok := fc.log.last(); return ok })

	// A flapping node: 60 changes, as fast as the loop could make them.
	for i := range 60 {
		if i%2 == 0 {
			sp.set(speaker.ReasonUnhealthy, false)
		} else {
			sp.set(speaker.ReasonHealthy, true)
		}
		p.OnTransition(speaker.Transition{}, nil)
		p.OnProbe(speaker.ProbeResult{})
	}
	sp.set(speaker.ReasonDrained, false)
	p.OnTransition(speaker.Transition{}, nil)
	testutil.Eventually(t, "the last state written", func() bool {
		st, _ := fc.log.last()
		return len(st.VIPs) == 1 && st.VIPs[0].Reason == "drained"
	})
	renews, _ := fc.log.snapshot()
	for i := 1; i < len(renews); i++ {
		if gap := renews[i].Sub(renews[i-1]); gap < cfg.MinInterval {
			t.Errorf("writes %d and %d only %v apart (MinInterval %v): %v", i-1, i, gap, cfg.MinInterval, renews)
		}
	}
	if len(renews) > 10 {
		t.Errorf("%d writes for 61 changes made at once", len(renews))
	}
}

func TestPublisherRenews(t *testing.T) {
	fc := newFakeCluster()
	cfg := testPublisherConfig()
	cfg.Renew = 50 * time.Millisecond
	startPublisher(t, fc.api(), cfg, newFakeSpeaker(), nil)
	testutil.Eventually(t, "3 renewals of an unchanged status", func() bool {
		r, _ := fc.log.snapshot()
		return len(r) >= 4
	})
	r, _ := fc.log.snapshot()
	for i := 1; i < len(r); i++ {
		if !r[i].After(r[i-1]) {
			t.Errorf("renewTime did not advance: %v", r)
		}
	}
}

// An unreachable API: the speaker's calls never wait, the failure is
// logged once (LogEvery), and the status is written as soon as the API
// is back.
func TestPublisherAPIDown(t *testing.T) {
	fc := newFakeCluster()
	fc.fail.Store(true)
	sp := newFakeSpeaker()
	var log testutil.SyncBuffer
	p := startPublisher(t, fc.api(), testPublisherConfig(), sp, &log)
	testutil.Eventually(t, "retries", func() bool { return p.Failures() >= 5 })
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 10000 {
			p.OnTransition(speaker.Transition{}, nil)
			p.OnProbe(speaker.ProbeResult{})
			p.OnPeers(nil)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the observer calls blocked with the API down")
	}
	if n := strings.Count(log.String(), "status lease: cannot publish"); n != 1 {
		t.Errorf("failure logged %d times, want once:\n%s", n, log.String())
	}
	if !strings.Contains(log.String(), "connection refused") {
		t.Errorf("the log does not say why:\n%s", log.String())
	}

	sp.set(speaker.ReasonUnhealthy, false)
	fc.fail.Store(false)
	testutil.Eventually(t, "written once the API is back", func() bool {
		st, ok := fc.log.last()
		return ok && st.VIPs[0].Reason == "unhealthy"
	})
	testutil.Eventually(t, "recovery logged", func() bool { return strings.Contains(log.String(), "published again") })
}

// Close writes the status that changed since the last write, then stops.
func TestPublisherCloseWritesTheLastWord(t *testing.T) {
	fc := newFakeCluster()
	sp := newFakeSpeaker()
	cfg := testPublisherConfig()
	cfg.MinInterval = time.Hour // only Close can write the change
	p := NewPublisher(fc.api(), cfg, sp.Status, nil)
	p.Start()
	testutil.Eventually(t, "the first write", func() bool { _, ok := fc.log.last(); return ok })
	sp.set(speaker.ReasonShuttingDown, false)
	p.Notify()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.Close(ctx)
	st, _ := fc.log.last()
	if st.VIPs[0].Reason != "shutting-down" {
		t.Errorf("last word %+v", st)
	}
	p.Close(ctx) // twice is fine
}

// Close of a publisher never started, and with an API that hangs, returns
// by the deadline.
func TestPublisherCloseBounded(t *testing.T) {
	p := NewPublisher(nil, testPublisherConfig(), newFakeSpeaker().Status, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.Close(ctx)

	h := hangingLeases{}
	cfg := testPublisherConfig()
	cfg.Timeout = time.Hour
	p = NewPublisher(h, cfg, newFakeSpeaker().Status, nil)
	p.Start()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	start := time.Now()
	p.Close(ctx2)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v with a hanging API", d)
	}
}

type hangingLeases struct{}

func (hangingLeases) GetLease(ctx context.Context, _, _ string) (*coordinationv1.Lease, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (hangingLeases) CreateLease(ctx context.Context, _ *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (hangingLeases) UpdateLease(ctx context.Context, _ *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (hangingLeases) ListLeases(ctx context.Context, _, _ string) ([]coordinationv1.Lease, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// The Lease deleted behind the publisher's back is created again.
func TestPublisherLeaseDeleted(t *testing.T) {
	fc := newFakeCluster()
	cfg := testPublisherConfig()
	cfg.Renew = 50 * time.Millisecond
	startPublisher(t, fc.api(), cfg, newFakeSpeaker(), nil)
	testutil.Eventually(t, "the Lease", func() bool { _, ok := fc.log.last(); return ok })
	if err := fc.cs.CoordinationV1().Leases("vipcast-system").Delete(context.Background(), "vipcast-cp1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the Lease again", func() bool {
		_, err := fc.api().GetLease(context.Background(), "vipcast-system", "vipcast-cp1")
		return err == nil
	})
}

func TestEntryFromLease(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	good, _ := nodestatus.Status{Node: "cp1", VIPs: []nodestatus.VIP{{Prefix: "203.0.113.10/32", Reason: "healthy"}}}.Marshal()
	lease := func(renew time.Time, secs int32, ann map[string]string) *coordinationv1.Lease {
		h := "cp1"
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "vipcast-cp1", Annotations: ann},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &h}}
		if !renew.IsZero() {
			rt := metav1.NewMicroTime(renew)
			l.Spec.RenewTime = &rt
		}
		if secs > 0 {
			l.Spec.LeaseDurationSeconds = &secs
		}
		return l
	}
	ok := map[string]string{StatusAnnotation: good}
	for _, tc := range []struct {
		name    string
		l       *coordinationv1.Lease
		stale   bool
		problem string
	}{
		{"fresh", lease(now.Add(-10*time.Second), 40, ok), false, ""},
		{"at the limit", lease(now.Add(-40*time.Second), 40, ok), false, ""},
		{"stale", lease(now.Add(-41*time.Second), 40, ok), true, ""},
		{"never renewed", lease(time.Time{}, 40, ok), true, ""},
		{"no duration", lease(now, 0, ok), true, ""},
		{"no annotation", lease(now, 40, nil), false, "no vipcast.io/status annotation"},
		{"garbage", lease(now, 40, map[string]string{StatusAnnotation: "{"}), false, "not vipcast's status JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := EntryFromLease(tc.l, now)
			if e.Stale != tc.stale || !strings.Contains(e.Problem, tc.problem) || (tc.problem == "") != (e.Status != nil) || e.Node != "cp1" {
				t.Errorf("%+v", e)
			}
		})
	}
}

// Whatever the configuration, the status stays small.
func TestFromSpeakerBounded(t *testing.T) {
	var st speaker.Status
	long := strings.Repeat("é", 5000)
	for i := range 100 {
		st.Decisions = append(st.Decisions, speaker.Decision{VIP: netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 32), Reason: speaker.Reason(long)})
		st.Peers = append(st.Peers, peers.PeerStatus{Address: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), State: peers.StateActive, LastError: long})
	}
	st.DrainReason = long
	st.LastProbe = speaker.ProbeResult{At: time.Now(), Reason: long}
	ns := FromSpeaker("cp1", long, st)
	if len(ns.VIPs) != nodestatus.MaxVIPs || ns.MoreVIPs != 100-nodestatus.MaxVIPs || len(ns.Sessions) != nodestatus.MaxSessions || ns.MoreSessions != 100-nodestatus.MaxSessions {
		t.Errorf("vips %d (+%d), sessions %d (+%d)", len(ns.VIPs), ns.MoreVIPs, len(ns.Sessions), ns.MoreSessions)
	}
	raw, err := ns.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := nodestatus.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(ns, back); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
	if len(ns.DrainReason) > nodestatus.MaxString || len(ns.VIPs[0].Reason) > nodestatus.MaxString {
		t.Errorf("strings not clipped: %d", len(ns.DrainReason))
	}
}

func TestSameState(t *testing.T) {
	sp := newFakeSpeaker()
	a := FromSpeaker("cp1", "v1", sp.Status())
	sp.st.LastProbe.At = sp.st.LastProbe.At.Add(time.Second)
	sp.st.OKRun = 7
	if b := FromSpeaker("cp1", "v1", sp.Status()); !nodestatus.SameState(a, b) {
		t.Error("a new probe is a change of state")
	}
	sp.set(speaker.ReasonUnhealthy, false)
	if b := FromSpeaker("cp1", "v1", sp.Status()); nodestatus.SameState(a, b) {
		t.Error("a withdraw is no change of state")
	}
}
