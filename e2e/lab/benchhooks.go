package lab

import (
	"context"
	"fmt"
	"net"
	"slices"
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
func (n *Node) RestartVipcastWith(bin string, timeout time.Duration) error {
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
	argv := slices.Clone(n.vipcast.argv)
	argv[0] = bin
	n.vipcast = newProc(n.vipcast.name, n.NS, n.VipcastLog(), argv...)
	return n.StartVipcast()
}
