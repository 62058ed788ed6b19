package lab

import (
	"bufio"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"
)

// FIBState is the router's kernel FIB entry for one prefix from At on.
type FIBState struct {
	At       time.Time
	Nexthops []netip.Addr // sorted
	// Order is the nexthops in the kernel's order: with hash-threshold
	// multipath, the same set in another order maps flows differently.
	Order  []netip.Addr
	byPoll bool
}

// FIBMonitor timestamps every change of one prefix in the router's kernel
// FIB. It runs `ip monitor route nexthop` in the router namespace and takes
// the time each netlink notification line is read (sub-millisecond after the
// kernel's change); each notification triggers a read of the FIB, whose
// result is attributed to the notification's time. A 20 ms poll backs it up
// (a change only the poll saw is flagged Missed).
type FIBMonitor struct {
	l      *Lab
	prefix netip.Prefix
	cmd    *exec.Cmd
	stop   chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	cond    *sync.Cond
	history []FIBState
	missed  int
}

// MonitorFIB starts a FIBMonitor for prefix; Close it when done.
func (l *Lab) MonitorFIB(prefix netip.Prefix) (*FIBMonitor, error) {
	m := &FIBMonitor{l: l, prefix: prefix, stop: make(chan struct{})}
	m.cond = sync.NewCond(&m.mu)
	fam := "-4"
	if prefix.Addr().Is6() {
		fam = "-6"
	}
	m.cmd = exec.Command("ip", "-n", l.routerNS, fam, "monitor", "route", "nexthop")
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := m.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("ip monitor: %w", err)
	}
	registerPID(m.cmd.Process.Pid)
	events := make(chan time.Time, 1024)
	m.wg.Add(3)
	go func() { // reader: timestamp each notification
		defer m.wg.Done()
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			t := time.Now()
			select {
			case events <- t:
			default:
			}
		}
		close(events)
	}()
	m.observe(time.Now(), false) // initial state
	// FIB reader, driven by notifications
	go func() {
		defer m.wg.Done()
		for t := range events {
			// A burst (route replace + nexthop object) is one change:
			// its first notification's time is the change's time.
		drain:
			for {
				select {
				case _, ok := <-events:
					if !ok {
						break drain
					}
				default:
					break drain
				}
			}
			m.observe(t, false)
		}
	}()
	go func() { // backstop poll
		defer m.wg.Done()
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-tk.C:
				m.observe(time.Now(), true)
			}
		}
	}()
	return m, nil
}

func (m *FIBMonitor) observe(t time.Time, poll bool) {
	order, err := m.l.routerNexthopsOrdered(m.prefix)
	if err != nil {
		return
	}
	nh := sortedCopy(order)
	if poll {
		t = time.Now() // the change happened before this read ended
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := len(m.history); n > 0 && slices.Equal(m.history[n-1].Order, order) {
		last := &m.history[n-1]
		if !poll && last.byPoll && t.Before(last.At) && (n < 2 || t.After(m.history[n-2].At)) {
			// the poll read the change first; the notification dates it
			last.At, last.byPoll = t, false
			m.missed--
			m.cond.Broadcast()
		}
		return
	}
	if n := len(m.history); n > 0 && t.Before(m.history[n-1].At) {
		t = m.history[n-1].At
	}
	if poll && len(m.history) > 0 {
		m.missed++
	}
	m.history = append(m.history, FIBState{At: t, Nexthops: nh, Order: order, byPoll: poll && len(m.history) > 0})
	m.cond.Broadcast()
}

// Missed counts changes the notifications did not report first (timed by
// the 20 ms poll instead); it should stay 0.
func (m *FIBMonitor) Missed() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.missed
}

// History returns the states seen since from (the state in force at from
// first).
func (m *FIBMonitor) History(from time.Time) []FIBState {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []FIBState
	for i, s := range m.history {
		if s.At.Before(from) && i+1 < len(m.history) && !m.history[i+1].At.After(from) {
			continue
		}
		out = append(out, s)
	}
	return out
}

// Current is the latest state.
func (m *FIBMonitor) Current() FIBState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.history[len(m.history)-1]
}

// WaitUntil returns the time of the first state at or after since (or the
// state in force at since) for which ok is true, waiting up to timeout.
func (m *FIBMonitor) WaitUntil(since time.Time, timeout time.Duration, ok func([]netip.Addr) bool) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() { m.mu.Lock(); m.cond.Broadcast(); m.mu.Unlock() })
	defer timer.Stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		for i, s := range m.history {
			if s.At.Before(since) && i+1 < len(m.history) && !m.history[i+1].At.After(since) {
				continue // superseded before since
			}
			if ok(s.Nexthops) {
				if s.At.Before(since) {
					return since, nil
				}
				return s.At, nil
			}
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("router FIB for %s: condition not met within %v; now %v", m.prefix, timeout, m.history[len(m.history)-1].Nexthops)
		}
		m.cond.Wait()
	}
}

// WaitWithout waits until the FIB no longer has addr as a nexthop of the
// prefix but still has some route (the other nodes).
func (m *FIBMonitor) WaitWithout(since time.Time, timeout time.Duration, addr netip.Addr) (time.Time, error) {
	return m.WaitUntil(since, timeout, func(nh []netip.Addr) bool { return !slices.Contains(nh, addr) })
}

// WaitExactly waits until the nexthops are exactly want.
func (m *FIBMonitor) WaitExactly(since time.Time, timeout time.Duration, want []netip.Addr) (time.Time, error) {
	want = sortedCopy(want)
	return m.WaitUntil(since, timeout, func(nh []netip.Addr) bool { return slices.Equal(nh, want) })
}

// Close stops the monitor.
func (m *FIBMonitor) Close() {
	select {
	case <-m.stop:
		return
	default:
	}
	close(m.stop)
	_ = m.cmd.Process.Kill()
	_ = m.cmd.Wait()
	unregisterPID(m.cmd.Process.Pid)
	m.wg.Wait()
}

// routerNexthopsOrdered is RouterNexthops in the kernel's nexthop order.
func (l *Lab) routerNexthopsOrdered(prefix netip.Prefix) ([]netip.Addr, error) {
	out, err := l.routerRouteJSON(prefix)
	if err != nil {
		return nil, err
	}
	return parseNexthopsOrdered(out)
}
