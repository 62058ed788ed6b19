package e2e

import (
	"net/netip"
	"testing"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// TestECMPResets: only a reset mid-body within moments of a nexthop change
// is put down to ECMP; every other failed call fails the rolling restart.
func TestECMPResets(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	a, b := netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("192.0.2.12")
	fib := []lab.FIBState{
		{At: t0, Nexthops: []netip.Addr{a, b}, Order: []netip.Addr{a, b}}, // the state at the start
		{At: t0.Add(10 * time.Second), Nexthops: []netip.Addr{b}, Order: []netip.Addr{b}},
	}
	const midBody = "unexpected error when reading response body. Please retry. Original error: read: connection reset by peer"
	type f = struct {
		At      time.Time `json:"at"`
		Call    string    `json:"call"`
		MidBody bool      `json:"midBody"`
		Err     string    `json:"err"`
	}
	for _, tc := range []struct {
		name        string
		failures    []f
		listed      int64 // ListFailures; the summary lists at most 50
		ecmp, other int
	}{
		{"mid-body just after a change", []f{{t0.Add(10*time.Second + 5*time.Millisecond), "list", true, midBody}}, 1, 1, 0},
		{"mid-body seen a little before the monitor's change", []f{{t0.Add(10*time.Second - 100*time.Millisecond), "list", true, midBody}}, 1, 1, 0},
		{"mid-body far from any change", []f{{t0.Add(5 * time.Second), "list", true, midBody}}, 1, 0, 1},
		{"the state at the start is no change", []f{{t0.Add(time.Second), "list", true, midBody}}, 1, 0, 1},
		{"not mid-body, near a change", []f{{t0.Add(10*time.Second + time.Millisecond), "list", false, "dial tcp: connection refused"}}, 1, 0, 1},
		{"more failures than listed", []f{{t0.Add(10*time.Second + 5*time.Millisecond), "list", true, midBody}}, 3, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := clientSummary{ListFailures: tc.listed, Failures: tc.failures}
			ecmp, other := ecmpResets(s, fib)
			if len(ecmp) != tc.ecmp || len(other) != tc.other {
				t.Errorf("ecmp %q, other %q; want %d and %d", ecmp, other, tc.ecmp, tc.other)
			}
		})
	}
}
