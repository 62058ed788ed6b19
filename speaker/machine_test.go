package speaker

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// step is one input to the machine; the script language keeps flap
// sequences readable: "+" a good probe, "-" a refused one, "5" an HTTP 500,
// "t" a timeout, "peer"/"nopeer",
// "drain"/"undrain", "shutdown", "wait:<duration>", "tick", "lofixed"/"lofail"
// (a VIP vanished from lo and was put back, or could not be), "lorestored".
type step struct {
	in   string
	want string // "A:<reason>" announced, "W:<reason>" withdrawn; "+LR" if announced as a last resort
}

func run(t *testing.T, cfg MachineConfig, steps []step) {
	t.Helper()
	now := time.Unix(1_700_000_000, 0)
	m := NewMachine(cfg, []netip.Prefix{netip.MustParsePrefix("203.0.113.10/32")}, now)
	var got, want []string
	for _, s := range steps {
		for _, in := range strings.Fields(s.in) {
			now = now.Add(100 * time.Millisecond)
			switch {
			case in == "+":
				m.Probe(ProbeResult{OK: true, Reason: "ok"}, now)
			case in == "-":
				m.Probe(ProbeResult{Reason: "connection refused", Refused: true}, now)
			case in == "5":
				m.Probe(ProbeResult{Reason: "HTTP 500: [-]etcd failed: reason withheld", Code: 500}, now)
			case in == "t":
				m.Probe(ProbeResult{Reason: "timeout after 80ms", TimedOut: true}, now)
			case in == "peer", in == "nopeer":
				m.SetPeerUp(in == "peer", now)
			case in == "drain", in == "undrain":
				m.SetDrained(in == "drain", now)
			case in == "shutdown":
				m.Shutdown(now)
			case in == "tick":
				m.Tick(now)
			case in == "lofixed", in == "lofail":
				// A VIP vanished from lo; putting it back worked or failed.
				var err error
				if in == "lofail" {
					err = errors.New("operation not permitted")
				}
				if tr := m.LoopbackMissing(m.vips, err, now); tr == nil || len(tr.Loopback) != 1 {
					t.Fatalf("%s: transition %+v, want one reporting the missing VIP", in, tr)
				}
			case in == "lorestored":
				m.LoopbackRestored(now)
			case strings.HasPrefix(in, "wait:"):
				d, err := time.ParseDuration(strings.TrimPrefix(in, "wait:"))
				if err != nil {
					t.Fatal(err)
				}
				now = now.Add(d)
				m.Tick(now)
			default:
				t.Fatalf("bad step %q", in)
			}
		}
		d := m.Decisions()[0]
		state := "W:"
		if d.Announce {
			state = "A:"
		}
		lr := ""
		if d.LastResort {
			lr = "+LR"
		}
		if d.LastResort != (d.Reason == ReasonLastResort) || d.LastResort && !d.Announce {
			t.Errorf("%s: decision %+v: LastResort, its reason and Announce disagree", s.in, d)
		}
		got = append(got, s.in+" => "+state+string(d.Reason)+lr)
		want = append(want, s.in+" => "+s.want)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decisions (-want +got):\n%s", diff)
	}
}

func TestMachine(t *testing.T) {
	base := MachineConfig{Rise: 3, Fall: 2}
	damped := MachineConfig{Rise: 3, Fall: 2, Damping: DampingConfig{HalfLife: 15 * time.Second, Suppress: 2.5, Reuse: 1}}
	tests := []struct {
		name  string
		cfg   MachineConfig
		steps []step
	}{
		{"vip put back on lo keeps the route", base, []step{
			{"peer + + +", "A:healthy"}, {"lofixed", "A:healthy"}, {"lofixed -", "A:healthy"},
		}},
		{"vip not put back on lo withdraws until restored", base, []step{
			{"peer + + +", "A:healthy"}, {"lofail", "W:loopback-failed"}, {"+ + + tick", "W:loopback-failed"},
			{"lorestored", "A:healthy"},
		}},
		{"loopback failure outranks unhealthy, not drain", base, []step{
			{"peer + + +", "A:healthy"}, {"- -", "W:unhealthy"}, {"lofail", "W:loopback-failed"},
			{"drain", "W:drained"}, {"undrain", "W:loopback-failed"}, {"lorestored", "W:unhealthy"},
		}},
		{"loopback failure ends a graceful shutdown at once", MachineConfig{Rise: 3, Fall: 2, GracefulWait: 3 * time.Second}, []step{
			{"peer + + +", "A:healthy"}, {"drain", "A:graceful-shutdown"}, {"lofail", "W:drained"},
		}},
		{"starts withdrawn until rise", base, []step{
			{"peer", "W:starting"}, {"+ +", "W:starting"}, {"+", "A:healthy"},
		}},
		{"fails before ever healthy", base, []step{
			{"peer -", "W:starting"}, {"-", "W:unhealthy"}, {"+ +", "W:unhealthy"}, {"+", "A:healthy"},
		}},
		{"fall edge: one failure is not enough", base, []step{
			{"peer + + +", "A:healthy"}, {"-", "A:healthy"}, {"+", "A:healthy"}, {"-", "A:healthy"}, {"-", "W:unhealthy"},
		}},
		{"rise edge: a failure resets the run", base, []step{
			{"peer + + + - -", "W:unhealthy"}, {"+ +", "W:unhealthy"}, {"-", "W:unhealthy"}, {"+ +", "W:unhealthy"}, {"+", "A:healthy"},
		}},
		{"intermittent probe never flaps", base, []step{
			{"peer + + +", "A:healthy"}, {"- + - + - + - + - +", "A:healthy"},
		}},
		{"intermittent while down never announces", base, []step{
			{"peer - -", "W:unhealthy"}, {"+ + - + + - + + -", "W:unhealthy"},
		}},
		{"rise 1 fall 1 follows every probe", MachineConfig{Rise: 1, Fall: 1}, []step{
			{"peer +", "A:healthy"}, {"-", "W:unhealthy"}, {"+", "A:healthy"},
		}},
		{"no established peer keeps the path but reports it", base, []step{
			{"+ + +", "A:no-established-peer"}, {"peer", "A:healthy"}, {"nopeer", "A:no-established-peer"}, {"- -", "W:unhealthy"},
		}},
		{"drain overrides health and undrain restores", base, []step{
			{"peer + + +", "A:healthy"}, {"drain", "W:drained"}, {"+ +", "W:drained"}, {"undrain", "A:healthy"},
		}},
		{"drain while unhealthy then undrain stays withdrawn", base, []step{
			{"peer - - drain", "W:drained"}, {"undrain", "W:unhealthy"},
		}},
		{"shutdown is final", base, []step{
			{"peer + + +", "A:healthy"}, {"shutdown", "W:shutting-down"}, {"+ + + undrain peer", "W:shutting-down"},
		}},
		{"shutdown beats drain", base, []step{
			{"peer + + + drain shutdown", "W:shutting-down"},
		}},
		{"damping suppresses the third flap, then decays", damped, []step{
			{"peer + + +", "A:healthy"},
			{"- - + + +", "A:healthy"}, // penalty 1
			{"- - + + +", "A:healthy"}, // penalty ~2
			{"- -", "W:unhealthy"},     // penalty ~2.9 >= 2.5: suppressed
			{"+ + +", "W:damped"},
			{"wait:10s", "W:damped"},
			{"wait:20s", "A:healthy"}, // 2.9 * 2^(-30/15) < 1
		}},
		{"damping: slow flaps never suppress", damped, []step{
			{"peer + + +", "A:healthy"},
			{"- - + + + wait:30s", "A:healthy"},
			{"- - + + + wait:30s", "A:healthy"},
			{"- - + + +", "A:healthy"},
		}},
		{"damped VIP stays withdrawn while unhealthy", damped, []step{
			{"peer + + + - - + + + - - + + + - -", "W:unhealthy"},
			{"+ + +", "W:damped"},
			{"- -", "W:unhealthy"},
		}},
		{"disabled damping never suppresses", base, []step{
			{"peer + + + - - + + + - - + + + - - + + + - - + + +", "A:healthy"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { run(t, tt.cfg, tt.steps) })
	}
}

// Timeouts alone need TimeoutFall in a row; one definite failure in the
// run brings Fall back.
func TestMachineTimeoutFall(t *testing.T) {
	cfg := MachineConfig{Rise: 3, Fall: 2, TimeoutFall: 4}
	tests := []struct {
		name  string
		steps []step
	}{
		{"timeouts need timeoutFall", []step{
			{"peer + + +", "A:healthy"},
			{"t t t", "A:healthy"},
			{"t", "W:unhealthy"},
		}},
		{"a refusal after timeouts counts them", []step{
			{"peer + + +", "A:healthy"},
			{"t -", "W:unhealthy"},
		}},
		{"timeouts after a refusal count too", []step{
			{"peer + + +", "A:healthy"},
			{"- t", "W:unhealthy"},
		}},
		{"a good probe resets the run", []step{
			{"peer + + +", "A:healthy"},
			{"t t t + t t t +", "A:healthy"},
			{"- + t t t", "A:healthy"},
			{"t", "W:unhealthy"},
		}},
		{"timeoutFall below fall means fall", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.steps == nil {
				run(t, MachineConfig{Rise: 3, Fall: 2}, []step{{"peer + + +", "A:healthy"}, {"t t", "W:unhealthy"}})
				return
			}
			run(t, cfg, tt.steps)
		})
	}
	m := NewMachine(cfg, []netip.Prefix{netip.MustParsePrefix("203.0.113.10/32")}, time.Unix(0, 0))
	m.SetPeerUp(true, time.Unix(0, 0))
	var tr *Transition
	for i := range 7 {
		r := ProbeResult{OK: true}
		if i >= 3 {
			r = ProbeResult{Reason: "timeout after 80ms", TimedOut: true}
		}
		if x := m.Probe(r, time.Unix(int64(i), 0)); x != nil {
			tr = x
		}
	}
	if tr == nil || tr.Detail != "4 consecutive timeouts (timeoutFall 4), last: timeout after 80ms" {
		t.Errorf("last transition %+v, want one saying the timeouts reached timeoutFall", tr)
	}
}

func TestMachineTransitions(t *testing.T) {
	now := time.Unix(0, 0)
	m := NewMachine(MachineConfig{Rise: 2, Fall: 2}, []netip.Prefix{netip.MustParsePrefix("2001:db8::10/128")}, now)
	var got []Transition
	rec := func(tr *Transition) {
		if tr != nil {
			got = append(got, *tr)
		}
	}
	at := func(ms int) time.Time { return now.Add(time.Duration(ms) * time.Millisecond) }
	rec(m.SetPeerUp(true, at(0)))
	rec(m.Probe(ProbeResult{OK: true}, at(100)))
	rec(m.Probe(ProbeResult{OK: true}, at(200)))
	rec(m.Probe(ProbeResult{OK: true}, at(300))) // no change, no transition
	rec(m.Probe(ProbeResult{Reason: "HTTP 500"}, at(400)))
	rec(m.Probe(ProbeResult{Reason: "timeout after 80ms"}, at(500)))
	want := []Transition{
		{At: at(200), Announce: true, From: ReasonStarting, To: ReasonHealthy, Detail: "2 consecutive good probes"},
		{At: at(500), Announce: false, From: ReasonHealthy, To: ReasonUnhealthy, Detail: "2 consecutive failed probes, last: timeout after 80ms"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("transitions (-want +got):\n%s", diff)
	}
	d := m.Decisions()[0]
	if d.Announce || d.Advertised || d.Since != at(500) || d.VIP != netip.MustParsePrefix("2001:db8::10/128") {
		t.Errorf("decision = %+v", d)
	}
}

func TestSuppressedUntil(t *testing.T) {
	now := time.Unix(0, 0)
	cfg := MachineConfig{Rise: 1, Fall: 1, Damping: DampingConfig{HalfLife: 10 * time.Second, Suppress: 2, Reuse: 1}}
	m := NewMachine(cfg, nil, now)
	m.SetPeerUp(true, now)
	for _, ok := range []bool{true, false, true, false} {
		m.Probe(ProbeResult{OK: ok}, now)
	}
	m.Probe(ProbeResult{OK: true}, now)
	until := m.SuppressedUntil()
	if want := now.Add(10 * time.Second); until != want {
		t.Fatalf("SuppressedUntil = %v, want %v", until, want)
	}
	if m.Tick(until.Add(-time.Millisecond)); m.Announce() {
		t.Fatal("announced before the penalty decayed to reuse")
	}
	if m.Tick(until); !m.Announce() {
		t.Fatalf("still withdrawn at %v with penalty %.3f", until, m.Penalty(until))
	}
}

func TestNextProbe(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	cfg := MachineConfig{Rise: 2, Fall: 3, TimeoutFall: 4, Interval: 100 * time.Millisecond, ConfirmInterval: 20 * time.Millisecond}
	ok := ProbeResult{OK: true, Reason: "ok"}
	refused := ProbeResult{Reason: "connection refused"}
	timeout := ProbeResult{Reason: "timeout after 80ms", TimedOut: true}
	tests := []struct {
		name   string
		probes []ProbeResult
		want   time.Duration // after the last probe's start
	}{
		{"healthy", []ProbeResult{ok, ok, ok}, 100 * time.Millisecond},
		{"first definite failure confirms fast", []ProbeResult{ok, ok, refused}, 20 * time.Millisecond},
		{"second definite failure still confirms fast", []ProbeResult{ok, ok, refused, refused}, 20 * time.Millisecond},
		{"withdrawn: back to the interval", []ProbeResult{ok, ok, refused, refused, refused}, 100 * time.Millisecond},
		{"still failing after the withdraw", []ProbeResult{ok, ok, refused, refused, refused, refused}, 100 * time.Millisecond},
		{"a timeout is not definite", []ProbeResult{ok, ok, timeout}, 100 * time.Millisecond},
		{"a definite failure after a timeout confirms fast", []ProbeResult{ok, ok, timeout, refused}, 20 * time.Millisecond},
		{"starting: a failure confirms fast", []ProbeResult{refused}, 20 * time.Millisecond},
		{"recovering: successes keep the interval", []ProbeResult{refused, refused, refused, ok}, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMachine(cfg, []netip.Prefix{netip.MustParsePrefix("203.0.113.10/32")}, t0)
			if got := m.NextProbe(); !got.IsZero() {
				t.Errorf("NextProbe() before any probe = %v, want zero", got)
			}
			at := t0
			for _, r := range tt.probes {
				at = at.Add(7 * time.Millisecond)
				r.At = at
				m.Probe(r, at)
			}
			if got := m.NextProbe().Sub(at); got != tt.want {
				t.Errorf("NextProbe() = last probe + %v, want + %v", got, tt.want)
			}
		})
	}
	t.Run("confirmInterval above interval is capped", func(t *testing.T) {
		c := cfg
		c.ConfirmInterval = time.Second
		m := NewMachine(c, nil, t0)
		m.Probe(ProbeResult{At: t0, Reason: "connection refused"}, t0)
		if got := m.NextProbe().Sub(t0); got != c.Interval {
			t.Errorf("NextProbe() = + %v, want the interval %v", got, c.Interval)
		}
	})
}

// The damped detail prints the penalty that triggered suppression, not
// the decayed one, which read "penalty 2.12 >= 2.5".
func TestDampedDetailPenalty(t *testing.T) {
	now := time.Unix(0, 0)
	cfg := MachineConfig{Rise: 1, Fall: 1, Damping: DampingConfig{HalfLife: 10 * time.Second, Suppress: 2.5, Reuse: 1}}
	m := NewMachine(cfg, []netip.Prefix{netip.MustParsePrefix("203.0.113.10/32")}, now)
	m.SetPeerUp(true, now)
	for _, ok := range []bool{true, false, true, false, true, false} {
		m.Probe(ProbeResult{OK: ok}, now)
	}
	tr := m.Probe(ProbeResult{OK: true}, now.Add(5*time.Second))
	if tr == nil || tr.To != ReasonDamped {
		t.Fatalf("healthy while suppressed: transition %+v, want one to %s", tr, ReasonDamped)
	}
	if want := "penalty reached 3.00 >= suppress 2.5"; !strings.Contains(tr.Detail, want) {
		t.Errorf("detail %q, want %q", tr.Detail, want)
	}
}

// The accessors are what the reconcile loop and Status read; they must
// follow the machine, not a copy of it.
func TestMachineAccessors(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	m := NewMachine(MachineConfig{Rise: 1, Fall: 1, GracefulWait: time.Second}, []netip.Prefix{netip.MustParsePrefix("203.0.113.10/32")}, now)
	probe := ProbeResult{OK: true, Reason: "ok", At: now}
	m.SetPeerUp(true, now)
	m.Probe(probe, now)
	type view struct {
		Drained, Graceful bool
		Last              ProbeResult
	}
	got := func() view { return view{m.Drained(), m.GracefulShutdown(), m.LastProbe()} }
	if diff := cmp.Diff(view{Last: probe}, got()); diff != "" {
		t.Errorf("healthy (-want +got):\n%s", diff)
	}
	m.SetDrained(true, now)
	if diff := cmp.Diff(view{Drained: true, Graceful: true, Last: probe}, got()); diff != "" {
		t.Errorf("draining (-want +got):\n%s", diff)
	}
	m.Tick(now.Add(time.Second))
	if diff := cmp.Diff(view{Drained: true, Last: probe}, got()); diff != "" {
		t.Errorf("drained (-want +got):\n%s", diff)
	}
}

// The last resort keeps a node announced, with losing attributes, while its
// apiserver answers but fails; refused connections, drain and shutdown
// still withdraw.
func TestMachineLastResort(t *testing.T) {
	lr := MachineConfig{Rise: 3, Fall: 2, TimeoutFall: 4, LastResort: true}
	gshut := lr
	gshut.GracefulWait = 3 * time.Second
	damped := lr
	damped.Damping = DampingConfig{HalfLife: 15 * time.Second, Suppress: 2.5, Reuse: 1}
	off := lr
	off.LastResort = false
	tests := []struct {
		name  string
		cfg   MachineConfig
		steps []step
	}{
		{"HTTP errors keep it as a last resort", lr, []step{
			{"peer + + +", "A:healthy"}, {"5", "A:healthy"}, {"5", "A:last-resort+LR"},
			{"+ +", "A:last-resort+LR"}, {"+", "A:healthy"},
		}},
		{"timeouts need timeoutFall, then a last resort (etcd down: /readyz hangs)", lr, []step{
			{"peer + + +", "A:healthy"}, {"t t t", "A:healthy"}, {"t", "A:last-resort+LR"}, {"t t t t", "A:last-resort+LR"},
		}},
		{"a refusal withdraws: nothing listens", lr, []step{
			{"peer + + +", "A:healthy"}, {"- -", "W:unhealthy"}, {"5", "A:last-resort+LR"}, {"-", "W:unhealthy"},
			{"t", "A:last-resort+LR"}, {"+ + +", "A:healthy"},
		}},
		{"a crash: reset then refused withdraws without a last-resort blip", lr, []step{
			{"peer + + +", "A:healthy"}, {"5 -", "W:unhealthy"},
		}},
		{"rising again stays a last resort until rise", lr, []step{
			{"peer 5 5", "A:last-resort+LR"}, {"+ +", "A:last-resort+LR"}, {"+", "A:healthy"},
		}},
		{"starting needs fall failures first", lr, []step{
			{"peer 5", "W:starting"}, {"5", "A:last-resort+LR"},
		}},
		{"starting refused stays withdrawn", lr, []step{
			{"peer - -", "W:unhealthy"}, {"t", "A:last-resort+LR"},
		}},
		{"no established peer: in the RIB, reason last-resort", lr, []step{
			{"5 5", "A:last-resort+LR"}, {"peer", "A:last-resort+LR"}, {"nopeer", "A:last-resort+LR"},
		}},
		{"drain withdraws at once, no graceful phase for a failing node", gshut, []step{
			{"peer + + + 5 5", "A:last-resort+LR"}, {"drain", "W:drained"}, {"+ + +", "W:drained"},
			{"undrain", "A:healthy"},
		}},
		{"undrain while failing comes back as a last resort", lr, []step{
			{"peer 5 5 drain", "W:drained"}, {"undrain", "A:last-resort+LR"},
		}},
		{"shutdown withdraws", gshut, []step{
			{"peer 5 5", "A:last-resort+LR"}, {"shutdown", "W:shutting-down"}, {"+ + +", "W:shutting-down"},
		}},
		{"a loopback failure withdraws", lr, []step{
			{"peer 5 5", "A:last-resort+LR"}, {"lofail", "W:loopback-failed"}, {"lorestored", "A:last-resort+LR"},
		}},
		{"damped is a last resort too, so flapping churns attributes, not routes", damped, []step{
			{"peer + + + 5 5 + + + 5 5 + + + 5 5", "A:last-resort+LR"},
			{"+ + +", "A:last-resort+LR"},
			{"wait:40s", "A:healthy"},
		}},
		{"damped and refused withdraws", damped, []step{
			{"peer + + + 5 5 + + + 5 5 + + + - -", "W:unhealthy"},
			{"+ + +", "A:last-resort+LR"},
		}},
		{"off: withdrawn as before", off, []step{
			{"peer + + + 5 5", "W:unhealthy"}, {"t t t t", "W:unhealthy"}, {"+ + +", "A:healthy"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { run(t, tt.cfg, tt.steps) })
	}
}

// The transition details say why the node is degraded and what that means.
func TestMachineLastResortDetail(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	m := NewMachine(MachineConfig{Rise: 2, Fall: 2, TimeoutFall: 3, LastResort: true}, []netip.Prefix{netip.MustParsePrefix("203.0.113.10/32")}, now)
	var trs []*Transition
	for _, r := range []ProbeResult{
		{OK: true, Reason: "ok"}, {OK: true, Reason: "ok"},
		{Reason: "timeout after 80ms", TimedOut: true}, {Reason: "timeout after 80ms", TimedOut: true}, {Reason: "timeout after 80ms", TimedOut: true},
		{Reason: "connection refused", Refused: true},
		{Reason: "HTTP 500: [-]etcd failed", Code: 500},
	} {
		now = now.Add(100 * time.Millisecond)
		if tr := m.Probe(r, now); tr != nil {
			trs = append(trs, tr)
		}
	}
	var got []string
	for _, tr := range trs {
		got = append(got, fmt.Sprintf("%s -> %s (announce %v): %s", tr.From, tr.To, tr.Announce, tr.Detail))
	}
	want := []string{
		"starting -> no-established-peer (announce true): 2 consecutive good probes",
		"no-established-peer -> last-resort (announce true): 3 consecutive timeouts (timeoutFall 3), last: timeout after 80ms; announced as a last resort, losing to every healthy path",
		"last-resort -> unhealthy (announce false): 4 consecutive failed probes, last: connection refused; nothing listens, so not kept as a last resort",
		"unhealthy -> last-resort (announce true): 5 consecutive failed probes, last: HTTP 500: [-]etcd failed; announced as a last resort, losing to every healthy path",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("transitions (-want +got):\n%s", diff)
	}
}
