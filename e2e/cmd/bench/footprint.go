package main

// vipcast's footprint while idle but probing: RSS and CPU from /proc.

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

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
	b.p.Logf("footprint (%s): %v idle-but-probing", b.build, window)
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
			Router:     string(b.router),
			Build:      b.build,
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
