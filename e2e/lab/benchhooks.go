package lab

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Accessors the benchmark (e2e/cmd/bench) needs; additive only.

// RouterNS is the router's network namespace name.
func (l *Lab) RouterNS() string { return l.routerNS }

// ClientNS is the client's network namespace name.
func (l *Lab) ClientNS() string { return l.clientNS }

// DialClient opens a connection from inside the client namespace.
func (l *Lab) DialClient(ctx context.Context, network, addr string) (net.Conn, error) {
	return dialIn(ctx, l.clientNS, network, addr)
}

// VipcastPID is vipcast's PID (0 when not running). `ip netns exec` execs
// in place, so this is vipcast's own PID.
func (n *Node) VipcastPID() int { return n.vipcast.pid() }

// APIServerPID is kube-apiserver's PID (0 when not running).
func (n *Node) APIServerPID() int { return n.apiserver.pid() }

func (p *proc) pid() int {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || isClosed(p.done) {
		return 0
	}
	return p.cmd.Process.Pid
}

// RestartVipcastWith stops the node's vipcast (SIGTERM, as a rollout does)
// and starts bin in its place with the same arguments, config and log: the
// bench alternates two builds in one lab, so both see the same machine.
// baseline writes the config without the settings that came after the
// bench's baseline build (docs/performance.md), which rejects unknown keys.
func (n *Node) RestartVipcastWith(bin string, baseline bool, timeout time.Duration) error {
	if n.vipcast == nil {
		return fmt.Errorf("%s: vipcast was never started", n.Name)
	}
	if n.vipcast.alive() {
		if err := n.vipcast.signal(syscall.SIGTERM); err != nil {
			return err
		}
		if err := n.vipcast.wait(timeout); err != nil {
			return err
		}
	}
	n.baseline = baseline
	if err := n.writeVipcastConfig(); err != nil {
		return err
	}
	argv := slices.Clone(n.vipcast.argv)
	argv[0] = bin
	n.vipcast = newProc(n.vipcast.name, n.NS, n.VipcastLog(), argv...)
	return n.StartVipcast()
}

// RouterReleased is when a restarted FRR's bgpd released its peers from the
// config-pending hold (the last "released from config-pending hold" line of
// frr.log at or after since): only from then on does FRR keep a session it
// accepts, so it is when the session can be re-established. ok is false for
// BIRD, which has no such hold, and until bgpd logs the line.
func (l *Lab) RouterReleased(since time.Time) (at time.Time, ok bool) {
	r, isFRR := l.router.(*frrRouter)
	if !isFRR {
		return time.Time{}, false
	}
	data, err := os.ReadFile(filepath.Join(r.dir, "frr.log")) // the config's log file: its timestamps have the precision
	if err != nil {
		return time.Time{}, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.Contains(line, "released from config-pending hold") || len(line) < len(frrLogTime) {
			continue
		}
		t, err := time.ParseInLocation(frrLogTime, line[:len(frrLogTime)], time.Local)
		if err == nil && !t.Before(since.Truncate(time.Millisecond)) {
			at, ok = t, true
		}
	}
	return at, ok
}

// frrLogTime is bgpd's log timestamp with "log timestamp precision 3".
const frrLogTime = "2006/01/02 15:04:05.000"
