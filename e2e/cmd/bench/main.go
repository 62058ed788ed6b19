// Command bench is vipcast's failover benchmark (docs/performance.md). In the
// e2e lab (FRR, 3 nodes, vipcast's default health timings: interval 100ms,
// timeout 80ms, rise 3, fall 2) it measures, over N trials each:
//
//   - T_fail: apiserver SIGKILL / SIGTERM with --shutdown-delay-duration /
//     SIGSTOP (hang) -> the router's kernel FIB no longer has the node;
//   - T_recover: /readyz answers 200 again -> the nexthop is back;
//   - T_dead: vipcast SIGKILL, vipcast SIGSTOP, node link down -> gone
//     (with BFD too when the lab supports it);
//   - vipcast start -> first advertisement in the router's FIB;
//
// then client impact (a steady ~200 req/s of GET /version over new TCP
// connections to the VIP) during a rolling apiserver restart, a drain of
// each node and hard apiserver kills, and vipcast's footprint (RSS, idle
// CPU). FIB changes are timestamped from `ip monitor` in the router
// namespace. It prints a table, writes results JSON and a timeline SVG of
// one failover. Run as root:
//
//	cd e2e && go run ./cmd/bench [-n 20] [-quick] [-out FILE] [-svg FILE]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// Metric is one measured quantity over its trials.
type Metric struct {
	Name    string    `json:"name"`
	Desc    string    `json:"desc"`
	Unit    string    `json:"unit"`
	N       int       `json:"n"`
	Min     float64   `json:"min"`
	Median  float64   `json:"median"`
	P90     float64   `json:"p90"`
	Max     float64   `json:"max"`
	Samples []float64 `json:"samples"`
	Nodes   []string  `json:"nodes,omitempty"`
	Note    string    `json:"note,omitempty"`
}

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

// Footprint is one vipcast's resource use while idle-but-probing.
type Footprint struct {
	Node       string  `json:"node"`
	RSSMiB     float64 `json:"rss_mib"`
	HWMMiB     float64 `json:"rss_peak_mib"`
	AnonMiB    float64 `json:"rss_anon_mib"` // private heap and stacks
	FileMiB    float64 `json:"rss_file_mib"` // mapped pages of the binary, shared and clean
	PssMiB     float64 `json:"pss_mib"`      // RSS with shared pages divided among their users
	CPUPercent float64 `json:"cpu_percent_of_one_core"`
	WindowS    float64 `json:"window_s"`
}

// Results is the JSON document the bench writes.
type Results struct {
	Started   string            `json:"started"`
	Finished  string            `json:"finished"`
	Router    string            `json:"router"`
	Trials    int               `json:"trials"`
	Quick     bool              `json:"quick"`
	Host      map[string]string `json:"host"`
	Settings  map[string]string `json:"settings"`
	Metrics   []*Metric         `json:"metrics"`
	Client    []*ClientRun      `json:"client"`
	Footprint []Footprint       `json:"footprint"`
	Missed    int               `json:"fib_changes_missed_by_ip_monitor"`
	Notes     []string          `json:"notes"`
	Targets   []Target          `json:"targets"`
}

// Target is one goal of the issue, met or not.
type Target struct {
	What  string `json:"what"`
	Value string `json:"value"`
	Met   *bool  `json:"met"` // nil: not measured
}

type bench struct {
	p       *lab.Program
	l       *lab.Lab
	mon     *lab.FIBMonitor
	res     *Results
	metrics map[string]*Metric
	n       int
	quick   bool

	drawLater func([]lab.Request)
	bfd       bool
}

func main() {
	router := flag.String("router", "frr", "router: frr or bird")
	n := flag.Int("n", 20, "trials per failure mode")
	quick := flag.Bool("quick", false, "smoke run: 3 trials, short windows")
	out := flag.String("out", "", "results JSON (default e2e/.cache/bench/results.json)")
	svg := flag.String("svg", "", "timeline SVG (default next to -out, timeline.svg)")
	shutdownDelay := flag.Duration("shutdown-delay", 3*time.Second, "kube-apiserver --shutdown-delay-duration")
	idle := flag.Duration("idle", 30*time.Second, "footprint window (idle-but-probing CPU)")
	noBFD := flag.Bool("no-bfd", false, "skip the BFD lab")
	healthTimeout := flag.Duration("health-timeout", 80*time.Millisecond, "vipcast health.timeout (default: vipcast's own, 80ms)")
	fall := flag.Int("fall", 2, "vipcast health.fall (default: vipcast's own, 2)")
	timeoutFall := flag.Int("timeout-fall", 4, "vipcast health.timeoutFall (default: vipcast's own, 4; raised to -fall if below)")
	phases := flag.String("phases", "footprint,apiserver,dead,client,bfd", "phases to run (comma-separated)")
	flag.Parse()
	want := map[string]bool{}
	for _, ph := range strings.Split(*phases, ",") {
		want[strings.TrimSpace(ph)] = true
	}
	if *noBFD {
		want["bfd"] = false
	}
	if *quick {
		*n = 3
		if *idle == 30*time.Second {
			*idle = 5 * time.Second
		}
	}
	if *out == "" {
		_, file, _, _ := runtime.Caller(0)
		*out = filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(file))), ".cache", "bench", "results.json")
	}
	if *svg == "" {
		*svg = filepath.Join(filepath.Dir(*out), "timeline.svg")
	}

	p := lab.NewProgram("bench")
	defer p.Close()
	r := lab.Router(*router)
	if missing := lab.Missing(r); len(missing) > 0 {
		p.Skipf("%s: %s", r, strings.Join(missing, "; "))
	}
	res := &Results{
		Started: time.Now().UTC().Format(time.RFC3339), Router: string(r), Trials: *n, Quick: *quick,
		Host: hostInfo(),
		Settings: map[string]string{
			"health": "interval 100ms, timeout 80ms, rise 3, fall 2, timeoutFall 4 (vipcast defaults)",
			"bgp":    "hold 3s, keepalive 1s, connect retry 1s",
			"kube-apiserver --shutdown-delay-duration": shutdownDelay.String(),
			"loopback.removeDelay":                     "500ms",
			"shutdown.drainPeriod":                     "1s",
			"client":                                   "GET /version, new TCP+TLS connection each, 200/s, 1.5s timeout",
			"fib timing":                               "ip monitor route nexthop in the router namespace (notification read time), 20ms poll backstop",
		},
	}
	b := &bench{p: p, res: res, metrics: map[string]*Metric{}, n: *n, quick: *quick}

	p.Logf("starting a 3-node %s lab (shutdown delay %v)", r, *shutdownDelay)
	base := lab.Options{Router: r, Nodes: 3, ShutdownDelay: *shutdownDelay, HealthTimeout: *healthTimeout, Fall: *fall, TimeoutFall: max(*timeoutFall, *fall)}
	res.Settings["health"] = fmt.Sprintf("interval 100ms, timeout %v, rise 3, fall %d, timeoutFall %d", *healthTimeout, *fall, base.TimeoutFall)
	b.l = lab.New(p, base)
	mon, err := b.l.MonitorFIB(lab.VIP4)
	if err != nil {
		p.Fatal(err)
	}
	b.mon = mon

	if want["footprint"] {
		b.footprint(*idle)
	}
	if want["apiserver"] {
		b.apiserverTrials()
	}
	if want["dead"] {
		b.deadTrials("", lab.Options{})
	}
	if want["client"] {
		b.clientRuns(*svg)
	}
	res.Missed = mon.Missed()
	mon.Close()
	b.l.Close()

	if want["bfd"] {
		opts := bfdOptions(base)
		p.Logf("starting a 3-node %s lab with BFD (100ms x 3)", r)
		b.l = lab.New(p, opts)
		if b.mon, err = b.l.MonitorFIB(lab.VIP4); err != nil {
			p.Fatal(err)
		}
		b.bfd = true
		b.deadTrials("_bfd", opts)
		res.Missed += b.mon.Missed()
		b.mon.Close()
		b.l.Close()
	}

	res.Finished = time.Now().UTC().Format(time.RFC3339)
	res.Host["loadavg_end"] = loadavg()
	b.targets()
	b.report(os.Stdout)
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		p.Fatal(err)
	}
	js, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(*out, append(js, '\n'), 0o644); err != nil {
		p.Fatal(err)
	}
	fmt.Printf("\nresults: %s\ntimeline: %s\n", *out, *svg)
	p.Close()
	if p.Failed() {
		os.Exit(1)
	}
}

// bfdOptions is the BFD lab: 100ms x 3 at both ends.
func bfdOptions(o lab.Options) lab.Options {
	o.BFD = &lab.BFDOptions{Interval: 100 * time.Millisecond, Multiplier: 3}
	return o
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())/10) / 100 }

func (b *bench) add(name, desc string, node *lab.Node, d time.Duration) {
	m := b.metrics[name]
	if m == nil {
		m = &Metric{Name: name, Desc: desc, Unit: "ms"}
		b.metrics[name] = m
		b.res.Metrics = append(b.res.Metrics, m)
	}
	m.Samples = append(m.Samples, ms(d))
	m.Nodes = append(m.Nodes, node.Name)
	v := slices.Clone(m.Samples)
	slices.Sort(v)
	rank := func(q float64) float64 { return v[max(0, int(math.Ceil(q*float64(len(v))))-1)] }
	m.N, m.Min, m.Median, m.P90, m.Max = len(v), v[0], rank(0.5), rank(0.9), v[len(v)-1]
	b.p.Logf("  %-34s %-3s %8.1f ms", name, node.Name, ms(d))
}

// ready waits until every node is routed (and BFD is Up in the BFD lab),
// settles for d, and reports whether n is still a nexthop: a session that
// flapped in the meantime (BFD on a loaded machine) would make the trial
// measure nothing.
func (b *bench) ready(n *lab.Node, d time.Duration) {
	for range 5 {
		b.waitAll(30 * time.Second)
		time.Sleep(d)
		if slices.Contains(b.mon.Current().Nexthops, n.Addr4) {
			return
		}
		b.res.Notes = append(b.res.Notes, fmt.Sprintf("%s left the FIB before a trial began (flap); waited again", n.Name))
	}
	b.fatal(fmt.Errorf("%s keeps leaving the router FIB", n.Name))
}

func (b *bench) fatal(err error) {
	if err != nil {
		b.p.Fatalf("%v\n%s", err, b.l.Dump())
	}
}

func (b *bench) waitAll(timeout time.Duration) time.Time {
	t, err := b.mon.WaitExactly(time.Now(), timeout, b.l.AllAddrs(lab.VIP4))
	b.fatal(err)
	if b.bfd {
		b.waitBFDUp(timeout)
	}
	return t
}

// waitBFDUp waits until the router has every node's BFD session Up (when
// this tree's lab can tell).
func (b *bench) waitBFDUp(timeout time.Duration) {
	s, ok := any(b.l).(interface {
		RouterBFDSessions() (map[netip.Addr]string, error)
	})
	if !ok {
		return
	}
	deadline := time.Now().Add(timeout)
	for {
		m, err := s.RouterBFDSessions()
		up := err == nil
		for _, n := range b.l.Nodes() {
			up = up && m[n.Addr4] == "Up"
		}
		if up {
			return
		}
		if time.Now().After(deadline) {
			b.fatal(fmt.Errorf("router BFD sessions not all Up after %v: %v (err %v)", timeout, m, err))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ---------------------------------------------------------------- footprint

func procTicks(pid int) (int64, error) {
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(s[strings.LastIndexByte(string(s), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64) // utime is field 14, f[0] is field 3
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st, nil
}

func procStatusKiB(pid int, key string) float64 {
	s, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(s), "\n") {
		if strings.HasPrefix(line, key+":") {
			v, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return v
		}
	}
	return 0
}

// pssKiB is the proportional set size from /proc/PID/smaps_rollup.
func pssKiB(pid int) float64 {
	s, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	for _, line := range strings.Split(string(s), "\n") {
		if strings.HasPrefix(line, "Pss:") {
			v, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return v
		}
	}
	return 0
}

func (b *bench) footprint(window time.Duration) {
	b.p.Logf("footprint: %v idle-but-probing", window)
	time.Sleep(2 * time.Second) // settle after start
	type start struct {
		pid   int
		ticks int64
	}
	var starts []start
	for _, n := range b.l.Nodes() {
		pid := n.VipcastPID()
		t, err := procTicks(pid)
		b.fatal(err)
		starts = append(starts, start{pid, t})
	}
	t0 := time.Now()
	time.Sleep(window)
	el := time.Since(t0).Seconds()
	const clkTck = 100 // USER_HZ on Linux
	for i, n := range b.l.Nodes() {
		t, err := procTicks(starts[i].pid)
		b.fatal(err)
		fp := Footprint{
			Node:       n.Name,
			RSSMiB:     math.Round(procStatusKiB(starts[i].pid, "VmRSS")/1024*10) / 10,
			HWMMiB:     math.Round(procStatusKiB(starts[i].pid, "VmHWM")/1024*10) / 10,
			AnonMiB:    math.Round(procStatusKiB(starts[i].pid, "RssAnon")/1024*10) / 10,
			FileMiB:    math.Round(procStatusKiB(starts[i].pid, "RssFile")/1024*10) / 10,
			PssMiB:     math.Round(pssKiB(starts[i].pid)/1024*10) / 10,
			CPUPercent: math.Round(float64(t-starts[i].ticks)/clkTck/el*100*100) / 100,
			WindowS:    math.Round(el*10) / 10,
		}
		b.res.Footprint = append(b.res.Footprint, fp)
		b.p.Logf("  %s vipcast pid %d: RSS %.1f MiB (anon %.1f, file %.1f, PSS %.1f, peak %.1f), CPU %.2f%% of a core",
			n.Name, starts[i].pid, fp.RSSMiB, fp.AnonMiB, fp.FileMiB, fp.PssMiB, fp.HWMMiB, fp.CPUPercent)
	}
}

// ---------------------------------------------------------------- apiserver

func (b *bench) apiserverTrials() {
	nodes := b.l.Nodes()
	modes := []struct {
		name, desc string
		sig        syscall.Signal
	}{
		{"sigkill", "apiserver SIGKILL", syscall.SIGKILL},
		{"sigterm", "apiserver SIGTERM with --shutdown-delay-duration (fails /readyz at once, keeps serving)", syscall.SIGTERM},
		{"sigstop", "apiserver hang (SIGSTOP)", syscall.SIGSTOP},
	}
	for _, mode := range modes {
		b.p.Logf("T_fail / T_recover: apiserver %s x %d", mode.name, b.n)
		for i := range b.n {
			n := nodes[i%len(nodes)]
			b.ready(n, 300*time.Millisecond) // rise/fall counters settle
			t0, err := n.KillAPIServer(mode.sig)
			b.fatal(err)
			tg, err := b.mon.WaitWithout(t0, 10*time.Second, n.Addr4)
			b.fatal(err)
			b.add("T_fail_apiserver_"+mode.name, mode.desc+" -> nexthop gone from the router FIB", n, tg.Sub(t0))
			switch mode.sig {
			case syscall.SIGKILL:
				b.fatal(n.WaitAPIServerExit(10 * time.Second))
				b.fatal(n.StartAPIServer())
			case syscall.SIGTERM:
				b.fatal(n.WaitAPIServerExit(60 * time.Second))
				b.fatal(n.StartAPIServer())
			case syscall.SIGSTOP:
				time.Sleep(200 * time.Millisecond)
				_, err := n.KillAPIServer(syscall.SIGCONT)
				b.fatal(err)
			}
			ready, err := n.WaitReadyAt(90 * time.Second)
			b.fatal(err)
			tb, err := b.mon.WaitExactly(ready, 15*time.Second, b.l.AllAddrs(lab.VIP4))
			b.fatal(err)
			b.add("T_recover_apiserver_"+mode.name, "apiserver /readyz 200 again (after "+mode.name+") -> nexthop back", n, tb.Sub(ready))
		}
	}
}

// ---------------------------------------------------------------- T_dead

func (b *bench) deadTrials(suffix string, opts lab.Options) {
	nodes := b.l.Nodes()
	with := "without BFD"
	if suffix != "" {
		with = "with BFD 100ms x 3"
	}
	b.p.Logf("T_dead (%s): vipcast SIGKILL, vipcast SIGSTOP, node link down x %d", with, b.n)
	for i := range b.n {
		n := nodes[i%len(nodes)]
		b.ready(n, 0)
		t0, err := n.KillVipcast(syscall.SIGKILL)
		b.fatal(err)
		tg, err := b.mon.WaitWithout(t0, 10*time.Second, n.Addr4)
		b.fatal(err)
		b.add("T_dead_vipcast_sigkill"+suffix, "vipcast SIGKILL ("+with+") -> nexthop gone", n, tg.Sub(t0))
		_ = n.WaitVipcastExit(10 * time.Second)
		if suffix == "" {
			time.Sleep(200 * time.Millisecond)
			ts := time.Now()
			b.fatal(n.StartVipcast())
			tb, err := b.mon.WaitExactly(ts, 30*time.Second, b.l.AllAddrs(lab.VIP4))
			b.fatal(err)
			b.add("vipcast_start_to_first_advert", "vipcast started (apiserver healthy) -> nexthop in the router FIB", n, tb.Sub(ts))
		} else {
			b.fatal(n.StartVipcast())
		}
	}
	for i := range b.n {
		n := nodes[i%len(nodes)]
		b.ready(n, 1500*time.Millisecond) // a keepalive or two after (re)establishment
		t0, err := n.KillVipcast(syscall.SIGSTOP)
		b.fatal(err)
		tg, err := b.mon.WaitWithout(t0, 10*time.Second, n.Addr4)
		b.fatal(err)
		b.add("T_dead_vipcast_sigstop"+suffix, "vipcast SIGSTOP ("+with+") -> nexthop gone", n, tg.Sub(t0))
		_, err = n.KillVipcast(syscall.SIGCONT)
		b.fatal(err)
	}
	for i := range b.n {
		n := nodes[i%len(nodes)]
		b.ready(n, 1500*time.Millisecond)
		t0 := time.Now()
		b.fatal(n.LinkDown())
		tg, err := b.mon.WaitWithout(t0, 10*time.Second, n.Addr4)
		b.fatal(err)
		b.add("T_dead_link_down"+suffix, "node link down ("+with+") -> nexthop gone", n, tg.Sub(t0))
		b.fatal(n.LinkUp())
	}
	b.waitAll(30 * time.Second)
}

// ---------------------------------------------------------------- client

type clientRun struct {
	b      *bench
	run    *ClientRun
	load   *lab.Load
	start  time.Time
	events []Event
	trace  *tcpTrace
}

func (b *bench) startClient(name, desc string) *clientRun {
	ld, err := b.l.StartLoad(lab.LoadOptions{Rate: 200, Timeout: 1500 * time.Millisecond, MaxTime: 10 * time.Minute})
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

// ---------------------------------------------------------------- report

func (b *bench) targets() {
	get := func(name string) *Metric { return b.metrics[name] }
	yes := func(v bool) *bool { return &v }
	add := func(what, value string, met *bool) {
		b.res.Targets = append(b.res.Targets, Target{What: what, Value: value, Met: met})
	}
	for _, m := range []string{"T_fail_apiserver_sigkill", "T_fail_apiserver_sigterm"} {
		if x := get(m); x != nil {
			add(m+" p90 <= 400 ms", fmt.Sprintf("%.1f ms", x.P90), yes(x.P90 <= 400))
		}
	}
	for _, c := range b.res.Client {
		if c.Name == "rolling_restart_sigterm" || c.Name == "drain_undrain" {
			add(c.Name+": zero failed requests", fmt.Sprintf("%d of %d failed", c.Failures, c.Requests), yes(c.Failures == 0))
		}
	}
	bfd := false
	for _, m := range []string{"T_dead_link_down_bfd", "T_dead_vipcast_sigstop_bfd"} {
		if x := get(m); x != nil {
			bfd = true
			add(m+" max <= 500 ms", fmt.Sprintf("p90 %.1f ms, max %.1f ms", x.P90, x.Max), yes(x.Max <= 500))
		}
	}
	if !bfd {
		add("T_dead with BFD <= 500 ms", "not measured", nil)
	}
	var rss, cpu float64
	for _, f := range b.res.Footprint {
		rss, cpu = max(rss, f.RSSMiB), max(cpu, f.CPUPercent)
	}
	if len(b.res.Footprint) > 0 {
		add("vipcast RSS <= 40 MiB", fmt.Sprintf("%.1f MiB (max of 3)", rss), yes(rss <= 40))
		add("vipcast idle CPU <= 1% of a core", fmt.Sprintf("%.2f%% (max of 3)", cpu), yes(cpu <= 1))
	}
}

func (b *bench) report(w *os.File) {
	fmt.Fprintf(w, "\nvipcast failover benchmark: %s, %d trials, health %s, %s\n", b.res.Router, b.n, b.res.Settings["health"], b.res.Started)
	fmt.Fprintf(w, "\n%-32s %4s %9s %9s %9s %9s\n", "metric (ms)", "n", "min", "median", "p90", "max")
	for _, m := range b.res.Metrics {
		fmt.Fprintf(w, "%-32s %4d %9.1f %9.1f %9.1f %9.1f\n", m.Name, m.N, m.Min, m.Median, m.P90, m.Max)
	}
	fmt.Fprintf(w, "\n%-26s %9s %9s %9s  %s\n", "client impact", "requests", "failed", "p99 ms", "failures by class")
	for _, c := range b.res.Client {
		var cls []string
		for k, v := range c.ByClass {
			if k != "ok" {
				cls = append(cls, fmt.Sprintf("%s=%d", k, v))
			}
		}
		sort.Strings(cls)
		fmt.Fprintf(w, "%-26s %9d %9d %9.1f  %s\n", c.Name, c.Requests, c.Failures, c.P99LatMS, strings.Join(cls, " "))
	}
	fmt.Fprintf(w, "\n%-6s %8s %9s %9s %8s %12s\n", "node", "RSS MiB", "anon MiB", "file MiB", "PSS MiB", "CPU % core")
	for _, f := range b.res.Footprint {
		fmt.Fprintf(w, "%-6s %8.1f %9.1f %9.1f %8.1f %12.2f\n", f.Node, f.RSSMiB, f.AnonMiB, f.FileMiB, f.PssMiB, f.CPUPercent)
	}
	fmt.Fprintf(w, "\ntargets:\n")
	for _, t := range b.res.Targets {
		s := "not measured"
		if t.Met != nil {
			s = map[bool]string{true: "MET", false: "NOT MET"}[*t.Met]
		}
		fmt.Fprintf(w, "  %-12s %-44s %s\n", s, t.What, t.Value)
	}
	if b.res.Missed > 0 {
		fmt.Fprintf(w, "\nnote: %d FIB change(s) were first seen by the 20 ms poll, not ip monitor\n", b.res.Missed)
	}
	for _, n := range b.res.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

func hostInfo() map[string]string {
	h := map[string]string{"cpus": strconv.Itoa(runtime.NumCPU()), "go": runtime.Version(), "loadavg_start": loadavg()}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		b := make([]byte, 0, 65)
		for _, c := range u.Release {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
		h["kernel"] = string(b)
	}
	if s, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(s), "\n") {
			if strings.HasPrefix(line, "model name") {
				h["cpu"] = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
				break
			}
		}
	}
	return h
}

// loadavg is /proc/loadavg's 1, 5 and 15 minute averages: other work on
// the machine skews the timings, so the results say how busy it was.
func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
