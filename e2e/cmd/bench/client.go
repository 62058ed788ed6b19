package main

// Client impact: a steady load on the VIP through rolling restarts, drains
// and hard apiserver kills, and the timeline of one failover.

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// clientLoad is the load of every client run.
var clientLoad = lab.LoadOptions{Rate: 200, Timeout: 1500 * time.Millisecond, MaxTime: 10 * time.Minute}

// ClientRun is the client impact of one scenario.
type ClientRun struct {
	Name        string         `json:"name"`
	Desc        string         `json:"desc"`
	Requests    int            `json:"requests"`
	Failures    int            `json:"failures"`
	ByClass     map[string]int `json:"by_class"`
	DurationS   float64        `json:"duration_s"`
	RatePerS    float64        `json:"rate_per_s"`
	P99LatMS    float64        `json:"p99_latency_ms"`
	FailDetails []Failure      `json:"failure_details,omitempty"`
	Events      []Event        `json:"events"`
}

// Failure is one failed request, placed relative to the latest event.
type Failure struct {
	StartMS   float64 `json:"start_ms"` // since the run began
	LatencyMS float64 `json:"latency_ms"`
	Class     string  `json:"class"`
	Err       string  `json:"err"`
	After     string  `json:"after_event"`
	Path      string  `json:"path,omitempty"` // node links of the SYN and the RST, seen in the router
	AfterMS   float64 `json:"ms_after_event"` // from the event to the failure (request end)
}

// Event is something the bench did, or saw, during a client run.
type Event struct {
	AtMS  float64 `json:"at_ms"`
	What  string  `json:"what"`
	at    time.Time
	Label string `json:"-"`
}

type clientRun struct {
	b      *bench
	run    *ClientRun
	load   *lab.Load
	start  time.Time
	events []Event
	trace  *tcpTrace
}

func (b *bench) startClient(name, desc string) *clientRun {
	ld, err := b.l.StartLoad(clientLoad)
	b.fatal(err)
	b.p.Logf("client impact: %s", desc)
	links := map[string]string{}
	for _, n := range b.l.Nodes() {
		links[fmt.Sprintf("v%d", n.Index)] = n.Name
	}
	c := &clientRun{b: b, run: &ClientRun{Name: name, Desc: desc}, load: ld, start: time.Now(), trace: startTCPTrace(b.l.RouterNS(), links)}
	time.Sleep(time.Second) // baseline
	return c
}

func (c *clientRun) event(what string) time.Time {
	now := time.Now()
	c.events = append(c.events, Event{AtMS: ms(now.Sub(c.start)), What: what, at: now})
	return now
}

func (c *clientRun) eventAt(t time.Time, what string) {
	c.events = append(c.events, Event{AtMS: ms(t.Sub(c.start)), What: what, at: t})
}

func (c *clientRun) finish() []lab.Request {
	time.Sleep(time.Second)
	reqs := c.load.Stop()
	names := map[netip.Addr]string{}
	for _, n := range c.b.l.Nodes() {
		names[n.Addr4] = n.Name
	}
	for _, st := range c.b.mon.History(c.start) {
		if st.At.Before(c.start) {
			continue
		}
		var ns []string
		for _, a := range st.Order {
			ns = append(ns, names[a])
		}
		c.eventAt(st.At, "router FIB nexthops ["+strings.Join(ns, " ")+"]")
	}
	time.Sleep(200 * time.Millisecond)
	c.trace.stop()
	if c.trace.err != nil {
		c.b.res.Notes = append(c.b.res.Notes, "tcpdump trace: "+c.trace.err.Error())
	}
	r := c.run
	sort.Slice(c.events, func(i, j int) bool { return c.events[i].at.Before(c.events[j].at) })
	r.Events = c.events
	r.Requests = len(reqs)
	r.ByClass = map[string]int{}
	var lats []float64
	var last time.Time
	for _, q := range reqs {
		r.ByClass[q.Class]++
		lats = append(lats, ms(q.Latency))
		if e := q.Start.Add(q.Latency); e.After(last) {
			last = e
		}
		if q.Class == "ok" {
			continue
		}
		r.Failures++
		f := Failure{StartMS: ms(q.Start.Sub(c.start)), LatencyMS: ms(q.Latency), Class: q.Class, Err: q.Err, Path: c.trace.explain(q.Err)}
		for _, e := range c.events {
			if !e.at.After(q.Start.Add(q.Latency)) {
				f.After, f.AfterMS = e.What, ms(q.Start.Add(q.Latency).Sub(e.at))
			}
		}
		r.FailDetails = append(r.FailDetails, f)
	}
	sort.Slice(r.FailDetails, func(i, j int) bool { return r.FailDetails[i].StartMS < r.FailDetails[j].StartMS })
	r.DurationS = math.Round(last.Sub(c.start).Seconds()*10) / 10
	if r.DurationS > 0 {
		r.RatePerS = math.Round(float64(r.Requests)/r.DurationS*10) / 10
	}
	if len(lats) > 0 {
		slices.Sort(lats)
		r.P99LatMS = lats[max(0, int(math.Ceil(0.99*float64(len(lats))))-1)]
	}
	c.b.res.Client = append(c.b.res.Client, r)
	c.b.p.Logf("  %s: %d requests, %d failed %v", r.Name, r.Requests, r.Failures, r.ByClass)
	for i, f := range r.FailDetails {
		if i == 10 {
			c.b.p.Logf("    ... %d more in the JSON", len(r.FailDetails)-10)
			break
		}
		c.b.p.Logf("    failed at %.0f ms (ended %.0f ms after %q, took %.0f ms) [%s]: %s", f.StartMS, f.AfterMS, f.After, f.LatencyMS, f.Path, f.Err)
	}
	return reqs
}

func (b *bench) clientRuns(svgPath string) {
	nodes := b.l.Nodes()
	all := b.l.AllAddrs(lab.VIP4)
	b.waitAll(30 * time.Second)

	// (a) rolling restart with --shutdown-delay-duration
	c := b.startClient("rolling_restart_sigterm", "rolling restart of every apiserver: SIGTERM (shutdown delay), wait for exit, restart, wait healthy and announced, next")
	for _, n := range nodes {
		t0 := c.event(n.Name + " apiserver SIGTERM")
		_, err := n.KillAPIServer(syscall.SIGTERM)
		b.fatal(err)
		tg, err := b.mon.WaitWithout(t0, 10*time.Second, n.Addr4)
		b.fatal(err)
		c.eventAt(tg, n.Name+" nexthop gone")
		b.fatal(n.WaitAPIServerExit(60 * time.Second))
		c.event(n.Name + " apiserver exited")
		b.fatal(n.StartAPIServer())
		ready, err := n.WaitReadyAt(90 * time.Second)
		b.fatal(err)
		c.eventAt(ready, n.Name+" apiserver ready")
		tb, err := b.mon.WaitExactly(ready, 15*time.Second, all)
		b.fatal(err)
		c.eventAt(tb, n.Name+" nexthop back")
		time.Sleep(500 * time.Millisecond)
	}
	c.finish()

	// (b) drain and undrain each node
	c = b.startClient("drain_undrain", "vipcast drain of each node in turn, then undrain")
	for _, n := range nodes {
		t0 := c.event(n.Name + " vipcast drain")
		if out, err := n.Vipcast("drain", "--reason", "bench"); err != nil {
			b.fatal(fmt.Errorf("vipcast drain: %v: %s", err, out))
		}
		tg, err := b.mon.WaitWithout(t0, 10*time.Second, n.Addr4)
		b.fatal(err)
		c.eventAt(tg, n.Name+" nexthop gone")
		time.Sleep(1500 * time.Millisecond) // past removeDelay
		t1 := c.event(n.Name + " vipcast undrain")
		if out, err := n.Vipcast("undrain"); err != nil {
			b.fatal(fmt.Errorf("vipcast undrain: %v: %s", err, out))
		}
		tb, err := b.mon.WaitExactly(t1, 15*time.Second, all)
		b.fatal(err)
		c.eventAt(tb, n.Name+" nexthop back")
		time.Sleep(500 * time.Millisecond)
	}
	c.finish()

	// (c) hard apiserver kill, each node once; the first is drawn
	c = b.startClient("apiserver_sigkill", "hard apiserver kill (SIGKILL) of each node in turn, restart, wait announced")
	for i, n := range nodes {
		t0 := c.event(n.Name + " apiserver SIGKILL")
		_, err := n.KillAPIServer(syscall.SIGKILL)
		b.fatal(err)
		tg, err := b.mon.WaitWithout(t0, 10*time.Second, n.Addr4)
		b.fatal(err)
		c.eventAt(tg, n.Name+" nexthop gone")
		time.Sleep(time.Second)
		var probes []probe
		if i == 0 {
			probes = b.probes(n)
		}
		b.fatal(n.WaitAPIServerExit(10 * time.Second))
		b.fatal(n.StartAPIServer())
		ready, err := n.WaitReadyAt(90 * time.Second)
		b.fatal(err)
		c.eventAt(ready, n.Name+" apiserver ready")
		tb, err := b.mon.WaitExactly(ready, 15*time.Second, all)
		b.fatal(err)
		c.eventAt(tb, n.Name+" nexthop back")
		time.Sleep(500 * time.Millisecond)
		if i == 0 {
			b.drawLater = func(reqs []lab.Request) {
				if err := writeTimeline(svgPath, b, n, t0, probes, reqs); err != nil {
					b.p.Errorf("timeline: %v", err)
				}
			}
		}
	}
	reqs := c.finish()
	if b.drawLater != nil {
		b.drawLater(reqs)
	}
}

type probe struct {
	At time.Time
	OK bool
}

// probes are the node's last 20 probe results, from `vipcast status -o json`.
func (b *bench) probes(n *lab.Node) []probe {
	out, err := n.Vipcast("status", "-o", "json")
	if err != nil {
		b.p.Errorf("vipcast status: %v: %s", err, out)
		return nil
	}
	var st struct {
		Health struct {
			Recent []struct {
				At string `json:"at"`
				OK bool   `json:"ok"`
			} `json:"recent"`
		} `json:"health"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		b.p.Errorf("vipcast status json: %v", err)
		return nil
	}
	var ps []probe
	for _, r := range st.Health.Recent {
		if t, err := time.Parse(time.RFC3339Nano, r.At); err == nil {
			ps = append(ps, probe{t, r.OK})
		}
	}
	return ps
}
