// Command bench is vipcast's failover benchmark (docs/performance.md). In the
// e2e lab (3 nodes, FRR and BIRD in turn, vipcast with the lab's settings,
// printed from the lab itself) it measures, over N trials each:
//
//   - T_fail: apiserver SIGKILL / SIGTERM with --shutdown-delay-duration /
//     SIGSTOP (hang) -> the router's kernel FIB no longer has the node;
//   - T_recover: /readyz answers 200 again -> the nexthop is back;
//   - route back: the router restarted (configured) or the node's link up
//     again after a flap -> the node's nexthop back in the router's FIB;
//   - T_dead: vipcast SIGKILL, vipcast SIGSTOP, node link down -> gone
//     (with BFD too when the lab supports it);
//   - vipcast start -> first advertisement in the router's FIB;
//
// then client impact (a steady ~200 req/s of GET /version over new TCP
// connections to the VIP) during a rolling apiserver restart, a drain of
// each node and hard apiserver kills, vipcast's footprint (RSS, idle CPU),
// and a soak: healthy apiservers for -soak while another kube-apiserver
// boots over and over next door, counting withdraws (there must be none).
//
// With -baseline PATH, a second vipcast build runs in the same labs: rounds
// alternate between the two builds (the trials of each round split evenly),
// so both see the same machine and its load, and the report sets "before"
// against "after". FIB changes are timestamped from `ip monitor` in the
// router namespace. It prints a table, writes results JSON and a timeline
// SVG of one failover. Run as root:
//
//	cd e2e && go run ./cmd/bench [-router frr,bird] [-n 20] [-baseline PATH] [-soak 10m] [-quick]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// Build labels: the vipcast under test, and the -baseline one.
const (
	after  = "after"
	before = "before"
)

type bench struct {
	p       *lab.Program
	l       *lab.Lab
	mon     *lab.FIBMonitor
	res     *Results
	metrics map[string]*Metric
	n       int
	quick   bool

	router lab.Router
	build  string            // label of the vipcast now running in the lab
	bins   map[string]string // build label -> binary

	drawLater func([]lab.Request)
	bfd       bool
	out       string // results JSON, rewritten after every round
}

type flags struct {
	routers       []lab.Router
	n, rounds     int
	quick         bool
	out, svg      string
	baseline      string
	shutdownDelay time.Duration
	idle, soak    time.Duration
	healthTimeout time.Duration
	fall          int
	timeoutFall   int
	phases        map[string]bool
}

func parseFlags() flags {
	var f flags
	routers := flag.String("router", "frr,bird", "routers, comma-separated, each in its own lab: frr, bird")
	flag.IntVar(&f.n, "n", 20, "trials per failure mode (and per build with -baseline)")
	flag.IntVar(&f.rounds, "rounds", 4, "with -baseline: rounds alternating the two builds (the trials split evenly)")
	flag.BoolVar(&f.quick, "quick", false, "smoke run: 3 trials, short windows")
	flag.StringVar(&f.out, "out", "", "results JSON (default e2e/.cache/bench/results.json)")
	flag.StringVar(&f.svg, "svg", "", "timeline SVG (default next to -out, timeline.svg)")
	flag.StringVar(&f.baseline, "baseline", "", "a second vipcast binary (\"before\") measured in the same labs, alternating rounds with $VIPCAST_BIN (\"after\")")
	flag.DurationVar(&f.shutdownDelay, "shutdown-delay", 3*time.Second, "kube-apiserver --shutdown-delay-duration")
	flag.DurationVar(&f.idle, "idle", 30*time.Second, "footprint window (idle-but-probing CPU)")
	flag.DurationVar(&f.soak, "soak", 10*time.Minute, "soak: healthy apiservers for this long while another apiserver boots next door; 0 skips it")
	noBFD := flag.Bool("no-bfd", false, "skip the BFD lab")
	flag.DurationVar(&f.healthTimeout, "health-timeout", 0, "vipcast health.timeout (0: the lab's)")
	flag.IntVar(&f.fall, "fall", 0, "vipcast health.fall (0: the lab's)")
	flag.IntVar(&f.timeoutFall, "timeout-fall", 0, "vipcast health.timeoutFall (0: the lab's; raised to -fall if below)")
	phases := flag.String("phases", "footprint,apiserver,recovery,dead,client,bfd,soak", "phases to run (comma-separated)")
	flag.Parse()
	for _, r := range strings.Split(*routers, ",") {
		f.routers = append(f.routers, lab.Router(strings.TrimSpace(r)))
	}
	f.phases = map[string]bool{}
	for _, ph := range strings.Split(*phases, ",") {
		f.phases[strings.TrimSpace(ph)] = true
	}
	if *noBFD {
		f.phases["bfd"] = false
	}
	if f.quick {
		f.n = 3
		if f.idle == 30*time.Second {
			f.idle = 5 * time.Second
		}
		if f.soak == 10*time.Minute {
			f.soak = 30 * time.Second
		}
	}
	if f.baseline == "" {
		f.rounds = 1
	}
	f.rounds = max(1, min(f.rounds, f.n))
	if f.out == "" {
		_, file, _, _ := runtime.Caller(0)
		f.out = filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(file))), ".cache", "bench", "results.json")
	}
	if f.svg == "" {
		f.svg = filepath.Join(filepath.Dir(f.out), "timeline.svg")
	}
	return f
}

func main() {
	f := parseFlags()
	p := lab.NewProgram("bench")
	defer p.Close()
	for _, r := range f.routers {
		if missing := lab.Missing(r); len(missing) > 0 {
			p.Skipf("%s: %s", r, strings.Join(missing, "; "))
		}
	}
	bins := map[string]string{after: lab.VipcastBin()}
	if f.baseline != "" {
		abs, err := filepath.Abs(f.baseline)
		if err == nil {
			_, err = os.Stat(abs)
		}
		if err != nil {
			p.Fatalf("-baseline %q: %v (build the earlier vipcast, see docs/performance.md)", f.baseline, err)
		}
		bins[before] = abs
	}
	res := &Results{
		Started: time.Now().UTC().Format(time.RFC3339), Trials: f.n, Rounds: f.rounds, Quick: f.quick,
		Host: hostInfo(), Builds: map[string]string{}, Settings: map[string]string{},
	}
	for k, v := range bins {
		res.Builds[k] = v + " (" + version(v) + ")"
	}
	b := &bench{p: p, res: res, metrics: map[string]*Metric{}, n: f.n, quick: f.quick, bins: bins, build: after, out: f.out}
	base := lab.Options{ShutdownDelay: f.shutdownDelay, HealthTimeout: f.healthTimeout, Fall: f.fall}
	if f.timeoutFall > 0 {
		base.TimeoutFall = max(f.timeoutFall, f.fall)
	}

	for ri, r := range f.routers {
		b.router = r
		opts := base
		opts.Router = r
		p.Logf("starting a 3-node %s lab", r)
		b.open(opts)
		if ri == 0 {
			settings(res.Settings, b.l.Opts)
		}
		b.rounds(f)
		if f.phases["dead"] {
			b.use(after)
			b.deadTrials("", lab.Options{})
		}
		if f.phases["client"] && ri == 0 {
			b.use(after)
			b.clientRuns(f.svg)
		}
		if f.phases["soak"] && f.soak > 0 && ri == 0 {
			b.use(after)
			b.soak(f.soak)
			b.save()
		}
		b.close()

		if f.phases["bfd"] {
			opts := bfdOptions(opts)
			p.Logf("starting a 3-node %s lab with BFD (%v x %d)", r, opts.BFD.Interval, opts.BFD.Multiplier)
			b.open(opts)
			b.bfd = true
			if ri == 0 {
				settings(res.Settings, b.l.Opts)
			}
			b.deadTrials("_bfd", opts)
			b.bfd = false
			b.close()
		}
	}

	res.Finished = time.Now().UTC().Format(time.RFC3339)
	res.Host["loadavg_end"] = loadavg()
	b.targets()
	b.report(os.Stdout)
	b.save()
	fmt.Printf("\nresults: %s\ntimeline: %s\n", f.out, f.svg)
	p.Close()
	if p.Failed() {
		os.Exit(1)
	}
}

// rounds runs the per-build phases: with a baseline, round k runs its share
// of the trials with each build, the first build of a round alternating, so
// a slow spell of the machine falls on both.
func (b *bench) rounds(f flags) {
	builds := []string{after}
	if _, ok := b.bins[before]; ok {
		builds = []string{before, after}
	}
	for k := range f.rounds {
		lo, hi := roundTrials(f.n, f.rounds, k)
		for _, build := range roundOrder(builds, k) {
			b.use(build)
			b.p.Logf("round %d/%d: %s, trials %d..%d (%s)", k+1, f.rounds, build, lo+1, hi, b.router)
			if f.phases["footprint"] && k == 0 {
				b.footprint(f.idle)
			}
			if f.phases["apiserver"] {
				b.apiserverTrials(lo, hi)
			}
			if f.phases["recovery"] {
				b.recoveryTrials(lo, hi)
			}
			b.save()
		}
	}
}

// save writes the results so far: a run stopped early (SIGINT tears the
// labs down) keeps every finished round.
func (b *bench) save() {
	if err := os.MkdirAll(filepath.Dir(b.out), 0o755); err != nil {
		b.p.Fatal(err)
	}
	js, _ := json.MarshalIndent(b.res, "", "  ")
	if err := os.WriteFile(b.out, append(js, '\n'), 0o644); err != nil {
		b.p.Fatal(err)
	}
}

// roundTrials is round k's share [lo, hi) of n trials in rounds rounds.
func roundTrials(n, rounds, k int) (lo, hi int) { return k * n / rounds, (k + 1) * n / rounds }

// roundOrder is the order of the builds in round k: reversed every other
// round, so neither build always runs first after a lab change.
func roundOrder(builds []string, k int) []string {
	order := slices.Clone(builds)
	if k%2 == 1 {
		slices.Reverse(order)
	}
	return order
}

func (b *bench) open(opts lab.Options) {
	b.l = lab.New(b.p, opts)
	b.build = after
	mon, err := b.l.MonitorFIB(lab.VIP4)
	if err != nil {
		b.p.Fatal(err)
	}
	b.mon = mon
}

func (b *bench) close() {
	b.res.Missed += b.mon.Missed()
	b.mon.Close()
	b.l.Close()
}

// use makes build the vipcast of every node (a restart of each, one at a
// time, as a rollout), then waits until every node is routed again.
func (b *bench) use(build string) {
	if b.build == build {
		return
	}
	b.p.Logf("switching every node to the %s build", build)
	for _, n := range b.l.Nodes() {
		b.fatal(n.RestartVipcastWith(b.bins[build], build == before, 30*time.Second))
	}
	b.build = build
	b.waitAll(60 * time.Second)
}

// version is `vipcast --version`, or the error.
func version(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "version: " + err.Error()
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return first
}

// bfdOptions is the BFD lab: 100ms x 3 at both ends.
func bfdOptions(o lab.Options) lab.Options {
	o.BFD = &lab.BFDOptions{Interval: 100 * time.Millisecond, Multiplier: 3}
	return o
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())/10) / 100 }

func key(router lab.Router, build, name string) string {
	return string(router) + "/" + build + "/" + name
}

func (b *bench) add(name, desc, node string, d time.Duration) {
	k := key(b.router, b.build, name)
	m := b.metrics[k]
	if m == nil {
		m = &Metric{Name: name, Router: string(b.router), Build: b.build, Desc: desc, Unit: "ms"}
		b.metrics[k] = m
		b.res.Metrics = append(b.res.Metrics, m)
	}
	m.Samples = append(m.Samples, ms(d))
	m.Nodes = append(m.Nodes, node)
	v := slices.Clone(m.Samples)
	slices.Sort(v)
	rank := func(q float64) float64 { return v[max(0, int(math.Ceil(q*float64(len(v))))-1)] }
	m.N, m.Min, m.Median, m.P90, m.Max = len(v), v[0], rank(0.5), rank(0.9), v[len(v)-1]
	b.p.Logf("  %-4s %-6s %-34s %-3s %8.1f ms", b.router, b.build, name, node, ms(d))
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
		b.res.Notes = append(b.res.Notes, fmt.Sprintf("%s %s: %s left the FIB before a trial began (flap); waited again", b.router, b.build, n.Name))
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

// waitBFDUp waits until the router has every node's BFD session Up.
func (b *bench) waitBFDUp(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		m, err := b.l.RouterBFDSessions()
		up := err == nil
		for _, n := range b.l.Nodes() {
			up = up && strings.EqualFold(m[n.Addr4], "up")
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
