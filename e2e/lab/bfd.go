package lab

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// BFD on the router side. FRR: bfdd (always started by the lab) with one
// profile, applied to the node peer groups, so bgpd registers a BFD session
// per neighbor. BIRD: a bfd protocol whose interface timers apply to the
// sessions the BGP protocols request with `bfd on`.

const frrBFDProfile = "fast"

func ms(d time.Duration) int64 { return d.Milliseconds() }

func (r *frrRouter) bfdConfig() string {
	b := r.lab.Opts.BFD
	if b == nil {
		return ""
	}
	return fmt.Sprintf("debug bfd peer\n!\nbfd\n profile %s\n  transmit-interval %d\n  receive-interval %d\n  detect-multiplier %d\n exit\nexit\n!\n",
		frrBFDProfile, ms(b.Interval), ms(b.Interval), b.Multiplier)
}

func (r *birdRouter) bfdConfig() string {
	b := r.lab.Opts.BFD
	if b == nil {
		return ""
	}
	return fmt.Sprintf("protocol bfd bfd1 {\n  interface \"*\" { min rx interval %d ms; min tx interval %d ms; multiplier %d; };\n}\n",
		ms(b.Interval), ms(b.Interval), b.Multiplier)
}

// RouterBFDSessions returns the router's BFD state per node address:
// "Up", "Down", "Init" or "AdminDown" (FRR's and BIRD's words, capitalised
// alike). Peers the router has no session for are missing.
func (l *Lab) RouterBFDSessions() (map[netip.Addr]string, error) { return l.router.bfdSessions() }

// WaitRouterBFD polls the router's BFD sessions until every given node's is
// in state and returns when it saw that.
func (l *Lab) WaitRouterBFD(t T, state string, timeout time.Duration, nodes ...*Node) time.Time {
	t.Helper()
	var last map[netip.Addr]string
	var err error
	deadline := time.Now().Add(timeout)
	for {
		last, err = l.RouterBFDSessions()
		now := time.Now()
		if err == nil {
			ok := true
			for _, n := range nodes {
				if last[n.Addr4] != state {
					ok = false
				}
			}
			if ok {
				return now
			}
		}
		if now.After(deadline) {
			break
		}
		time.Sleep(PollInterval)
	}
	t.Fatalf("router BFD: want %s for %v within %v, last saw %v (err %v)", state, l.Addrs(VIP4, nodes...), timeout, last, err)
	return time.Time{}
}

func bfdWord(s string) string {
	switch strings.ToLower(s) {
	case "up":
		return "Up"
	case "down":
		return "Down"
	case "init":
		return "Init"
	case "admindown", "adm_down", "shutdown":
		return "AdminDown"
	}
	return s
}

// `show bfd peers json`: [{"peer":"192.0.2.11","local":"192.0.2.1","status":"up",...}]
func (r *frrRouter) bfdSessions() (map[netip.Addr]string, error) {
	out, err := r.vtysh("-c", "show bfd peers json")
	if err != nil {
		return nil, err
	}
	return parseFRRBFDPeers([]byte(out))
}

func parseFRRBFDPeers(out []byte) (map[netip.Addr]string, error) {
	peers, err := parseFRRBFDPeersFull(out)
	if err != nil {
		return nil, err
	}
	m := map[netip.Addr]string{}
	for a, p := range peers {
		m[a] = bfdWord(p.Status)
	}
	return m, nil
}

type frrBFDPeer struct {
	Peer      string `json:"peer"`
	Local     string `json:"local"`
	Interface string `json:"interface"`
	Status    string `json:"status"`
}

func parseFRRBFDPeersFull(out []byte) (map[netip.Addr]frrBFDPeer, error) {
	var doc []frrBFDPeer
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("show bfd peers json: %w: %s", err, out)
	}
	m := map[netip.Addr]frrBFDPeer{}
	for _, p := range doc {
		if a, err := netip.ParseAddr(p.Peer); err == nil {
			m[a] = p
		}
	}
	return m, nil
}

// bfdSettled reports whether the router's BFD sessions are in their final
// form. FRR 8.4's bgpd registers each neighbor's BFD session before the
// BGP session exists, without local address or interface, and re-registers
// it with both once BGP is first Established: bfdd deletes the session
// and creates a new one (new discriminator, state Down), which the node's
// BFD must take as a failure (RFC 5880 6.8.6), so every FRR neighbor flaps
// once, right after its first establishment. Settled: every node's session
// has its interface.
func (r *frrRouter) bfdSettled() (bool, string) {
	out, err := r.vtysh("-c", "show bfd peers json")
	if err != nil {
		return false, err.Error()
	}
	peers, err := parseFRRBFDPeersFull([]byte(out))
	if err != nil {
		return false, err.Error()
	}
	for _, n := range r.lab.nodes {
		if p, ok := peers[n.Addr4]; !ok || p.Interface == "" || bfdWord(p.Status) != "Up" {
			return false, fmt.Sprintf("%+v", peers)
		}
	}
	return true, ""
}

func (r *birdRouter) bfdSettled() (bool, string) {
	s, err := r.bfdSessions()
	if err != nil {
		return false, err.Error()
	}
	for _, n := range r.lab.nodes {
		if s[n.Addr4] != "Up" {
			return false, fmt.Sprint(s)
		}
	}
	return true, ""
}

// WaitBFDSettled is waitBFDSettled for tests.
func (l *Lab) WaitBFDSettled(t T, timeout time.Duration) {
	t.Helper()
	if err := l.waitBFDSettled(timeout); err != nil {
		t.Fatal(err)
	}
}

// waitBFDSettled waits until the router's BFD sessions are Up in their
// final form (see frrRouter.bfdSettled), so scenarios do not start in the
// middle of FRR's one-time re-registration flap.
func (l *Lab) waitBFDSettled(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, last := l.router.bfdSettled()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("router BFD sessions not settled (Up, final key) within %v: %s", timeout, last)
		}
		time.Sleep(PollInterval)
	}
}

// `birdc show bfd sessions`:
//
//	bfd1:
//	IP address                Interface  State      Since         Interval  Timeout
//	192.0.2.11                br0        Up         12:00:00.123    0.100    0.300
func (r *birdRouter) bfdSessions() (map[netip.Addr]string, error) {
	out, err := r.birdc("show", "bfd", "sessions")
	if err != nil {
		return nil, err
	}
	return parseBirdBFDSessions(out), nil
}

func parseBirdBFDSessions(out string) map[netip.Addr]string {
	m := map[netip.Addr]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		m[a] = bfdWord(f[2])
	}
	return m
}
