// Package testutil holds the two things every test in the module that
// waits on another goroutine needs: Eventually, the one way to wait for a
// condition, and SyncBuffer, a log sink that code under test may write to
// while the test reads it.
//
// Tests never sleep to synchronise: on two busy cores any fixed sleep is
// sometimes too short. They poll with a generous deadline instead, so a
// test is slow only when it is failing.
//
// Only tests and test helpers (bgptest, apitest) import it. It lives under
// peers because an internal/ package would have to sit at the top of the
// module to be importable from cmd, speaker and peers alike, and the
// top-level layout is fixed; peers is the lowest package all of them
// already import (policy's tests never wait). It imports nothing from the
// module, so it can never be part of an import cycle.
package testutil

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// Timeout is how long Eventually waits: far beyond what any condition
// needs on a loaded machine, so that reaching it means the code is wrong,
// not slow.
const Timeout = 10 * time.Second

// maxInterval caps the backoff between polls: short enough that a test
// sees a condition soon after it holds, long enough that a condition that
// makes an RPC does not keep a busy machine busier.
const maxInterval = 20 * time.Millisecond

// Eventually polls cond until it holds, and fails the test after Timeout,
// naming what it waited for and, if detail is given, the state detail
// describes at that moment. Call it from the test's goroutine.
func Eventually(t testing.TB, what string, cond func() bool, detail ...func() string) {
	t.Helper()
	EventuallyWithin(t, Timeout, what, cond, detail...)
}

// EventuallyWithin is Eventually with its own deadline, for the few
// conditions that may legitimately take longer than Timeout.
func EventuallyWithin(t testing.TB, timeout time.Duration, what string, cond func() bool, detail ...func() string) {
	t.Helper()
	if Poll(timeout, cond) {
		return
	}
	msg := "timed out after " + timeout.String() + " waiting for: " + what
	for _, d := range detail {
		msg += "\n" + d()
	}
	t.Fatal(msg)
}

// Poll calls cond, with a short backoff between calls, until it returns
// true (Poll returns true) or timeout passes (false). The sleeps in it are
// polling intervals, never synchronisation: cond decides.
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	interval := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
		interval = min(2*interval, maxInterval)
	}
	return true
}

// SyncBuffer collects output written from other goroutines (a slog
// handler in the code under test) for the test to read. The zero value is
// ready to use.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Logger returns a debug-level text logger that writes to b.
func (b *SyncBuffer) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
