package speaker

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vipcast/vipcast/policy"
)

// resultProber answers with whatever result the test set last.
type resultProber struct{ r atomic.Pointer[ProbeResult] }

func (p *resultProber) set(r ProbeResult) { p.r.Store(&r) }

func (p *resultProber) Probe(context.Context) ProbeResult {
	r := *p.r.Load()
	r.At = time.Now()
	return r
}

var (
	probeOK      = ProbeResult{OK: true, Code: 200, Reason: "ok"}
	probeHTTP500 = ProbeResult{Code: 500, Reason: "HTTP 500: [-]etcd failed: reason withheld"}
	probeRefused = ProbeResult{Reason: "connection refused", Refused: true}
)

// The loop puts the last-resort attributes in the RIB while the apiserver
// answers but fails, the normal ones when it recovers, and withdraws when
// nothing listens or an operator drains.
func TestSpeakerLastResort(t *testing.T) {
	cfg := testConfig()
	cfg.LastResort = policy.LastResortConfig{Enabled: true, Prepend: 3, Communities: []string{"64512:666"}}
	p := &resultProber{}
	p.set(probeHTTP500)
	h := startWith(t, cfg, func(d *Deps) { d.Prober = p })

	lastResort := func() bool {
		a, ok := h.router.Announced()[vip4]
		d := h.sp.Status().Decisions[0]
		return ok && a.IsLastResort() && h.announced() && d.Reason == ReasonLastResort && d.LastResort && d.Announce
	}
	h.eventually("a failing node is announced as a last resort", lastResort)
	if a := h.router.Announced()[vip4]; len(a.Communities) != 3 || a.Communities[1] != 64512<<16|666 {
		t.Errorf("last-resort attributes = %+v, want the node's community, the last resort's and the marker", a)
	}

	p.set(probeOK)
	h.eventually("healthy again: normal attributes", func() bool {
		a, ok := h.router.Announced()[vip4]
		return ok && !a.IsLastResort() && h.sp.Status().Decisions[0].Reason == ReasonHealthy
	})

	p.set(probeHTTP500)
	h.eventually("failing again: a last resort", lastResort)

	p.set(probeRefused)
	h.eventually("refused: withdrawn", func() bool { return h.withdrawn() && h.sp.Status().Decisions[0].Reason == ReasonUnhealthy })
	h.eventually("and off lo after removeDelay", h.offLo)

	p.set(probeHTTP500)
	h.eventually("answering again: a last resort", lastResort)
	if err := h.sp.SetDrained(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	h.eventually("a drain withdraws a last resort", func() bool { return h.withdrawn() && h.sp.Status().Decisions[0].Reason == ReasonDrained })

	var seen bool
	for _, tr := range h.sp.Status().Transitions {
		seen = seen || tr.To == ReasonLastResort
	}
	if !seen {
		t.Errorf("no transition to %s in %+v", ReasonLastResort, h.sp.Status().Transitions)
	}
}

// With the last resort off, a failing node withdraws as it always did.
func TestSpeakerLastResortOff(t *testing.T) {
	p := &resultProber{}
	p.set(probeOK)
	h := startWith(t, testConfig(), func(d *Deps) { d.Prober = p })
	h.eventually("announced", h.announced)
	p.set(probeHTTP500)
	h.eventually("withdrawn", func() bool { return h.withdrawn() && h.sp.Status().Decisions[0].Reason == ReasonUnhealthy })
}
