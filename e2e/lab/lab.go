// Package lab builds a throwaway BGP anycast lab out of network namespaces:
// one upstream router (FRR or BIRD 2) on a bridge, N control-plane nodes each
// running etcd, a real kube-apiserver, a TCP responder and vipcast, and a
// client namespace behind the router. Every lab gets unique namespace names
// and is torn down by PID and namespace name, even when the test fails.
package lab

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Router selects the upstream router implementation.
type Router string

const (
	FRR  Router = "frr"
	BIRD Router = "bird"
)

// Addressing and numbering of every lab.
const (
	RouterASN     = 65000
	NodeASN       = 64512
	ResponderPort = 8080
	APIServerPort = 6443
)

var (
	VIP4        = netip.MustParsePrefix("203.0.113.10/32")
	VIP6        = netip.MustParsePrefix("2001:db8:ffff::10/128")
	RouterAddr4 = netip.MustParseAddr("192.0.2.1")
	RouterAddr6 = netip.MustParseAddr("2001:db8:2::1")
	ClientAddr4 = netip.MustParseAddr("198.51.100.2")
	ClientAddr6 = netip.MustParseAddr("2001:db8:3::2")
)

// NodeAddr4 is node i's (1-based) address on the router's bridge.
func NodeAddr4(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}) }

// NodeAddr6 is node i's IPv6 address on the router's bridge.
func NodeAddr6(i int) netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("2001:db8:2::%x", 0x10+i))
}

// Options describe one lab. Zero values take the defaults noted.
type Options struct {
	Router Router
	Nodes  int // default 3
	// IPv6 adds IPv6 peering (router 2001:db8:2::1, nodes 2001:db8:2::1N)
	// and the VIP 2001:db8:ffff::10/128 to every node.
	IPv6 bool
	// MD5Password, if set, protects every session with TCP MD5 on both ends.
	MD5Password string

	HoldTime      time.Duration // default 3s
	KeepaliveTime time.Duration // default 1s
	ConnectRetry  time.Duration // default 1s

	HealthInterval time.Duration // default 100ms
	HealthTimeout  time.Duration // default 80ms
	Rise, Fall     int           // default 3, 2
	TimeoutFall    int           // default 4, and never below Fall
	// DampingHalfLife 0 disables damping (the lab default, so scenarios can
	// fail the same node repeatedly).
	DampingHalfLife time.Duration
	DrainPeriod     time.Duration // default 1s
	RemoveDelay     time.Duration // default 500ms

	// ShutdownDelay is kube-apiserver's --shutdown-delay-duration.
	ShutdownDelay time.Duration

	Communities []string // default ["64512:100"]
	MED         int      // default 10

	// BFD, if set, runs BFD on every node session: vipcast's peers get
	// `bfd: {enabled: true, ...}` and the router runs BFD towards every node
	// (FRR: bfdd profile "fast" on the peer groups; BIRD: protocol bfd and
	// `bfd on` in the BGP templates).
	BFD *BFDOptions

	// DynamicPeers (FRR only) makes the router accept the nodes through
	// `bgp listen range` on the node subnets instead of one neighbor line
	// each: FRR creates a node's neighbor, and its BFD session, only once
	// that node's BGP connection arrives.
	DynamicPeers bool

	// GracefulShutdownWait, if set, turns on vipcast's RFC 8326 graceful
	// shutdown (policy.gracefulShutdown) with this wait; 0 turns it off,
	// so the other scenarios see a drain or SIGTERM withdraw at once.
	GracefulShutdownWait time.Duration

	// LastResort is vipcast's policy.lastResort as a YAML flow mapping,
	// e.g. "{enabled: true, prepend: 4}". Empty turns it off, so the other
	// scenarios see a failing node withdraw, as they were written for.
	LastResort string

	// Kubeconfig gives each node's vipcast node.name and a kubeconfig for
	// its own apiserver (admin token), and creates the Node objects, so
	// vipcast records Kubernetes Events (see kube.go).
	Kubeconfig bool

	// Cluster makes the nodes one Kubernetes control plane behind the VIP:
	// one etcd cluster, apiservers with lab-CA certificates listing the
	// VIP, and per node kube-controller-manager, kube-scheduler, containerd
	// and a kubelet reaching the API through the VIP; New returns when
	// every Node is Ready (see cluster.go).
	Cluster bool

	// ControlPlane makes the nodes' apiservers one control plane behind
	// the VIP, as Cluster does (one etcd cluster, lab-CA certificates
	// listing the VIP, the admin kubeconfig through the VIP,
	// Lab.ClusterKubeconfig), without containerd, kubelets and controllers:
	// a few seconds instead of a minute. With Kubeconfig, vipcast's
	// kubeconfig points at the VIP, as a real cluster's would.
	ControlPlane bool

	// Bootstrap (implies Cluster) makes New stop once the network, the
	// router and the cluster's PKI exist: no etcd, apiserver or vipcast
	// runs anywhere, and the test drives docs/install.md's bootstrap
	// itself (see bootstrap.go).
	Bootstrap bool
}

// BFDOptions are the BFD timers of both ends: transmit and receive
// interval, and detect multiplier.
type BFDOptions struct {
	Interval   time.Duration // default 100ms; FRR and BIRD take whole milliseconds
	Multiplier int           // default 3
	Strict     bool          // vipcast's bfd.strict: BGP only while BFD is Up
}

// DetectTime is Interval x Multiplier: how long either end waits without a
// packet before declaring the session down.
func (b *BFDOptions) DetectTime() time.Duration { return b.Interval * time.Duration(b.Multiplier) }

// HoldExpiryFloor is the soonest a router's hold timer can drop a silent
// node's session, measured from the moment the node went silent: the last
// keepalive may have left up to KeepaliveTime earlier, and BIRD shortens
// every BGP timer, the hold timer included, by a random 0-25% (RFC 4271
// section 10 jitter, bgp_start_timer: seen in CI, BIRD dropped a session
// 2.29s after the last of its 1s keepalives, hold 3s); less 300ms for
// scheduling. A withdraw sooner than this was not the hold timer.
func (o Options) HoldExpiryFloor() time.Duration {
	hold := o.HoldTime
	if o.Router == BIRD {
		hold = hold * 3 / 4
	}
	return hold - o.KeepaliveTime - 300*time.Millisecond
}

// sharedControlPlane: one etcd cluster and the lab CA's certificates.
func (o Options) sharedControlPlane() bool { return o.Cluster || o.ControlPlane }

func (o *Options) defaults() {
	if o.Bootstrap {
		o.Cluster = true
	}
	if o.Router == "" {
		o.Router = FRR
	}
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.HoldTime, 3*time.Second)
	def(&o.KeepaliveTime, time.Second)
	def(&o.ConnectRetry, time.Second)
	def(&o.HealthInterval, 100*time.Millisecond)
	def(&o.HealthTimeout, 80*time.Millisecond)
	def(&o.DrainPeriod, time.Second)
	def(&o.RemoveDelay, 500*time.Millisecond)
	if o.Rise == 0 {
		o.Rise = 3
	}
	if o.Fall == 0 {
		o.Fall = 2
	}
	if o.TimeoutFall == 0 {
		o.TimeoutFall = max(4, o.Fall)
	}
	if o.Communities == nil {
		o.Communities = []string{"64512:100"}
	}
	if o.MED == 0 {
		o.MED = 10
	}
	if o.BFD != nil {
		b := *o.BFD // the caller's value stays as given
		def(&b.Interval, 100*time.Millisecond)
		if b.Multiplier == 0 {
			b.Multiplier = 3
		}
		o.BFD = &b
	}
}

// Lab is a running lab.
type Lab struct {
	Opts Options
	ID   string // namespace name prefix, "vc" + 6 hex digits
	Dir  string // configs, data and logs

	t         T
	routerNS  string
	clientNS  string
	router    routerImpl
	nodes     []*Node
	stateFile string
	saKey     string
	saPub     string
	tokens    string
	caFile    string // cluster mode: the lab CA and the apiservers' serving pair
	apiCert   string
	apiKey    string
	closeOnce sync.Once
	ready     bool // New finished; later failures are dumped by DumpOnFailure
}

var (
	labsMu sync.Mutex
	labs   = map[*Lab]bool{}
)

// BinDir holds kube-apiserver and vipcast: $VIPCAST_E2E_BIN, or e2e/.cache/bin.
func BinDir() string {
	if d := os.Getenv("VIPCAST_E2E_BIN"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(filepath.Dir(file)), ".cache", "bin")
}

// VipcastBin is $VIPCAST_BIN, or vipcast in BinDir.
func VipcastBin() string {
	if b := os.Getenv("VIPCAST_BIN"); b != "" {
		return b
	}
	return filepath.Join(BinDir(), "vipcast")
}

// KubeAPIServerBin is $VIPCAST_KUBE_APISERVER, or kube-apiserver in BinDir.
func KubeAPIServerBin() string {
	if b := os.Getenv("VIPCAST_KUBE_APISERVER"); b != "" {
		return b
	}
	return filepath.Join(BinDir(), "kube-apiserver")
}

// Missing lists what this machine lacks to run a lab with router r:
// root, the built binaries, the router's and the lab's tools.
func Missing(r Router) []string {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "not running as root (network namespaces need it)")
	}
	for _, b := range []string{KubeAPIServerBin(), VipcastBin()} {
		if st, err := os.Stat(b); err != nil || st.IsDir() {
			missing = append(missing, fmt.Sprintf("%s not built (run e2e/tools/build.sh)", b))
		}
	}
	tools := []string{"ip", "etcd", "socat", "sysctl"}
	switch r {
	case FRR:
		tools = append(tools, "vtysh", "/usr/lib/frr/zebra", "/usr/lib/frr/bgpd", "/usr/lib/frr/bfdd")
	case BIRD:
		tools = append(tools, "bird", "birdc")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" not installed")
		}
	}
	return missing
}

// Require skips t, loudly, unless VIPCAST_E2E=1 is set and nothing is Missing.
func Require(t T, r Router) {
	t.Helper()
	var missing []string
	if os.Getenv("VIPCAST_E2E") != "1" {
		missing = append(missing, "VIPCAST_E2E=1 is not set")
	}
	missing = append(missing, Missing(r)...)
	if len(missing) > 0 {
		t.Skipf("\n"+strings.Repeat("#", 78)+"\n# SKIPPING vipcast e2e (%s): %s\n"+
			"# Run: sudo apt-get install -y --no-install-recommends frr bird2 etcd-server socat\n"+
			"#      cd e2e && sudo VIPCAST_E2E=1 go test -count=1 -timeout 15m ./...   (builds the binaries)\n"+
			"# (or `make e2e` at the top level)\n"+strings.Repeat("#", 78),
			r, strings.Join(missing, "; "))
	}
}

// New builds and starts a lab and waits until every node's VIP is routed
// through it. Everything is torn down in t.Cleanup.
func New(t T, opts Options) *Lab {
	t.Helper()
	opts.defaults()
	if opts.DynamicPeers && opts.Router != FRR {
		t.Fatalf("lab: DynamicPeers is implemented for FRR only, not %s", opts.Router)
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	l := &Lab{Opts: opts, ID: "vc" + hex.EncodeToString(b[:]), t: t}
	var err error
	l.Dir, err = os.MkdirTemp("", "vipcast-e2e-"+l.ID+"-")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(l.Dir, 0o755) // FRR daemons run as frr and must reach their directory
	labsMu.Lock()
	labs[l] = true
	labsMu.Unlock()
	if err := os.MkdirAll(stateDir, 0o755); err == nil {
		l.stateFile = filepath.Join(stateDir, l.ID)
		_ = os.WriteFile(l.stateFile, []byte(fmt.Sprintf("%d %s\n", os.Getpid(), l.Dir)), 0o644)
	}
	t.Cleanup(l.Close)

	start := time.Now()
	if err := l.buildNetwork(); err != nil {
		t.Fatalf("lab network: %v", err)
	}
	if err := l.writeSharedFiles(); err != nil {
		t.Fatalf("lab files: %v", err)
	}
	if opts.sharedControlPlane() {
		if err := l.writeClusterPKI(); err != nil {
			t.Fatalf("lab PKI: %v", err)
		}
		if err := l.appendNodeTokens(); err != nil {
			t.Fatalf("lab tokens: %v", err)
		}
	}
	switch opts.Router {
	case FRR:
		l.router = &frrRouter{lab: l}
	case BIRD:
		l.router = &birdRouter{lab: l}
	default:
		t.Fatalf("unknown router %q", opts.Router)
	}
	if err := l.router.start(); err != nil {
		t.Fatalf("router: %v", err)
	}
	if opts.Bootstrap {
		// The admin's kubeconfig through the VIP exists from the start,
		// as kubeadm's admin.conf does; it works once an apiserver does.
		tok, err := l.AdminToken()
		if err == nil {
			err = writeKubeconfig(l.ClusterKubeconfig(), vipServer(), l.caFile, "admin", tok)
		}
		if err != nil {
			t.Fatalf("bootstrap admin kubeconfig: %v", err)
		}
		l.ready = true
		t.Logf("lab %s (%s, %d nodes, bootstrap: nothing running on the nodes) ready in %v; files in %s",
			l.ID, opts.Router, opts.Nodes, time.Since(start).Round(time.Millisecond), l.Dir)
		return l
	}
	for _, n := range l.nodes {
		if err := n.startEtcd(); err != nil {
			t.Fatal(err)
		}
		if err := n.startResponder(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range l.nodes {
		if err := n.waitEtcd(15 * time.Second); err != nil {
			t.Fatal(err)
		}
		if err := n.StartAPIServer(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range l.nodes {
		if err := n.WaitAPIServerReady(60 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range l.nodes {
		if err := n.StartVipcast(); err != nil {
			t.Fatal(err)
		}
	}
	if opts.ControlPlane && !opts.Cluster {
		tok, err := l.AdminToken()
		if err == nil {
			err = writeKubeconfig(l.ClusterKubeconfig(), vipServer(), l.caFile, "admin", tok)
		}
		if err != nil {
			t.Fatalf("admin kubeconfig: %v", err)
		}
	}
	l.WaitAllRouted(t, 30*time.Second)
	if opts.BFD != nil {
		if err := l.waitBFDSettled(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		l.WaitAllRouted(t, 30*time.Second)
	}
	if opts.Cluster {
		if err := l.startCluster(); err != nil {
			t.Fatalf("cluster: %v", err)
		}
	}
	l.ready = true
	bfd := "off"
	if opts.BFD != nil {
		bfd = fmt.Sprintf("%v x %d", opts.BFD.Interval, opts.BFD.Multiplier)
	}
	t.Logf("lab %s (%s, %d nodes, ipv6=%v, md5=%v, bfd=%s, cluster=%v) ready in %v; files in %s",
		l.ID, opts.Router, opts.Nodes, opts.IPv6, opts.MD5Password != "", bfd, opts.Cluster, time.Since(start).Round(time.Millisecond), l.Dir)
	return l
}

// Nodes returns the nodes, index 0 is n1.
func (l *Lab) Nodes() []*Node { return l.nodes }

// Node returns node i, 1-based.
func (l *Lab) Node(i int) *Node { return l.nodes[i-1] }

// VIPs are the prefixes every node advertises.
func (l *Lab) VIPs() []netip.Prefix {
	if l.Opts.IPv6 {
		return []netip.Prefix{VIP4, VIP6}
	}
	return []netip.Prefix{VIP4}
}

// Addrs returns the bridge addresses (of the family of p) of the given nodes.
func (l *Lab) Addrs(p netip.Prefix, nodes ...*Node) []netip.Addr {
	out := make([]netip.Addr, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, n.AddrFor(p))
	}
	return out
}

// AllAddrs is Addrs of every node.
func (l *Lab) AllAddrs(p netip.Prefix) []netip.Addr { return l.Addrs(p, l.nodes...) }

// Except returns every node but the given ones.
func (l *Lab) Except(skip ...*Node) []*Node {
	var out []*Node
	for _, n := range l.nodes {
		keep := true
		for _, s := range skip {
			if n == s {
				keep = false
			}
		}
		if keep {
			out = append(out, n)
		}
	}
	return out
}

// WaitAllRouted waits until every VIP has every node as a nexthop.
func (l *Lab) WaitAllRouted(t T, timeout time.Duration) {
	t.Helper()
	for _, p := range l.VIPs() {
		l.WaitNexthops(t, p, l.AllAddrs(p), timeout)
	}
}

// Restore brings a lab back to its steady state after a scenario: links
// up, stopped processes continued, dead ones restarted, the right MD5
// password back; then waits until every node is routed again.
func (l *Lab) Restore(t T) {
	t.Helper()
	if !l.router.alive() {
		if err := l.router.start(); err != nil {
			t.Fatalf("restore router: %v", err)
		}
	}
	for _, n := range l.nodes {
		if n.linkDown {
			if err := n.LinkUp(); err != nil {
				t.Fatalf("restore: %v", err)
			}
		}
		for _, p := range []*proc{n.etcd, n.apiserver, n.vipcast} {
			if p.isStopped() {
				_ = p.signal(syscallSIGCONT)
			}
		}
		if !n.etcd.alive() {
			if err := n.startEtcd(); err != nil {
				t.Fatal(err)
			}
			if err := n.waitEtcd(15 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
		if !n.responder.alive() {
			if err := n.startResponder(); err != nil {
				t.Fatal(err)
			}
		}
		if !n.apiserver.alive() {
			if err := n.StartAPIServer(); err != nil {
				t.Fatal(err)
			}
		}
		if n.password != l.Opts.MD5Password {
			n.vipcast.stop(5 * time.Second)
			if err := n.SetPassword(l.Opts.MD5Password); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, n := range l.nodes {
		if err := n.WaitAPIServerReady(60 * time.Second); err != nil {
			t.Fatal(err)
		}
		if !n.vipcast.alive() {
			if err := n.StartVipcast(); err != nil {
				t.Fatal(err)
			}
		}
	}
	l.WaitAllRouted(t, 30*time.Second)
}

// DumpOnFailure dumps the lab's state (router tables, FIB, logs) when t
// fails; call it at the start of each scenario sharing the lab.
func (l *Lab) DumpOnFailure(t T) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s", l.Dump())
		}
	})
}

// Close tears the lab down: processes by PID, then namespaces by name.
// On failure it first dumps the state the test needs to be understood.
func (l *Lab) Close() {
	l.closeOnce.Do(func() {
		if !l.ready && l.t.Failed() {
			l.t.Logf("%s", l.Dump())
		}
		if l.Opts.Cluster {
			l.stopCluster()
		}
		for _, n := range l.nodes {
			for _, p := range []*proc{n.vipcast, n.responder, n.apiserver, n.etcd} {
				if p != nil {
					p.kill()
				}
			}
		}
		if l.router != nil {
			l.router.kill()
		}
		for _, ns := range l.namespaces() {
			delNetns(ns)
		}
		if os.Getenv("VIPCAST_E2E_KEEP") == "" {
			_ = os.RemoveAll(l.Dir)
		} else {
			l.t.Logf("VIPCAST_E2E_KEEP: lab files kept in %s", l.Dir)
		}
		if l.stateFile != "" {
			_ = os.Remove(l.stateFile)
		}
		labsMu.Lock()
		delete(labs, l)
		labsMu.Unlock()
	})
}

func (l *Lab) namespaces() []string {
	out := []string{l.routerNS, l.clientNS}
	for _, n := range l.nodes {
		out = append(out, n.NS)
	}
	return out
}
