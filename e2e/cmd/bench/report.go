package main

// The results document, the settings it was measured with (read from the
// lab, never restated), the targets of issue 13 and the printed report.

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/vipcast/vipcast/e2e/lab"
)

// Metric is one measured quantity over its trials, for one router and build.
type Metric struct {
	Name    string    `json:"name"`
	Router  string    `json:"router"`
	Build   string    `json:"build"`
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

// Footprint is one vipcast's resource use while idle-but-probing.
type Footprint struct {
	Router     string  `json:"router"`
	Build      string  `json:"build"`
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
	Trials    int               `json:"trials"`
	Rounds    int               `json:"rounds"`
	Quick     bool              `json:"quick"`
	Host      map[string]string `json:"host"`
	Builds    map[string]string `json:"builds"`
	Settings  map[string]string `json:"settings"`
	Metrics   []*Metric         `json:"metrics"`
	Client    []*ClientRun      `json:"client"`
	Footprint []Footprint       `json:"footprint"`
	Soak      []Soak            `json:"soak"`
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

// settings records the lab's options as the lab applied them (defaults
// filled in), so the report cannot disagree with what ran.
func settings(s map[string]string, o lab.Options) {
	s["health"] = fmt.Sprintf("interval %v, timeout %v, rise %d, fall %d, timeoutFall %d", o.HealthInterval, o.HealthTimeout, o.Rise, o.Fall, o.TimeoutFall)
	s["bgp"] = fmt.Sprintf("hold %v, keepalive %v, connect retry %v", o.HoldTime, o.KeepaliveTime, o.ConnectRetry)
	s["kube-apiserver --shutdown-delay-duration"] = o.ShutdownDelay.String()
	s["loopback.removeDelay"] = o.RemoveDelay.String()
	s["shutdown.drainPeriod"] = o.DrainPeriod.String()
	s["damping.halfLife"] = o.DampingHalfLife.String()
	if o.BFD != nil {
		s["bfd (BFD lab)"] = fmt.Sprintf("%v x %d", o.BFD.Interval, o.BFD.Multiplier)
	}
	s["client"] = fmt.Sprintf("GET /version, new TCP+TLS connection each, %d/s, %v timeout", clientLoad.Rate, clientLoad.Timeout)
	s["fib timing"] = "ip monitor route nexthop in the router namespace (notification read time), 20ms poll backstop"
}

// failTarget is issue 13's T_fail p90 bound per router: its withdraw -> FIB
// floor (FRR ~70 ms, BIRD ~15 ms) plus the detection time.
var failTarget = map[string]float64{"frr": 110, "bird": 60}

func (b *bench) targets() {
	yes := func(v bool) *bool { return &v }
	add := func(what, value string, met *bool) {
		b.res.Targets = append(b.res.Targets, Target{What: what, Value: value, Met: met})
	}
	for _, m := range b.res.Metrics {
		if m.Build != after {
			continue
		}
		who := m.Router + " " + m.Name
		switch m.Name {
		case "T_fail_apiserver_sigkill":
			if t, ok := failTarget[m.Router]; ok {
				add(fmt.Sprintf("%s p90 <= %.0f ms", who, t), fmt.Sprintf("%.1f ms", m.P90), yes(m.P90 <= t))
			}
		case "T_fail_apiserver_sigterm":
			add(who+" p90 <= 400 ms", fmt.Sprintf("%.1f ms", m.P90), yes(m.P90 <= 400))
		case "route_back_router_restart":
			// FRR takes no session before its config-pending hold ends:
			// its target is timed from then (the _from_release metric).
			if b.metrics[key(lab.Router(m.Router), after, "route_back_router_restart_from_release")] != nil {
				continue
			}
			add(who+" max < 2 s", fmt.Sprintf("p90 %.0f ms, max %.0f ms", m.P90, m.Max), yes(m.Max < 2000))
		case "route_back_router_restart_from_release", "route_back_link_flap_from_router_ready":
			add(who+" max < 2 s", fmt.Sprintf("p90 %.0f ms, max %.0f ms", m.P90, m.Max), yes(m.Max < 2000))
		case "T_dead_link_down_bfd", "T_dead_vipcast_sigstop_bfd":
			add(who+" max <= 500 ms", fmt.Sprintf("p90 %.1f ms, max %.1f ms", m.P90, m.Max), yes(m.Max <= 500))
		}
	}
	for _, c := range b.res.Client {
		if c.Name == "rolling_restart_sigterm" || c.Name == "drain_undrain" {
			add(c.Name+": zero failed requests", fmt.Sprintf("%d of %d failed", c.Failures, c.Requests), yes(c.Failures == 0))
		}
	}
	var rss, cpu float64
	seen := false
	for _, f := range b.res.Footprint {
		if f.Build == after {
			rss, cpu, seen = max(rss, f.RSSMiB), max(cpu, f.CPUPercent), true
		}
	}
	if seen {
		add("vipcast RSS <= 40 MiB", fmt.Sprintf("%.1f MiB (max of the nodes)", rss), yes(rss <= 40))
		add("vipcast idle CPU <= 1% of a core", fmt.Sprintf("%.2f%% (max of the nodes)", cpu), yes(cpu <= 1))
	}
	for _, s := range b.res.Soak {
		if s.Build == after {
			add(fmt.Sprintf("soak %s: zero withdraws", s.Router), fmt.Sprintf("%d in %.0f s, %d neighbour boots", s.Withdraws, s.DurationS, s.NeighbourBoots), yes(s.Withdraws == 0))
		}
	}
}

func (b *bench) report(w io.Writer) {
	fmt.Fprintf(w, "\nvipcast failover benchmark: %d trials, health %s, %s, load %s -> %s\n", b.n, b.res.Settings["health"], b.res.Started, b.res.Host["loadavg_start"], b.res.Host["loadavg_end"])
	for k, v := range b.res.Builds {
		fmt.Fprintf(w, "  %-6s %s\n", k, v)
	}
	fmt.Fprintf(w, "\n%-5s %-6s %-34s %4s %9s %9s %9s %9s\n", "rtr", "build", "metric (ms)", "n", "min", "median", "p90", "max")
	// Grouped by router and metric in measuring order, "before" above "after".
	var order []string
	for _, m := range b.res.Metrics {
		if k := m.Router + "/" + m.Name; !slices.Contains(order, k) {
			order = append(order, k)
		}
	}
	for _, k := range order {
		for _, build := range []string{before, after} {
			r, name, _ := strings.Cut(k, "/")
			if m := b.metrics[key(lab.Router(r), build, name)]; m != nil {
				fmt.Fprintf(w, "%-5s %-6s %-34s %4d %9.1f %9.1f %9.1f %9.1f\n", m.Router, m.Build, m.Name, m.N, m.Min, m.Median, m.P90, m.Max)
			}
		}
	}
	if len(b.res.Client) > 0 {
		fmt.Fprintf(w, "\n%-26s %9s %9s %9s  %s\n", "client impact", "requests", "failed", "p99 ms", "failures by class")
	}
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
	if len(b.res.Footprint) > 0 {
		fmt.Fprintf(w, "\n%-5s %-6s %-6s %8s %9s %9s %8s %12s\n", "rtr", "build", "node", "RSS MiB", "anon MiB", "file MiB", "PSS MiB", "CPU % core")
	}
	for _, f := range b.res.Footprint {
		fmt.Fprintf(w, "%-5s %-6s %-6s %8.1f %9.1f %9.1f %8.1f %12.2f\n", f.Router, f.Build, f.Node, f.RSSMiB, f.AnonMiB, f.FileMiB, f.PssMiB, f.CPUPercent)
	}
	for _, s := range b.res.Soak {
		fmt.Fprintf(w, "\nsoak %s %s: %d withdraw(s) in %.0f s, %d neighbour apiserver boots, load %s\n", s.Router, s.Build, s.Withdraws, s.DurationS, s.NeighbourBoots, s.LoadAvg)
		for _, c := range s.Changes {
			fmt.Fprintf(w, "  %s\n", c)
		}
	}
	fmt.Fprintf(w, "\ntargets (the %q build):\n", after)
	for _, t := range b.res.Targets {
		s := "not measured"
		if t.Met != nil {
			s = map[bool]string{true: "MET", false: "NOT MET"}[*t.Met]
		}
		fmt.Fprintf(w, "  %-8s %-48s %s\n", s, t.What, t.Value)
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
