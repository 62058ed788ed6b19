package testutil

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a testing.TB that keeps a Fatal's message instead of
// ending the test.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper()           {}
func (r *recorder) Fatal(args ...any) { r.msg = fmt.Sprint(args...) }

func TestEventually(t *testing.T) {
	var n atomic.Int32
	go func() {
		for range 3 {
			n.Add(1)
		}
	}()
	Eventually(t, "three increments", func() bool { return n.Load() == 3 })
}

func TestEventuallyWithinFailsNamingWhatAndDetail(t *testing.T) {
	r := &recorder{TB: t}
	start := time.Now()
	EventuallyWithin(r, 30*time.Millisecond, "never", func() bool { return false }, func() string { return "state: stuck" })
	if !strings.Contains(r.msg, "waiting for: never") || !strings.Contains(r.msg, "state: stuck") {
		t.Errorf("message %q does not name what and detail", r.msg)
	}
	if time.Since(start) < 30*time.Millisecond {
		t.Error("gave up before the deadline")
	}
}

func TestPollStopsAtOnceWhenTrue(t *testing.T) {
	calls := 0
	if !Poll(time.Hour, func() bool { calls++; return true }) || calls != 1 {
		t.Errorf("Poll = false or %d calls, want true after 1", calls)
	}
}

func TestSyncBufferConcurrentWrites(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { b.Logger().Info("hello", "n", i) })
	}
	wg.Wait()
	if got := strings.Count(b.String(), "msg=hello"); got != 8 {
		t.Errorf("%d lines, want 8:\n%s", got, b.String())
	}
}
