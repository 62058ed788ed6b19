package speaker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vipcast/vipcast/peers/testutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// addrRow is one address on an interface as the tests compare it.
type addrRow struct {
	Prefix string
	Label  string // IPv4 only; the kernel has no IPv6 labels
}

// testNetns creates a fresh network namespace for one test and returns a
// file descriptor for it and a netlink handle in it. The test's own thread
// never changes namespace: the namespace is created by a throwaway goroutine
// whose locked thread the runtime destroys when it exits, and all netlink
// traffic goes through a socket opened inside the namespace
// (netlink.NewHandleAt). The namespace is unnamed, so it disappears with the
// last descriptor even if the test binary dies.
func testNetns(t *testing.T) (netns.NsHandle, *netlink.Handle) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: netlink tests need root (CAP_NET_ADMIN); run as root to exercise VIPs on lo")
	}
	type result struct {
		ns  netns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: this thread's namespace changes, so it must not
		// go back to the pool; the runtime ends it when the goroutine ends.
		runtime.LockOSThread()
		ns, err := netns.New()
		ch <- result{ns, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("new network namespace: %v", r.err)
	}
	ns := r.ns
	t.Cleanup(func() { ns.Close() })

	host, err := netns.Get()
	if err != nil {
		t.Fatalf("current network namespace: %v", err)
	}
	defer host.Close()
	if ns.Equal(host) {
		t.Fatalf("new namespace %s is the test's own namespace", ns)
	}

	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", ns, err)
	}
	t.Cleanup(h.Close)
	return ns, h
}

// newTestLoopback returns a Loopback on lo in a fresh namespace, the
// namespace, and a separate handle for the test's own inspection.
func newTestLoopback(t *testing.T, log *slogRecorder) (*Loopback, netns.NsHandle, *netlink.Handle) {
	t.Helper()
	ns, h := testNetns(t)
	own, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", ns, err)
	}
	if log == nil {
		log = &slogRecorder{}
	}
	l, err := newLoopbackAt(own, "lo", log.logger())
	if err != nil {
		own.Close()
		t.Fatalf("newLoopbackAt: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	if l.rt, err = routeSocketAt(ns); err != nil {
		t.Fatal(err)
	}
	return l, ns, h
}

func listAddrs(t *testing.T, h *netlink.Handle, ifname string) []addrRow {
	t.Helper()
	var rows []addrRow
	for _, a := range rawAddrs(t, h, ifname) {
		rows = append(rows, addrRow{Prefix: a.IPNet.String(), Label: a.Label})
	}
	slices.SortFunc(rows, func(a, b addrRow) int { return strings.Compare(a.Prefix, b.Prefix) })
	return rows
}

func rawAddrs(t *testing.T, h *netlink.Handle, ifname string) []netlink.Addr {
	t.Helper()
	link, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatalf("link %s: %v", ifname, err)
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("list addresses on %s: %v", ifname, err)
	}
	return addrs
}

func findAddr(t *testing.T, h *netlink.Handle, p netip.Prefix) (netlink.Addr, bool) {
	t.Helper()
	for _, a := range rawAddrs(t, h, "lo") {
		if a.IPNet.String() == p.String() {
			return a, true
		}
	}
	return netlink.Addr{}, false
}

// addAdminAddr puts an address on lo the way an admin's `ip addr add` would:
// no vipcast label.
func addAdminAddr(t *testing.T, h *netlink.Handle, s, label string) {
	t.Helper()
	a, err := netlink.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	a.Label = label
	link, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(link, a); err != nil {
		t.Fatalf("add %s: %v", s, err)
	}
}

// baseline is what lo carries in a fresh namespace once it is up.
var baseline = []addrRow{{"127.0.0.1/8", "lo"}, {"::1/128", ""}}

func withRows(extra ...addrRow) []addrRow {
	rows := append(slices.Clone(baseline), extra...)
	slices.SortFunc(rows, func(a, b addrRow) int { return strings.Compare(a.Prefix, b.Prefix) })
	return rows
}

func TestLoopbackAddRemove(t *testing.T) {
	tests := []struct {
		name      string
		vip       netip.Prefix
		wantLabel string
		wantFlags int // must be set
	}{
		{"ipv4 /32", netip.MustParsePrefix("203.0.113.10/32"), "lo:vip", 0},
		{"ipv6 /128", netip.MustParsePrefix("2001:db8::10/128"), "", unix.IFA_F_NODAD},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _, h := newTestLoopback(t, nil)
			// Bring lo up first so 127.0.0.1 and ::1 exist, then add an
			// admin's address that must survive everything below.
			if err := l.Add(tt.vip); err != nil {
				t.Fatalf("Add: %v", err)
			}
			addAdminAddr(t, h, "198.51.100.7/32", "")
			if err := l.Add(tt.vip); err != nil {
				t.Fatalf("second Add: %v", err)
			}

			want := withRows(addrRow{"198.51.100.7/32", "lo"}, addrRow{tt.vip.String(), tt.wantLabel})
			if diff := cmp.Diff(want, listAddrs(t, h, "lo")); diff != "" {
				t.Fatalf("after Add twice (-want +got):\n%s", diff)
			}
			a, _ := findAddr(t, h, tt.vip)
			if a.Scope != unix.RT_SCOPE_UNIVERSE {
				t.Errorf("scope = %d, want %d (global)", a.Scope, unix.RT_SCOPE_UNIVERSE)
			}
			if a.Flags&tt.wantFlags != tt.wantFlags {
				t.Errorf("flags = %#x, want %#x set", a.Flags, tt.wantFlags)
			}
			if a.Flags&unix.IFA_F_TENTATIVE != 0 {
				t.Errorf("flags = %#x: address is tentative (DAD running)", a.Flags)
			}

			if err := l.Remove(tt.vip); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			want = withRows(addrRow{"198.51.100.7/32", "lo"})
			if diff := cmp.Diff(want, listAddrs(t, h, "lo")); diff != "" {
				t.Fatalf("after Remove (-want +got):\n%s", diff)
			}
			if err := l.Remove(tt.vip); err != nil {
				t.Fatalf("Remove of an absent VIP: %v, want nil", err)
			}
			if diff := cmp.Diff(want, listAddrs(t, h, "lo")); diff != "" {
				t.Fatalf("after second Remove (-want +got):\n%s", diff)
			}
		})
	}
}

// An unlabelled copy of a VIP (added by hand) is still removed by Remove.
func TestLoopbackRemoveUnlabelledAddr(t *testing.T) {
	l, _, h := newTestLoopback(t, nil)
	vip := netip.MustParsePrefix("203.0.113.10/32")
	if err := l.Add(netip.MustParsePrefix("203.0.113.11/32")); err != nil { // sets lo up
		t.Fatal(err)
	}
	addAdminAddr(t, h, vip.String(), "")
	if err := l.Add(vip); err != nil {
		t.Fatalf("Add over an admin's copy: %v", err)
	}
	if err := l.Remove(vip); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, ok := findAddr(t, h, vip); ok {
		t.Errorf("%s still on lo after Remove", vip)
	}
}

func TestLoopbackAddSetsInterfaceUp(t *testing.T) {
	l, _, h := newTestLoopback(t, nil)
	link, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if link.Attrs().Flags&net.FlagUp != 0 {
		t.Fatalf("lo is already up in a fresh namespace; the test cannot check Add brings it up")
	}
	if err := l.Add(netip.MustParsePrefix("203.0.113.10/32")); err != nil {
		t.Fatalf("Add: %v", err)
	}
	link, err = h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("lo is down after Add")
	}
	if diff := cmp.Diff(withRows(addrRow{"203.0.113.10/32", "lo:vip"}), listAddrs(t, h, "lo")); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
}

func TestLoopbackCleanup(t *testing.T) {
	rec := &slogRecorder{}
	l, _, h := newTestLoopback(t, rec)
	configured := []netip.Prefix{
		netip.MustParsePrefix("203.0.113.10/32"),
		netip.MustParsePrefix("2001:db8::10/128"),
		netip.MustParsePrefix("203.0.113.20/32"), // configured but absent
	}
	// 2001:db8::77 is a predecessor's IPv6 VIP no longer configured: no
	// label, but the address protocol marks it as vipcast's.
	for _, s := range []string{"203.0.113.10/32", "2001:db8::10/128", "203.0.113.99/32", "2001:db8::77/128"} {
		if err := l.Add(netip.MustParsePrefix(s)); err != nil {
			t.Fatal(err)
		}
	}
	addAdminAddr(t, h, "198.51.100.7/32", "")
	addAdminAddr(t, h, "198.51.100.8/32", "lo:admin")
	addAdminAddr(t, h, "2001:db8::99/128", "")
	addAdminAddr(t, h, "203.0.113.10/24", "") // same address, other prefix: not the VIP

	if err := l.Cleanup(configured); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	want := withRows(
		addrRow{"198.51.100.7/32", "lo"},
		addrRow{"198.51.100.8/32", "lo:admin"},
		addrRow{"2001:db8::99/128", ""},
		addrRow{"203.0.113.10/24", "lo"},
	)
	if diff := cmp.Diff(want, listAddrs(t, h, "lo")); diff != "" {
		t.Errorf("after Cleanup (-want +got):\n%s", diff)
	}

	var removed []string
	for _, r := range rec.records(t) {
		if _, ok := r["err"]; !ok {
			continue
		}
		vip, _ := r["vip"].(string)
		removed = append(removed, vip)
		if r["err"] != nil {
			t.Errorf("removal of %s logged err=%v", vip, r["err"])
		}
	}
	slices.Sort(removed)
	if diff := cmp.Diff([]string{"2001:db8::10/128", "2001:db8::77/128", "203.0.113.10/32", "203.0.113.99/32"}, removed); diff != "" {
		t.Errorf("logged removals (-want +got):\n%s", diff)
	}

	if err := l.Cleanup(configured); err != nil {
		t.Fatalf("second Cleanup: %v", err)
	}
	if diff := cmp.Diff(want, listAddrs(t, h, "lo")); diff != "" {
		t.Errorf("after second Cleanup (-want +got):\n%s", diff)
	}
}

// TestStaleVIPsFromKilledPredecessor runs a predecessor vipcast in a child
// process that adds its VIPs (one of them no longer in the configuration)
// and is SIGKILLed, so nothing of its own cleans up; a successor's Cleanup
// must then remove both, and nothing else.
func TestStaleVIPsFromKilledPredecessor(t *testing.T) {
	ns, h := testNetns(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Dup(int(ns))
	if err != nil {
		t.Fatal(err)
	}
	nsFile := os.NewFile(uintptr(fd), "netns")
	defer nsFile.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^TestNetnsHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		helperEnv+"=1",
		helperIfEnv+"=lo",
		helperVIPsEnv+"=203.0.113.10/32,203.0.113.99/32,2001:db8::10/128",
	)
	cmd.ExtraFiles = []*os.File{nsFile} // fd 3 in the child
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe() // held open: the child blocks reading it
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start predecessor: %v", err)
	}
	waited := false
	t.Cleanup(func() {
		if !waited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})

	ready := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if sc.Text() == helperReady {
			ready = true
			break
		}
	}
	if !ready {
		_ = cmd.Process.Kill()
		werr := cmd.Wait()
		waited = true
		t.Fatalf("predecessor exited before it was ready (%v); stderr:\n%s", werr, stderr.String())
	}

	// The predecessor's VIPs are there, in the test namespace only.
	before := listAddrs(t, h, "lo")
	for _, r := range []addrRow{{"203.0.113.10/32", "lo:vip"}, {"203.0.113.99/32", "lo:vip"}, {"2001:db8::10/128", ""}} {
		if !slices.Contains(before, r) {
			t.Fatalf("predecessor's %v missing before the kill; addresses: %v", r, before)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL predecessor: %v", err)
	}
	werr := cmd.Wait()
	waited = true
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("predecessor did not die of SIGKILL: %v; stderr:\n%s", werr, stderr.String())
	}
	if diff := cmp.Diff(before, listAddrs(t, h, "lo")); diff != "" {
		t.Fatalf("addresses changed by the kill (-before +after):\n%s", diff)
	}

	addAdminAddr(t, h, "198.51.100.7/32", "")

	own, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	rec := &slogRecorder{}
	l, err := newLoopbackAt(own, "lo", rec.logger())
	if err != nil {
		own.Close()
		t.Fatal(err)
	}
	defer l.Close()
	if l.rt, err = routeSocketAt(ns); err != nil {
		t.Fatal(err)
	}
	// The successor's configuration no longer lists 203.0.113.99 nor the
	// IPv6 VIP: the label and the address protocol say they are vipcast's.
	configured := []netip.Prefix{netip.MustParsePrefix("203.0.113.10/32")}
	if err := l.Cleanup(configured); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if diff := cmp.Diff(withRows(addrRow{"198.51.100.7/32", "lo"}), listAddrs(t, h, "lo")); diff != "" {
		t.Errorf("after the successor's Cleanup (-want +got):\n%s", diff)
	}
}

func TestNewLoopbackAddrErrors(t *testing.T) {
	ns, _ := testNetns(t)
	handle := func() *netlink.Handle {
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(h.Close)
		return h
	}
	for _, tt := range []struct{ ifname, wantErr string }{
		{"", "empty interface name"},
		{"abcdefghijkl", "too long"},
		{"nosuch0", "nosuch0"},
	} {
		_, err := newLoopbackAt(handle(), tt.ifname, nil)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("newLoopbackAt(%q) = %v, want error containing %q", tt.ifname, err, tt.wantErr)
		}
	}
	if _, err := newLoopbackAt(nil, "lo", nil); err == nil {
		t.Errorf("newLoopbackAt(nil handle) = nil error")
	}

	l, err := newLoopbackAt(handle(), "lo", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []netip.Prefix{
		{},
		netip.MustParsePrefix("203.0.113.0/24"),
		netip.MustParsePrefix("::ffff:203.0.113.1/128"),
	} {
		if err := l.Add(p); err == nil || !strings.Contains(err.Error(), "add vip "+p.String()+" on lo") {
			t.Errorf("Add(%v) = %v, want error naming the vip", p, err)
		}
		if err := l.Remove(p); err == nil || !strings.Contains(err.Error(), "remove vip "+p.String()+" from lo") {
			t.Errorf("Remove(%v) = %v, want error naming the vip", p, err)
		}
	}

	l.Close()
	vip := netip.MustParsePrefix("203.0.113.10/32")
	for name, err := range map[string]error{"Add": l.Add(vip), "Remove": l.Remove(vip), "Cleanup": l.Cleanup([]netip.Prefix{vip})} {
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s after Close = %v, want wrapped net.ErrClosed", name, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// slogRecorder collects JSON log records.
type slogRecorder struct{ buf bytes.Buffer }

func (r *slogRecorder) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(&r.buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (r *slogRecorder) records(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.buf.Bytes()))
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("log is not JSON lines: %v\n%s", err, r.buf.String())
		}
		out = append(out, m)
	}
	return out
}

// A VIP deleted by someone else (RTM_DELADDR) reaches the watcher, Missing
// names what is gone, and the watch stops when its context ends.
func TestLoopbackWatchRemovals(t *testing.T) {
	l, ns, h := newTestLoopback(t, nil)
	l.ns = &ns
	v4 := netip.MustParsePrefix("203.0.113.10/32")
	v6 := netip.MustParsePrefix("2001:db8:ffff::10/128")
	for _, v := range []netip.Prefix{v4, v6} {
		if err := l.Add(v); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	removed := make(chan netip.Prefix)
	done := make(chan error, 1)
	go func() { done <- l.WatchRemovals(ctx, removed) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("WatchRemovals: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("WatchRemovals did not return after cancel")
		}
	})
	if got, err := l.Missing([]netip.Prefix{v4, v6}); err != nil || len(got) != 0 {
		t.Fatalf("Missing before any delete = %v, %v; want none", got, err)
	}
	// The subscription is set up asynchronously: delete until an event
	// arrives (each round re-adds first), never sleep-and-hope.
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for got := false; !got; {
		if time.Now().After(deadline) {
			t.Fatal("no removal reported within 5s")
		}
		_ = l.Add(v6)
		if err := h.AddrDel(lo, &netlink.Addr{IPNet: ipNet(v6)}); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-removed:
			if p != v6 {
				t.Fatalf("reported %s, want %s", p, v6)
			}
			got = true
		case <-time.After(200 * time.Millisecond):
		}
	}
	if got, err := l.Missing([]netip.Prefix{v4, v6}); err != nil || !slices.Equal(got, []netip.Prefix{v6}) {
		t.Errorf("Missing = %v, %v; want [%s]", got, err, v6)
	}
}

// The speaker on a real lo: a VIP deleted with netlink behind its back
// (`ip addr del`) is back within the watch's latency, long before the
// 1 s periodic check, and the route is never withdrawn.
func TestSpeakerPutsBackVIPDeletedFromRealLo(t *testing.T) {
	l, ns, h := newTestLoopback(t, nil)
	l.ns = &ns
	cfg := testConfig()
	hs := startWith(t, cfg, func(d *Deps) { d.Addresses = l })
	hs.probe.ok.Store(true)
	onLo := func(p netip.Prefix) bool { _, ok := findAddr(t, h, p); return ok }
	hs.eventually("announced with the VIPs on lo", func() bool {
		return hs.router.IsAnnounced(vip4) && hs.router.IsAnnounced(vip6) && onLo(vip4) && onLo(vip6)
	})
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	// The watch subscribes asynchronously; the periodic check is the
	// backstop, so measure and require well under it.
	for _, v := range []netip.Prefix{vip4, vip6} {
		t0 := time.Now()
		if err := h.AddrDel(lo, &netlink.Addr{IPNet: ipNet(v)}); err != nil {
			t.Fatal(err)
		}
		hs.eventually(v.String()+" back on lo", func() bool { return onLo(v) })
		t.Logf("%s back on lo after %v", v, time.Since(t0))
	}
	for _, c := range hs.router.History() {
		if strings.HasPrefix(c, "withdraw") {
			t.Errorf("route withdrawn although the VIP was put back: %v", hs.router.History())
		}
	}
	if a, ok := findAddr(t, h, vip4); !ok || a.Label != "lo:vip" {
		t.Errorf("re-added IPv4 VIP %+v, want the lo:vip label", a)
	}
}

// inNetns runs f on a thread inside ns. The thread is never unlocked (its
// namespace changed), so the runtime ends it with the goroutine; sockets f
// opens stay in ns.
func inNetns(t *testing.T, ns netns.NsHandle, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestLoopbackRemoveResetsConnections: a connection from the node to its
// own VIP (the kubelet's, with controlPlaneEndpoint = the VIP) has the VIP
// as its source; once the VIP is removed it can never work again, and must
// fail at once rather than hang until the client's own timeout. A listener
// on the VIP stays and serves again when the VIP comes back.
func TestLoopbackRemoveResetsConnections(t *testing.T) {
	tests := []struct {
		name      string
		diag      bool
		wantReset bool
	}{
		{"reset with sock_diag", true, true},
		{"left alone without sock_diag", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &slogRecorder{}
			l, ns, _ := newTestLoopback(t, rec)
			if tt.diag {
				setTestDiag(t, l, ns)
			}
			vip := netip.MustParsePrefix("203.0.113.10/32")
			if err := l.Add(vip); err != nil {
				t.Fatalf("Add: %v", err)
			}
			var ln net.Listener
			var client, server net.Conn
			inNetns(t, ns, func() error {
				var err error
				if ln, err = net.Listen("tcp", "203.0.113.10:0"); err != nil {
					return err
				}
				if client, err = net.Dial("tcp", ln.Addr().String()); err != nil {
					return err
				}
				server, err = ln.Accept()
				return err
			})
			t.Cleanup(func() { ln.Close(); client.Close(); server.Close() })
			if got := client.LocalAddr().(*net.TCPAddr).IP.String(); got != "203.0.113.10" {
				t.Fatalf("client source = %s, want the VIP (the kernel's choice for a local destination)", got)
			}

			if err := l.Remove(vip); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			_ = client.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, err := client.Read(make([]byte, 1))
			var ne net.Error
			timedOut := errors.As(err, &ne) && ne.Timeout()
			if tt.wantReset && (err == nil || timedOut) {
				t.Fatalf("client Read after Remove: %v, want the connection aborted at once", err)
			}
			if !tt.wantReset && !timedOut {
				t.Fatalf("client Read after Remove: %v, want a timeout (nothing resets it)", err)
			}

			// The listener survives: with the VIP back it serves again.
			if err := l.Add(vip); err != nil {
				t.Fatalf("Add again: %v", err)
			}
			inNetns(t, ns, func() error {
				c, err := net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
				if err != nil {
					return err
				}
				return c.Close()
			})
		})
	}
}

// TestLoopbackRemoveResetsDualStackConnections: kube-apiserver (kubeadm's
// default) listens on [::]:6443, so the connections it accepts on an IPv4
// VIP are IPv6 sockets with the IPv4-mapped local address ::ffff:VIP. They
// must be aborted with the VIP too: a SIGTERMed apiserver otherwise hangs on
// a watch whose client, now routed to another node, never answers. IPv6 VIPs
// likewise. Both ends are checked: the accepted (server) socket, which the
// client's RST cannot reach once the VIP is gone, and the client's.
func TestLoopbackRemoveResetsDualStackConnections(t *testing.T) {
	tests := []struct {
		name string
		vip  netip.Prefix
	}{
		{"ipv4 vip, listener on [::]", netip.MustParsePrefix("203.0.113.10/32")},
		{"ipv6 vip, listener on [::]", netip.MustParsePrefix("2001:db8::10/128")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, ns, _ := newTestLoopback(t, nil)
			setTestDiag(t, l, ns)
			if err := l.Add(tt.vip); err != nil {
				t.Fatalf("Add: %v", err)
			}
			var ln net.Listener
			var client, server net.Conn
			inNetns(t, ns, func() error {
				var err error
				// Go's default for ":port": one IPv6 socket for both families.
				if ln, err = net.Listen("tcp", "[::]:0"); err != nil {
					return err
				}
				// An IPv6 address's local route comes from the kernel's
				// addrconf work, just after the add: until then,
				// ENETUNREACH.
				to := netip.AddrPortFrom(tt.vip.Addr(), uint16(ln.Addr().(*net.TCPAddr).Port)).String()
				if !testutil.Poll(10*time.Second, func() bool {
					client, err = net.Dial("tcp", to)
					return err == nil
				}) {
					return fmt.Errorf("dial %s: %w", to, err)
				}
				server, err = ln.Accept()
				return err
			})
			t.Cleanup(func() { ln.Close(); client.Close(); server.Close() })
			if got := sockDomain(t, server); got != unix.AF_INET6 {
				t.Fatalf("accepted socket domain = %d, want AF_INET6 (%d): the test needs a dual-stack listener", got, unix.AF_INET6)
			}
			if got, _ := netip.AddrFromSlice(client.LocalAddr().(*net.TCPAddr).IP); got.Unmap() != tt.vip.Addr() {
				t.Fatalf("client source = %s, want the VIP", got)
			}
			if n := len(connsOn(t, ns, tt.vip.Addr())); n != 2 {
				t.Fatalf("%d connections on the VIP before Remove, want 2 (client and server)", n)
			}

			if err := l.Remove(tt.vip); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			testutil.Eventually(t, "no connection left on the removed VIP", func() bool {
				return len(connsOn(t, ns, tt.vip.Addr())) == 0
			}, func() string { return fmt.Sprint(connsOn(t, ns, tt.vip.Addr())) })
			for _, c := range []struct {
				end  string
				conn net.Conn
			}{{"server", server}, {"client", client}} {
				// Generous: an aborted socket fails at once; only a missed
				// one waits this long.
				_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err := c.conn.Read(make([]byte, 1))
				var ne net.Error
				if err == nil || errors.As(err, &ne) && ne.Timeout() {
					t.Errorf("%s Read after Remove: %v, want the connection aborted", c.end, err)
				}
			}
		})
	}
}

// setTestDiag gives l a sock_diag socket in ns, as NewLoopback does in the
// caller's namespace.
func setTestDiag(t *testing.T, l *Loopback, ns netns.NsHandle) {
	t.Helper()
	d, err := sockDiagAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	l.diag = d
}

// sockDomain returns the address family of c's socket (SO_DOMAIN).
func sockDomain(t *testing.T, c net.Conn) int {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var dom int
	var serr error
	if err := rc.Control(func(fd uintptr) { dom, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatalf("SO_DOMAIN: %v", serr)
	}
	return dom
}

// connsOn lists, through a sock_diag socket of the test's own, the TCP
// sockets in ns other than listeners whose local address is a (IPv4-mapped
// or not), both families, as "family local remote state".
func connsOn(t *testing.T, ns netns.NsHandle, a netip.Addr) []string {
	t.Helper()
	d, err := netlink.NewHandleAt(ns, unix.NETLINK_INET_DIAG)
	if err != nil {
		t.Fatalf("sock_diag handle: %v", err)
	}
	defer d.Close()
	var out []string
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := d.SocketDiagTCP(fam)
		if err != nil {
			t.Fatalf("list TCP sockets (family %d): %v", fam, err)
		}
		for _, s := range socks {
			src, _ := netip.AddrFromSlice(s.ID.Source)
			if s.State == tcpListen || src.Unmap() != a {
				continue
			}
			out = append(out, fmt.Sprintf("%d %s %s state %d", s.Family,
				netip.AddrPortFrom(src, s.ID.SourcePort), net.JoinHostPort(s.ID.Destination.String(), fmt.Sprint(s.ID.DestinationPort)), s.State))
		}
	}
	return out
}

// TestInetDiagReqSerialize pins the layout of struct inet_diag_req_v2 that
// the SOCK_DESTROY request carries: a wrong offset would make the kernel
// look up another (or no) socket, which the netns test sees only as
// "not reset".
func TestInetDiagReqSerialize(t *testing.T) {
	ne := func(v uint32) []byte { b := make([]byte, 4); nl.NativeEndian().PutUint32(b, v); return b }
	tail := slices.Concat(ne(7), ne(0x11223344), ne(0x55667788)) // if, cookie[0], cookie[1]
	id := func(src, dst string) netlink.SocketID {
		return netlink.SocketID{SourcePort: 6443, DestinationPort: 0xabcd,
			Source: net.ParseIP(src), Destination: net.ParseIP(dst),
			Interface: 7, Cookie: [2]uint32{0x11223344, 0x55667788}}
	}
	head := []byte{0, unix.IPPROTO_TCP, 0, 0, 0, 0, 0, 0, 0x19, 0x2b, 0xab, 0xcd}
	zero12 := make([]byte, 12)
	tests := []struct {
		name string
		req  inetDiagReq
		want []byte
	}{
		{"ipv4", inetDiagReq{unix.AF_INET, id("203.0.113.10", "192.0.2.13")},
			slices.Concat(head, []byte{203, 0, 113, 10}, zero12, []byte{192, 0, 2, 13}, zero12, tail)},
		{"ipv4-mapped ipv6", inetDiagReq{unix.AF_INET6, id("::ffff:203.0.113.10", "::ffff:192.0.2.13")},
			slices.Concat(head, net.ParseIP("::ffff:203.0.113.10"), net.ParseIP("::ffff:192.0.2.13"), tail)},
		{"ipv6", inetDiagReq{unix.AF_INET6, id("2001:db8::10", "2001:db8::1")},
			slices.Concat(head, net.ParseIP("2001:db8::10"), net.ParseIP("2001:db8::1"), tail)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := slices.Clone(tt.want)
			want[0] = tt.req.family
			got := tt.req.Serialize()
			if len(got) != tt.req.Len() {
				t.Errorf("len(Serialize()) = %d, Len() = %d", len(got), tt.req.Len())
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Serialize() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
