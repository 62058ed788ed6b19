//go:build linux

package bfd

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/vipcast/vipcast/peers/testutil"
)

// Interop tests: our Manager in one network namespace, FRR's bfdd or
// BIRD 2 in another, connected by a veth pair on 192.0.2.0/24. They need
// root and the daemons; otherwise they skip loudly.

var nsSeq atomic.Uint32

type labNet struct {
	usNS, themNS     string
	usIf, themIf     string
	usAddr, themAddr netip.Addr
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func requireRoot(t *testing.T, bins ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP (interop): needs root for network namespaces")
	}
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("SKIP (interop): %s not installed: %v", b, err)
		}
	}
}

// newLabNet creates two namespaces joined by a veth pair. Names are unique
// per run; everything is removed by t.Cleanup.
func newLabNet(t *testing.T) *labNet {
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, nsSeq.Add(1))
	n := &labNet{
		usNS: "bfdus" + id, themNS: "bfdthem" + id,
		usIf: "bfu" + id, themIf: "bft" + id,
		usAddr: netip.MustParseAddr("192.0.2.1"), themAddr: netip.MustParseAddr("192.0.2.2"),
	}
	run(t, "ip", "netns", "add", n.usNS)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.usNS).Run() })
	run(t, "ip", "netns", "add", n.themNS)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.themNS).Run() })
	run(t, "ip", "link", "add", n.usIf, "netns", n.usNS, "type", "veth", "peer", "name", n.themIf, "netns", n.themNS)
	run(t, "ip", "-n", n.usNS, "addr", "add", n.usAddr.String()+"/24", "dev", n.usIf)
	run(t, "ip", "-n", n.themNS, "addr", "add", n.themAddr.String()+"/24", "dev", n.themIf)
	for _, x := range [][2]string{{n.usNS, n.usIf}, {n.themNS, n.themIf}, {n.usNS, "lo"}, {n.themNS, "lo"}} {
		run(t, "ip", "-n", x[0], "link", "set", x[1], "up")
	}
	return n
}

// newManagerInNS creates a Manager whose sockets live in namespace ns: the
// sockets are opened on a locked OS thread switched into it.
func newManagerInNS(t *testing.T, ns string, cfg Config) *testManager {
	t.Helper()
	var m *testManager
	func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			t.Fatal(err)
		}
		defer orig.Close()
		target, err := netns.GetFromName(ns)
		if err != nil {
			runtime.UnlockOSThread()
			t.Fatal(err)
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			t.Fatal(err)
		}
		defer func() {
			// Leave the thread locked (it dies with the goroutine) if
			// it cannot be switched back.
			if err := netns.Set(orig); err == nil {
				runtime.UnlockOSThread()
			}
		}()
		cfg.Port = PortSingleHop
		// Interop, not damping, is under test: on a starved machine
		// 100ms x 3 sessions flap by themselves, and five flaps would
		// hold Up back for the default minute.
		if cfg.DampHold == 0 {
			cfg.DampHold = time.Second
		}
		m = startManager(t, cfg)
	}()
	return m
}

// linkDownUp takes the peer's end of the veth down, measures how long our
// session takes to go Down, then brings it up and waits for Up again.
// waitFast waits for the session to run at the negotiated fast rate
// (after the poll sequence that follows Up) with the peer Up too.
func waitFast(t *testing.T, m *testManager, peerState func() string) {
	t.Helper()
	testutil.Eventually(t, "both ends Up at 100ms x 3", func() bool {
		st := m.Sessions()[0]
		return st.State == StateUp && st.TxInterval == 100*time.Millisecond && st.DetectTime == 300*time.Millisecond &&
			!st.PollActive && peerState() == "up"
	})
}

func linkDownUp(t *testing.T, n *labNet, m *testManager, peerState func() string) time.Duration {
	t.Helper()
	waitFast(t, m, peerState)
	drain(m)
	cut := time.Now()
	run(t, "ip", "-n", n.themNS, "link", "set", n.themIf, "down")
	c := m.waitState(t, StateDown, 2*time.Second)
	took := c.At.Sub(cut)
	if c.Diag != DiagControlDetectionTimeExpired || !c.Failed() {
		t.Errorf("down change %+v, want diag ControlDetectionTimeExpired", c)
	}
	st := m.Sessions()[0]
	t.Logf("link down -> our session Down after %v (100ms x 3; last packet %v before the cut, Down %v after it; remote DesiredMinTx %v)",
		took, cut.Sub(st.LastRx), c.At.Sub(st.LastRx), st.RemoteDesiredTx)
	// The time itself is the benchmark's to judge (make bench); on a
	// starved CI core the ip command alone can start 150ms late.
	start := time.Now()
	run(t, "ip", "-n", n.themNS, "link", "set", n.themIf, "up")
	m.waitState(t, StateUp, 15*time.Second)
	t.Logf("link up -> Up again after %v", time.Since(start))
	testutil.Eventually(t, "peer Up after link up", func() bool { return peerState() == "up" })
	return took
}

// stopDaemon sends SIGTERM to the daemon named by a pid file and waits for
// it to exit (SIGKILL after 2 s), so its files can be removed afterwards.
func stopDaemon(pidFile string) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	gone := func() bool { return syscall.Kill(pid, 0) != nil }
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if testutil.Poll(2*time.Second, gone) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	testutil.Poll(2*time.Second, gone)
}

func drain(m *testManager) {
	for {
		select {
		case <-m.changes:
		default:
			return
		}
	}
}

func interopSession(peer netip.Addr) SessionConfig {
	return SessionConfig{Peer: peer, DesiredMinTx: 100 * time.Millisecond,
		RequiredMinRx: 100 * time.Millisecond, DetectMult: 3}
}

func TestInteropFRR(t *testing.T) {
	const bfdd = "/usr/lib/frr/bfdd"
	requireRoot(t, bfdd, "vtysh", "ip")
	n := newLabNet(t)
	// Not t.TempDir: its parent is 0700 and bfdd drops privileges to frr.
	dir, err := os.MkdirTemp("", "bfd-frr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	run(t, "chown", "frr:frr", dir)
	run(t, "ip", "netns", "exec", n.themNS, bfdd, "-d", "-u", "frr", "-g", "frr", "-P", "0", "-f", "/dev/null",
		"-i", dir+"/bfdd.pid", "-z", dir+"/zserv.api", "--vty_socket", dir, "--bfdctl", dir+"/bfdd.sock",
		"--log", "file:"+dir+"/bfdd.log")
	t.Cleanup(func() { stopDaemon(dir + "/bfdd.pid") })
	conf := fmt.Sprintf("bfd\n peer %s local-address %s\n  receive-interval 100\n  transmit-interval 100\n  detect-multiplier 3\n !\n!\n",
		n.usAddr, n.themAddr)
	if err := os.WriteFile(filepath.Join(dir, "frr.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "bfdd vty socket", func() bool {
		_, err := os.Stat(filepath.Join(dir, "bfdd.vty"))
		return err == nil
	})
	run(t, "vtysh", "--vty_socket", dir, "-f", filepath.Join(dir, "frr.conf"))

	frrPeer := func() (peer map[string]any) {
		out, err := exec.Command("vtysh", "--vty_socket", dir, "-c", "show bfd peers json").Output()
		if err != nil {
			return nil
		}
		var peers []map[string]any
		if json.Unmarshal(out, &peers) != nil || len(peers) == 0 {
			return nil
		}
		return peers[0]
	}
	frrState := func() string {
		p := frrPeer()
		if p == nil {
			return ""
		}
		s, _ := p["status"].(string)
		return s
	}

	m := newManagerInNS(t, n.usNS, Config{})
	start := time.Now()
	if _, err := m.Add(ctxT(t), interopSession(n.themAddr)); err != nil {
		t.Fatal(err)
	}
	m.waitState(t, StateUp, 5*time.Second)
	t.Logf("Up with FRR after %v", time.Since(start))
	waitFast(t, m, frrState)
	p := frrPeer()
	t.Logf("FRR view: status=%v remote-receive-interval=%v remote-transmit-interval=%v remote-detect-multiplier=%v",
		p["status"], p["remote-receive-interval"], p["remote-transmit-interval"], p["remote-detect-multiplier"])
	if p["remote-transmit-interval"] != float64(100) || p["remote-receive-interval"] != float64(100) {
		t.Errorf("FRR did not learn our 100ms intervals: %v", p)
	}
	st := m.Sessions()[0]
	if st.TxInterval != 100*time.Millisecond || st.DetectTime != 300*time.Millisecond || st.PollActive {
		t.Errorf("our negotiated timers: %+v", st.SessionInfo)
	}

	for i := range 2 {
		took := linkDownUp(t, n, m, frrState)
		t.Logf("FRR round %d: link down -> Down in %v", i+1, took)
	}
	checkInteropDrops(t, "FRR", m.Counters().Dropped)
}

func TestInteropBIRD(t *testing.T) {
	requireRoot(t, "bird", "birdc", "ip")
	n := newLabNet(t)
	dir := t.TempDir()
	conf := fmt.Sprintf(`log "%s/bird.log" all;
router id %s;
protocol device { }
protocol bfd {
	interface "*" {
		min rx interval 100 ms;
		min tx interval 100 ms;
		multiplier 3;
	};
	neighbor %s local %s;
}
`, dir, n.themAddr, n.usAddr, n.themAddr)
	if err := os.WriteFile(filepath.Join(dir, "bird.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctl := filepath.Join(dir, "bird.ctl")
	run(t, "ip", "netns", "exec", n.themNS, "bird", "-c", filepath.Join(dir, "bird.conf"), "-s", ctl, "-P", dir+"/bird.pid")
	t.Cleanup(func() { stopDaemon(dir + "/bird.pid") })
	birdState := func() string {
		out, err := exec.Command("birdc", "-s", ctl, "show", "bfd", "sessions").Output()
		if err != nil {
			return ""
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) >= 3 && f[0] == n.usAddr.String() {
				return strings.ToLower(f[2])
			}
		}
		return ""
	}

	m := newManagerInNS(t, n.usNS, Config{})
	start := time.Now()
	if _, err := m.Add(ctxT(t), interopSession(n.themAddr)); err != nil {
		t.Fatal(err)
	}
	m.waitState(t, StateUp, 5*time.Second)
	t.Logf("Up with BIRD after %v", time.Since(start))
	waitFast(t, m, birdState)
	out, _ := exec.Command("birdc", "-s", ctl, "show", "bfd", "sessions").Output()
	t.Logf("BIRD view:\n%s", out)
	st := m.Sessions()[0]
	if st.TxInterval != 100*time.Millisecond || st.DetectTime != 300*time.Millisecond || st.PollActive {
		t.Errorf("our negotiated timers: %+v", st.SessionInfo)
	}
	for i := range 2 {
		took := linkDownUp(t, n, m, birdState)
		t.Logf("BIRD round %d: link down -> Down in %v", i+1, took)
	}
	checkInteropDrops(t, "BIRD", m.Counters().Dropped)
}

// checkInteropDrops: a real router's packets are never malformed, sent with
// the wrong TTL or failing authentication. One naming an unknown
// discriminator can race a link flap on a starved host (seen once in CI,
// never on a quiet one), so it is logged, not failed.
func checkInteropDrops(t *testing.T, router string, d DropCounters) {
	t.Helper()
	if d.UnknownDiscriminator != 0 {
		t.Logf("%s: %d packet(s) for an unknown discriminator", router, d.UnknownDiscriminator)
	}
	d.UnknownDiscriminator = 0
	if d != (DropCounters{}) {
		t.Errorf("drops with %s: %+v", router, d)
	}
}
