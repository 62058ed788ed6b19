package main

import (
	"testing"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// Every trial runs once per build, and the builds take turns going first.
func TestRounds(t *testing.T) {
	for _, tc := range []struct{ n, rounds int }{{20, 4}, {20, 3}, {3, 3}, {7, 1}, {5, 2}} {
		runs := make([]int, tc.n)
		var firsts []string
		for k := range tc.rounds {
			lo, hi := roundTrials(tc.n, tc.rounds, k)
			for i := lo; i < hi; i++ {
				runs[i]++
			}
			firsts = append(firsts, roundOrder([]string{before, after}, k)[0])
		}
		for i, r := range runs {
			if r != 1 {
				t.Errorf("n %d, rounds %d: trial %d runs %d times, want 1", tc.n, tc.rounds, i, r)
			}
		}
		if tc.rounds >= 2 && (firsts[0] != before || firsts[1] != after) {
			t.Errorf("n %d, rounds %d: first builds %v, want them alternating", tc.n, tc.rounds, firsts)
		}
	}
}

// The printed settings are the lab's, not a copy of them: values other
// than the lab's defaults come out as given.
func TestSettingsFromLab(t *testing.T) {
	o := lab.Options{
		HealthInterval: 250 * time.Millisecond, HealthTimeout: 90 * time.Millisecond, Rise: 3, Fall: 3, TimeoutFall: 5,
		HoldTime: 3 * time.Second, KeepaliveTime: time.Second, ConnectRetry: time.Second,
		ShutdownDelay: 3 * time.Second, RemoveDelay: 500 * time.Millisecond, DrainPeriod: time.Second,
		BFD: &lab.BFDOptions{Interval: 100 * time.Millisecond, Multiplier: 3},
	}
	got := map[string]string{}
	settings(got, o)
	want := map[string]string{
		"health": "interval 250ms, timeout 90ms, rise 3, fall 3, timeoutFall 5",
		"bgp":    "hold 3s, keepalive 1s, connect retry 1s",
		"kube-apiserver --shutdown-delay-duration": "3s",
		"loopback.removeDelay":                     "500ms",
		"shutdown.drainPeriod":                     "1s",
		"damping.halfLife":                         "0s",
		"bfd (BFD lab)":                            "100ms x 3",
		"client":                                   "GET /version, new TCP+TLS connection each, 200/s, 1.5s timeout",
		"fib timing":                               "ip monitor route nexthop in the router namespace (notification read time), 20ms poll backstop",
	}
	// The e2e module keeps its dependencies to the lab's own: no go-cmp.
	for k := range want {
		if got[k] != want[k] {
			t.Errorf("settings[%q] = %q, want %q", k, got[k], want[k])
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("settings[%q] = %q, not expected", k, got[k])
		}
	}
}
