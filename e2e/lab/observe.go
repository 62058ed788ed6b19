package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// PollInterval is how often the Wait helpers look at the router.
const PollInterval = 5 * time.Millisecond

// RouterNexthops returns the nexthops of prefix in the router's kernel FIB
// (sorted; none if there is no route). Single-nexthop and multipath routes
// are both handled.
func (l *Lab) RouterNexthops(prefix netip.Prefix) ([]netip.Addr, error) {
	out, err := l.routerRouteJSON(prefix)
	if err != nil {
		return nil, err
	}
	return parseNexthops(out)
}

// routerRouteJSON is `ip -j route show PREFIX` in the router's namespace.
func (l *Lab) routerRouteJSON(prefix netip.Prefix) ([]byte, error) {
	args := []string{"-n", l.routerNS, "-j"}
	if prefix.Addr().Is6() {
		args = append(args, "-6")
	}
	return runStdout("ip", append(args, "route", "show", "table", "main", prefix.String())...)
}

// parseNexthops reads `ip -j route show` output: the route's gateways,
// sorted.
func parseNexthops(out []byte) ([]netip.Addr, error) {
	addrs, err := parseNexthopsOrdered(out)
	slices.SortFunc(addrs, netip.Addr.Compare)
	return addrs, err
}

// parseNexthopsOrdered is parseNexthops in the kernel's nexthop order.
func parseNexthopsOrdered(out []byte) ([]netip.Addr, error) {
	type nh struct {
		Gateway string `json:"gateway"`
	}
	var routes []struct {
		Type     string `json:"type"`
		Gateway  string `json:"gateway"`
		Nexthops []nh   `json:"nexthops"`
	}
	if len(strings.TrimSpace(string(out))) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		return nil, fmt.Errorf("ip route json: %w: %s", err, out)
	}
	var addrs []netip.Addr
	add := func(s string) {
		if a, err := netip.ParseAddr(s); err == nil && !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	for _, r := range routes {
		if r.Type != "" && r.Type != "unicast" {
			continue
		}
		add(r.Gateway)
		for _, n := range r.Nexthops {
			add(n.Gateway)
		}
	}
	return addrs, nil
}

// RouterRouteText is the router's kernel route for prefix as `ip route`
// prints it, for humans.
func (l *Lab) RouterRouteText(prefix netip.Prefix) string {
	args := []string{"-n", l.routerNS}
	if prefix.Addr().Is6() {
		args = append(args, "-6")
	}
	out, err := run("ip", append(args, "route", "show", prefix.String())...)
	if err != nil {
		return err.Error()
	}
	if strings.TrimSpace(out) == "" {
		return "(no route)"
	}
	return strings.TrimRight(out, "\n")
}

// RouterBGPPaths returns the router's BGP paths for prefix, sorted by peer.
func (l *Lab) RouterBGPPaths(prefix netip.Prefix) ([]Path, error) { return l.router.paths(prefix) }

// RouterSessions returns each configured peer's BGP state as the router
// sees it ("Established" when up; FRR and BIRD words otherwise).
func (l *Lab) RouterSessions() (map[netip.Addr]string, error) { return l.router.sessions() }

// Established reports whether the router has the session with peer up.
func (l *Lab) Established(peer netip.Addr) bool {
	s, err := l.router.sessions()
	return err == nil && s[peer] == "Established"
}

// KillRouter SIGKILLs the router's daemons and, like a reboot, flushes the
// routes they had installed (a killed zebra or BIRD leaves them in the
// kernel, which would make a FIB check after the restart pass vacuously).
func (l *Lab) KillRouter() error {
	l.router.kill()
	for _, p := range l.VIPs() {
		for range 16 { // one route per call; multipath routes are one route
			if nh, err := l.RouterNexthops(p); err != nil || len(nh) == 0 {
				break
			}
			if _, err := run("ip", "-n", l.routerNS, "route", "del", p.String()); err != nil {
				return err
			}
		}
	}
	return nil
}

// StartRouter starts the router's daemons again with the same config.
func (l *Lab) StartRouter() error { return l.router.start() }

func sortedCopy(a []netip.Addr) []netip.Addr {
	c := slices.Clone(a)
	slices.SortFunc(c, netip.Addr.Compare)
	return c
}

// WaitNexthops polls the router's FIB every 5ms until prefix has exactly
// want as nexthops (empty want: no route) and returns when it saw that.
func (l *Lab) WaitNexthops(t T, prefix netip.Prefix, want []netip.Addr, timeout time.Duration) time.Time {
	t.Helper()
	want = sortedCopy(want)
	var got []netip.Addr
	var err error
	deadline := time.Now().Add(timeout)
	for {
		got, err = l.RouterNexthops(prefix)
		now := time.Now()
		if err == nil && slices.Equal(got, want) {
			return now
		}
		if now.After(deadline) {
			break
		}
		time.Sleep(PollInterval)
	}
	t.Fatalf("router FIB for %s: want nexthops %v within %v, last saw %v (err %v)", prefix, want, timeout, got, err)
	return time.Time{}
}

// HoldNexthops checks that prefix keeps exactly want as nexthops for d
// (for "never comes back" assertions).
func (l *Lab) HoldNexthops(t T, prefix netip.Prefix, want []netip.Addr, d time.Duration) {
	t.Helper()
	want = sortedCopy(want)
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		got, err := l.RouterNexthops(prefix)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("router FIB for %s changed: want %v for %v, saw %v (err %v)", prefix, want, d, got, err)
		}
		time.Sleep(PollInterval)
	}
}

// WaitFor polls cond every 5ms until it is true; it fails t after timeout.
func WaitFor(t T, what string, timeout time.Duration, cond func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(PollInterval)
	}
}

// ClientDial connects from the client namespace to vip:port and returns
// what the responder said: the name of the node that answered.
func (l *Lab) ClientDial(vip netip.Addr, port int) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := dialIn(ctx, l.clientNS, "tcp", netip.AddrPortFrom(vip, uint16(port)).String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	b, err := io.ReadAll(io.LimitReader(c, 64))
	if err != nil && len(b) == 0 {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// ClientSpread makes n connections to vip's responder and counts answers
// per node name; failed connections count under "error: ...".
func (l *Lab) ClientSpread(vip netip.Addr, n int) map[string]int {
	m := map[string]int{}
	for range n {
		name, err := l.ClientDial(vip, ResponderPort)
		if err != nil {
			name = "error: " + err.Error()
		}
		m[name]++
	}
	return m
}

// Dump is the state a failed test needs: the router's BGP table and FIB,
// and the tails of every log.
func (l *Lab) Dump() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n======== lab %s dump (%s) ========\n", l.ID, l.Opts.Router)
	if l.router != nil {
		b.WriteString(l.router.dump())
	}
	for _, fam := range []string{"-4", "-6"} {
		out, err := run("ip", "-n", l.routerNS, fam, "route", "show")
		fmt.Fprintf(&b, "--- router kernel FIB ip %s route (err=%v)\n%s", fam, err, out)
	}
	for _, n := range l.nodes {
		out, _ := run("ip", "-n", n.NS, "addr", "show", "dev", "lo")
		fmt.Fprintf(&b, "--- %s lo:\n%s", n.Name, out)
		fmt.Fprintf(&b, "--- %s processes: etcd=%v apiserver=%v vipcast=%v\n", n.Name,
			n.etcd != nil && n.etcd.alive(), n.apiserver != nil && n.apiserver.alive(), n.vipcast != nil && n.vipcast.alive())
		fmt.Fprintf(&b, "--- %s vipcast log (tail)\n%s", n.Name, tail(n.VipcastLog(), 80))
		if n.apiserver != nil {
			fmt.Fprintf(&b, "--- %s kube-apiserver log (tail)\n%s", n.Name, tail(n.apiserver.logPath, 15))
		}
		if n.etcd != nil {
			fmt.Fprintf(&b, "--- %s etcd log (tail)\n%s", n.Name, tail(n.etcd.logPath, 8))
		}
	}
	if l.router != nil {
		for _, f := range l.router.logs() {
			fmt.Fprintf(&b, "--- %s (tail)\n%s", f, tail(f, 60))
		}
	}
	b.WriteString("======== end of dump ========\n")
	return b.String()
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)\n", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

var resultsMu sync.Mutex

// Record logs a measured duration and, if VIPCAST_E2E_RESULTS names a
// file, appends it there as a JSON line.
func (l *Lab) Record(t T, metric string, d time.Duration) {
	t.Helper()
	t.Logf("MEASURED %s %s: %v", l.Opts.Router, metric, d.Round(100*time.Microsecond))
	path := os.Getenv("VIPCAST_E2E_RESULTS")
	if path == "" {
		return
	}
	line, _ := json.Marshal(map[string]any{
		"time": time.Now().UTC().Format(time.RFC3339Nano), "test": t.Name(), "router": l.Opts.Router,
		"metric": metric, "ms": float64(d.Microseconds()) / 1000,
	})
	resultsMu.Lock()
	defer resultsMu.Unlock()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Errorf("results file: %v", err)
		return
	}
	defer f.Close()
	f.Write(append(line, '\n'))
}

// Tail returns the last n lines of a file (or the error reading it).
func Tail(path string, n int) string { return tail(path, n) }
