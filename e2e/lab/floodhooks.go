package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// DialContext dials from inside the node's network namespace (a client on
// the node itself, as the kubelet's probes are).
func (n *Node) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return dialIn(ctx, n.NS, network, addr)
}

// RouterDialContext dials from the router namespace (192.0.2.1 on the
// nodes' link).
func (l *Lab) RouterDialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return dialIn(ctx, l.routerNS, network, addr)
}

// VipcastRSS returns vipcast's resident set size in bytes (VmRSS).
func (n *Node) VipcastRSS() (int64, error) {
	return procRSS(n.VipcastPID())
}

func procRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("pid %d: no VmRSS in /proc/%d/status", pid, pid)
}

// RouterBFDDiscriminators returns the discriminators of FRR's BFD session
// with the node: FRR's own ("id") and the node's ("remote-id"). FRR only.
func (l *Lab) RouterBFDDiscriminators(n *Node) (router, node uint32, err error) {
	out, err := l.RouterVtysh("-c", "show bfd peers json")
	if err != nil {
		return 0, 0, fmt.Errorf("show bfd peers json: %w: %s", err, out)
	}
	var doc []struct {
		Peer     string `json:"peer"`
		ID       uint32 `json:"id"`
		RemoteID uint32 `json:"remote-id"`
		Status   string `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return 0, 0, fmt.Errorf("show bfd peers json: %w: %s", err, out)
	}
	for _, p := range doc {
		if p.Peer == n.Addr4.String() && p.Status == "up" {
			return p.ID, p.RemoteID, nil
		}
	}
	return 0, 0, fmt.Errorf("no BFD session up with %s: %s", n.Addr4, out)
}

// RouterUDP opens a UDP socket in the router's namespace, from its address
// on the nodes' link (any port) to raddr, sending with TTL 255 as a
// single-hop BFD peer must (RFC 5881 5).
func (l *Lab) RouterUDP(raddr string) (*net.UDPConn, error) {
	var c net.Conn
	err := inNetns(l.routerNS, func() error {
		d := net.Dialer{
			LocalAddr: &net.UDPAddr{IP: net.IP(RouterAddr4.AsSlice())},
			Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				if err := rc.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_TTL, 255)
				}); err != nil {
					return err
				}
				return serr
			},
		}
		var err error
		c, err = d.Dial("udp4", raddr)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.(*net.UDPConn), nil
}

// BFDCounters are FRR's counters of its BFD session with a node.
type BFDCounters struct {
	RxPackets, TxPackets uint64 // control packets
	Ups, Downs           uint64 // session state changes to Up, and from Up to Down
}

// RouterBFDCounters returns FRR's counters of its BFD session with the
// node (`show bfd peers counters json`; summed over the node's sessions,
// as bfdd may hold two for a moment while it replaces one). FRR only.
func (l *Lab) RouterBFDCounters(n *Node) (BFDCounters, error) {
	out, err := l.RouterVtysh("-c", "show bfd peers counters json")
	if err != nil {
		return BFDCounters{}, fmt.Errorf("show bfd peers counters json: %w: %s", err, out)
	}
	var doc []struct {
		Peer  string `json:"peer"`
		RxCtl uint64 `json:"control-packet-input"`
		TxCtl uint64 `json:"control-packet-output"`
		Up    uint64 `json:"session-up"`
		Down  uint64 `json:"session-down"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return BFDCounters{}, fmt.Errorf("show bfd peers counters json: %w: %s", err, out)
	}
	var c BFDCounters
	found := false
	for _, p := range doc {
		if p.Peer == n.Addr4.String() {
			found = true
			c.RxPackets += p.RxCtl
			c.TxPackets += p.TxCtl
			c.Ups += p.Up
			c.Downs += p.Down
		}
	}
	if !found {
		return c, fmt.Errorf("no BFD session with %s: %s", n.Addr4, out)
	}
	return c, nil
}

// AddRouterAddr adds a (/32) address to the router's bridge, for
// connections from more remote hosts than the router itself; removed with
// the lab.
func (l *Lab) AddRouterAddr(a netip.Addr) error {
	out, err := run("ip", "-n", l.routerNS, "addr", "add", netip.PrefixFrom(a, a.BitLen()).String(), "dev", "br0")
	if err != nil {
		return fmt.Errorf("router address %s: %w: %s", a, err, out)
	}
	return nil
}

// RouterDialFrom dials from the router namespace with source address src
// (the router's own, or one added with AddRouterAddr).
func (l *Lab) RouterDialFrom(ctx context.Context, src netip.Addr, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(l.routerNS, func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IP(src.AsSlice())}}
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}
