// Command bench measures failover times in the e2e lab: for each router, N
// rounds of kube-apiserver SIGKILL, vipcast SIGTERM and vipcast SIGKILL on a
// rotating node, each timed from the event to the router's kernel FIB
// change (5 ms polling). It prints min/median/p90/max per metric and can
// write every sample as JSON lines. Run as root:
//
//	cd e2e && go run ./cmd/bench [-router frr,bird] [-n 10] [-o results.jsonl]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

type sample struct {
	Router string  `json:"router"`
	Metric string  `json:"metric"`
	Round  int     `json:"round"`
	Node   string  `json:"node"`
	MS     float64 `json:"ms"`
}

func main() {
	routers := flag.String("router", "frr,bird", "comma-separated routers: frr, bird")
	rounds := flag.Int("n", 10, "rounds per router")
	out := flag.String("o", "", "append every sample to this file as JSON lines")
	flag.Parse()

	p := lab.NewProgram("bench")
	defer p.Close()
	var all []sample
	for _, name := range strings.Split(*routers, ",") {
		r := lab.Router(strings.TrimSpace(name))
		if missing := lab.Missing(r); len(missing) > 0 {
			p.Skipf("%s: %s", r, strings.Join(missing, "; "))
		}
		all = append(all, bench(p, r, *rounds)...)
	}
	report(all)
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			p.Fatal(err)
		}
		enc := json.NewEncoder(f)
		for _, s := range all {
			_ = enc.Encode(s)
		}
		f.Close()
	}
	p.Close()
	if p.Failed() {
		os.Exit(1)
	}
}

func bench(p *lab.Program, r lab.Router, rounds int) []sample {
	vip := lab.VIP4
	p.Logf("%s: starting a 3-node lab", r)
	l := lab.New(p, lab.Options{Router: r, Nodes: 3})
	defer l.Close()
	var out []sample
	add := func(metric string, i int, n *lab.Node, d time.Duration) {
		out = append(out, sample{Router: string(r), Metric: metric, Round: i, Node: n.Name, MS: float64(d.Microseconds()) / 1000})
	}
	for i := range rounds {
		n := l.Nodes()[i%len(l.Nodes())]
		others := l.Addrs(vip, l.Except(n)...)

		t0, err := n.KillAPIServer(syscall.SIGKILL)
		if err != nil {
			p.Fatal(err)
		}
		add("apiserver_sigkill_to_fib_withdraw", i, n, l.WaitNexthops(p, vip, others, 5*time.Second).Sub(t0))
		if err := n.StartAPIServer(); err != nil {
			p.Fatal(err)
		}
		ready, err := n.WaitReadyAt(60 * time.Second)
		if err != nil {
			p.Fatal(err)
		}
		add("apiserver_ready_to_fib_return", i, n, l.WaitNexthops(p, vip, l.AllAddrs(vip), 15*time.Second).Sub(ready))

		t0, err = n.KillVipcast(syscall.SIGTERM)
		if err != nil {
			p.Fatal(err)
		}
		add("vipcast_sigterm_to_fib_withdraw", i, n, l.WaitNexthops(p, vip, others, 5*time.Second).Sub(t0))
		if err := n.WaitVipcastExit(15 * time.Second); err != nil {
			p.Errorf("vipcast SIGTERM exit: %v", err)
		}
		t1 := time.Now()
		if err := n.StartVipcast(); err != nil {
			p.Fatal(err)
		}
		add("vipcast_start_to_fib_return", i, n, l.WaitNexthops(p, vip, l.AllAddrs(vip), 30*time.Second).Sub(t1))

		t0, err = n.KillVipcast(syscall.SIGKILL)
		if err != nil {
			p.Fatal(err)
		}
		add("vipcast_sigkill_to_fib_withdraw", i, n, l.WaitNexthops(p, vip, others, 10*time.Second).Sub(t0))
		if err := n.StartVipcast(); err != nil {
			p.Fatal(err)
		}
		l.WaitNexthops(p, vip, l.AllAddrs(vip), 30*time.Second)
		p.Logf("%s: round %d/%d done (%s)", r, i+1, rounds, n.Name)
	}
	return out
}

func report(all []sample) {
	type key struct{ router, metric string }
	groups := map[key][]float64{}
	var order []key
	for _, s := range all {
		k := key{s.Router, s.Metric}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], s.MS)
	}
	fmt.Printf("\n%-6s %-36s %4s %9s %9s %9s %9s\n", "router", "metric (ms)", "n", "min", "median", "p90", "max")
	for _, k := range order {
		v := groups[k]
		slices.Sort(v)
		q := func(f float64) float64 { return v[min(len(v)-1, int(f*float64(len(v))))] }
		fmt.Printf("%-6s %-36s %4d %9.1f %9.1f %9.1f %9.1f\n", k.router, k.metric, len(v), v[0], q(0.5), q(0.9), v[len(v)-1])
	}
}
