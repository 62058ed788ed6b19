package main

// T_fail and T_recover of the apiserver failure modes.

import (
	"fmt"
	"syscall"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// apiserverTrials runs trials lo..hi-1 of each apiserver failure mode.
func (b *bench) apiserverTrials(lo, hi int) {
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
		b.p.Logf("T_fail / T_recover: apiserver %s x %d", mode.name, hi-lo)
		for i := lo; i < hi; i++ {
			n := nodes[i%len(nodes)]
			b.ready(n, 300*time.Millisecond) // rise/fall counters settle
			exited := make(chan time.Time, 1)
			if mode.sig == syscall.SIGKILL {
				go func() { _ = n.WaitAPIServerExit(10 * time.Second); exited <- time.Now() }()
			}
			t0, err := n.KillAPIServer(mode.sig)
			b.fatal(err)
			tg, err := b.mon.WaitWithout(t0, 10*time.Second, n.Addr4)
			b.fatal(err)
			b.add("T_fail_apiserver_"+mode.name, mode.desc+" -> nexthop gone from the router FIB", n.Name, tg.Sub(t0))
			if mode.sig == syscall.SIGKILL {
				b.add("apiserver_sigkill_to_exit", "apiserver SIGKILL -> the process reaped (its sockets closed before)", n.Name, (<-exited).Sub(t0))
			}
			b.breakdown(n, "T_fail_apiserver_"+mode.name, t0, tg)
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
			b.add("T_recover_apiserver_"+mode.name, "apiserver /readyz 200 again (after "+mode.name+") -> nexthop back", n.Name, tb.Sub(ready))
		}
	}
}

// breakdown splits a T_fail by vipcast's own log (JSON, nanosecond
// timestamps): the first failed probe handled, the withdraw handed to GoBGP,
// and from there to the router's FIB. A build that does not log these lines
// adds nothing.
func (b *bench) breakdown(n *lab.Node, name string, t0, fib time.Time) {
	var failed, withdrawn time.Time
	for _, r := range n.LogRecords() {
		at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(r["time"]))
		if err != nil || at.Before(t0) {
			continue
		}
		switch msg := fmt.Sprint(r["msg"]); {
		case msg == "health probe failed" && failed.IsZero():
			failed = at
		case msg == "prefix withdrawn" && withdrawn.IsZero():
			withdrawn = at
		}
	}
	if !failed.IsZero() {
		b.add(name+"_first_fail", "-> vipcast handled the first failed probe (its log)", n.Name, failed.Sub(t0))
	}
	if !withdrawn.IsZero() {
		b.add(name+"_withdrawn", "-> vipcast handed the withdraw to GoBGP (its log)", n.Name, withdrawn.Sub(t0))
		b.add(name+"_withdrawn_to_fib", "vipcast withdrew (its log) -> nexthop gone from the router FIB", n.Name, fib.Sub(withdrawn))
	}
}
