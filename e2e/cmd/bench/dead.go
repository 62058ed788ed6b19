package main

// T_dead: vipcast itself or the node's link fails; only the BGP session
// (or BFD) can tell the router.

import (
	"fmt"
	"syscall"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

func (b *bench) deadTrials(suffix string, opts lab.Options) {
	nodes := b.l.Nodes()
	with := "without BFD"
	if suffix != "" {
		with = fmt.Sprintf("with BFD %v x %d", opts.BFD.Interval, opts.BFD.Multiplier)
	}
	b.p.Logf("T_dead (%s): vipcast SIGKILL, vipcast SIGSTOP, node link down x %d", with, b.n)
	for i := range b.n {
		n := nodes[i%len(nodes)]
		b.ready(n, 0)
		t0, err := n.KillVipcast(syscall.SIGKILL)
		b.fatal(err)
		tg, err := b.mon.WaitWithout(t0, 10*time.Second, n.Addr4)
		b.fatal(err)
		b.add("T_dead_vipcast_sigkill"+suffix, "vipcast SIGKILL ("+with+") -> nexthop gone", n.Name, tg.Sub(t0))
		_ = n.WaitVipcastExit(10 * time.Second)
		if suffix == "" {
			time.Sleep(200 * time.Millisecond)
			ts := time.Now()
			b.fatal(n.StartVipcast())
			tb, err := b.mon.WaitExactly(ts, 30*time.Second, b.l.AllAddrs(lab.VIP4))
			b.fatal(err)
			b.add("vipcast_start_to_first_advert", "vipcast started (apiserver healthy) -> nexthop in the router FIB", n.Name, tb.Sub(ts))
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
		b.add("T_dead_vipcast_sigstop"+suffix, "vipcast SIGSTOP ("+with+") -> nexthop gone", n.Name, tg.Sub(t0))
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
		b.add("T_dead_link_down"+suffix, "node link down ("+with+") -> nexthop gone", n.Name, tg.Sub(t0))
		b.fatal(n.LinkUp())
	}
	b.waitAll(30 * time.Second)
}
