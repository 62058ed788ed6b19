package speaker

import (
	"context"
	"net/netip"
	"time"
)

// ProbeResult is one health check of the local apiserver.
type ProbeResult struct {
	// At is when the probe started.
	At      time.Time
	Latency time.Duration
	OK      bool
	// Code is the HTTP status, 0 if no response arrived.
	Code int
	// Reason says why a probe failed ("connection refused", "timeout after
	// 80ms", "HTTP 500", "tls: ...") and is "ok" on success.
	Reason string
	// TimedOut: no complete answer within the timeout. A slow apiserver is
	// not a dead one, so such failures need health.timeoutFall in a row.
	TimedOut bool
	// Refused: the connection was refused, so nothing listens on the
	// apiserver's port. Such a node is never kept as a last resort: it
	// would answer no client at all.
	Refused bool
}

// Prober checks the local apiserver once. Probe must return within the
// configured timeout and never leak a connection or goroutine.
type Prober interface {
	Probe(ctx context.Context) ProbeResult
}

// ClosingProber is a Prober that also hears when the apiserver closes a
// connection it keeps alive, so a crash is probed at once instead of at
// the next interval.
type ClosingProber interface {
	Prober
	Closed() <-chan struct{}
}

// Addresses manages the VIP addresses on the loopback interface.
type Addresses interface {
	// Add puts vip on the interface; adding a present VIP is not an error.
	Add(vip netip.Prefix) error
	// Remove takes vip off; removing an absent VIP is not an error.
	Remove(vip netip.Prefix) error
	// Cleanup removes, at start and at exit, every VIP in vips and every
	// address a predecessor marked as vipcast's, and nothing else.
	Cleanup(vips []netip.Prefix) error
	// Missing returns the VIPs of vips that are not on the interface.
	Missing(vips []netip.Prefix) ([]netip.Prefix, error)
}

// RemovalWatcher is an Addresses that reports removals as they happen (on
// Linux, netlink RTM_DELADDR), so a VIP deleted behind vipcast's back is
// put back at once rather than at the next periodic check.
type RemovalWatcher interface {
	// WatchRemovals sends every address removed from the interface to
	// removed until ctx ends, and returns only then; a zero Prefix means
	// removals may have been missed. See Loopback.WatchRemovals.
	WatchRemovals(ctx context.Context, removed chan<- netip.Prefix) error
}
