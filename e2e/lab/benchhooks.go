package lab

import (
	"context"
	"net"
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
