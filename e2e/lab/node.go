package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const syscallSIGCONT = syscall.SIGCONT

// Node is one control-plane node namespace.
type Node struct {
	Index int    // 1-based
	Name  string // n1, n2, ...
	NS    string // network namespace name
	Addr4 netip.Addr
	Addr6 netip.Addr
	Dir   string

	lab                                 *Lab
	etcd, apiserver, vipcast, responder *proc
	password                            string
	linkDown                            bool
	baseline                            bool // config for the bench's baseline build (RestartVipcastWith)
	cluster                             clusterNode
	kubeletToken                        string
}

// AddrFor returns the node's address of p's family.
func (n *Node) AddrFor(p netip.Prefix) netip.Addr {
	if p.Addr().Is6() {
		return n.Addr6
	}
	return n.Addr4
}

func (n *Node) routerLink() string { return fmt.Sprintf("v%d", n.Index) }

// --- etcd ---

func (n *Node) startEtcd() error {
	if n.etcd == nil && n.lab.Opts.sharedControlPlane() {
		// One etcd cluster of every node, as kubeadm's stacked etcd: peers
		// on the node addresses, each apiserver on its local member.
		var initial []string
		for _, m := range n.lab.nodes {
			initial = append(initial, fmt.Sprintf("%s=http://%s:2380", m.Name, m.Addr4))
		}
		n.etcd = newProc(n.Name+"/etcd", n.NS, filepath.Join(n.Dir, "etcd.log"), "etcd",
			"--name", n.Name,
			"--data-dir", filepath.Join(n.Dir, "etcd"),
			"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:2379,http://%s:2379", n.Addr4),
			"--advertise-client-urls", fmt.Sprintf("http://%s:2379", n.Addr4),
			"--listen-peer-urls", fmt.Sprintf("http://%s:2380", n.Addr4),
			"--initial-advertise-peer-urls", fmt.Sprintf("http://%s:2380", n.Addr4),
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-token", n.lab.ID,
			"--initial-cluster-state", "new",
			"--log-level", "warn")
	}
	if n.etcd == nil {
		n.etcd = newProc(n.Name+"/etcd", n.NS, filepath.Join(n.Dir, "etcd.log"), "etcd",
			"--name", n.Name,
			"--data-dir", filepath.Join(n.Dir, "etcd"),
			"--listen-client-urls", "http://127.0.0.1:2379",
			"--advertise-client-urls", "http://127.0.0.1:2379",
			"--listen-peer-urls", "http://127.0.0.1:2380",
			"--initial-advertise-peer-urls", "http://127.0.0.1:2380",
			"--initial-cluster", n.Name+"=http://127.0.0.1:2380",
			"--log-level", "warn")
	}
	return n.etcd.start()
}

func (n *Node) waitEtcd(timeout time.Duration) error {
	client := n.httpClient(nil, time.Second)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := client.Get("http://127.0.0.1:2379/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if !n.etcd.alive() {
			return fmt.Errorf("%s: etcd exited: %v\n%s", n.Name, n.etcd.exitErr(), tail(n.etcd.logPath, 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s: etcd not healthy after %v\n%s", n.Name, timeout, tail(n.etcd.logPath, 20))
}

// StopEtcd stops etcd (SIGTERM, SIGKILL after 5s) and waits for it.
func (n *Node) StopEtcd() { n.etcd.stop(5 * time.Second) }

// StartEtcd starts etcd again and waits until it is healthy.
func (n *Node) StartEtcd() error {
	if err := n.startEtcd(); err != nil {
		return err
	}
	return n.waitEtcd(15 * time.Second)
}

// --- kube-apiserver ---

// CertFile is the apiserver's self-signed serving certificate (with its CA),
// generated on first start.
// In cluster mode it is the lab CA that signed every apiserver's certificate.
func (n *Node) CertFile() string {
	if n.lab.caFile != "" {
		return n.lab.caFile
	}
	return filepath.Join(n.Dir, "pki", "apiserver.crt")
}

// clusterWatchGrace is the cluster's --shutdown-watch-termination-grace-period:
// how long a stopping apiserver waits for its watches to end once they are
// told to (they end at once; the bound is for a client that never reads).
const clusterWatchGrace = 5 * time.Second

// StartAPIServer starts kube-apiserver on 0.0.0.0:6443; it does not wait.
func (n *Node) StartAPIServer() error {
	if n.apiserver == nil {
		l := n.lab
		args := []string{KubeAPIServerBin(),
			"--etcd-servers=http://127.0.0.1:2379",
			"--bind-address=0.0.0.0",
			fmt.Sprintf("--secure-port=%d", APIServerPort),
			"--advertise-address=" + n.Addr4.String(),
			"--cert-dir=" + filepath.Join(n.Dir, "pki"),
			"--service-account-issuer=https://kubernetes.default.svc",
			"--service-account-key-file=" + l.saPub,
			"--service-account-signing-key-file=" + l.saKey,
			"--service-cluster-ip-range=203.0.113.128/25",
			"--authorization-mode=Node,RBAC",
			"--token-auth-file=" + l.tokens,
			"--shutdown-delay-duration=" + l.Opts.ShutdownDelay.String(),
			"--profiling=false",
		}
		if l.Opts.sharedControlPlane() {
			for i, a := range args {
				if strings.HasPrefix(a, "--cert-dir=") {
					args[i] = "--tls-cert-file=" + l.apiCert
				}
			}
			args = append(args, "--tls-private-key-file="+l.apiKey, "--client-ca-file="+l.caFile,
				"--kubelet-preferred-address-types=InternalIP",
				// The cluster's kubelets, controllers and clients hold
				// watches through the VIP. Without this the apiserver
				// leaves them open after the shutdown delay and
				// http.Server.Shutdown waits its full timeout (the 60s
				// --request-timeout) for them: a SIGTERMed apiserver
				// exits only after delay + 60s. With it, every watch
				// ends when the delay is over (the clients re-watch
				// through the VIP, which has already moved them to the
				// other apiservers) and the apiserver exits at once.
				"--shutdown-watch-termination-grace-period="+clusterWatchGrace.String(),
				// Its [graceful-termination] events, timed.
				"--v=1")
		}
		n.apiserver = newProc(n.Name+"/kube-apiserver", n.NS, filepath.Join(n.Dir, "kube-apiserver.log"), args...)
	}
	return n.apiserver.start()
}

// KillAPIServer sends sig to kube-apiserver and returns when it was sent.
func (n *Node) KillAPIServer(sig syscall.Signal) (time.Time, error) {
	err := n.apiserver.signal(sig)
	return time.Now(), err
}

// APIServerLog is kube-apiserver's log file.
func (n *Node) APIServerLog() string { return filepath.Join(n.Dir, "kube-apiserver.log") }

// APIServerConns lists the TCP connections of the node's port 6443 with
// their queues and timers (`ss -tnoi`): what a stopping apiserver may be
// waiting for.
func (n *Node) APIServerConns() string {
	out, err := n.Exec("ss", "-tnoi", "state", "established", "( sport = :6443 )")
	if err != nil {
		return err.Error()
	}
	return out
}

// DumpAPIServerGoroutines sends a hanging kube-apiserver SIGQUIT (the Go
// runtime writes every goroutine's stack to its log, then exits) and says
// where to read them.
func (n *Node) DumpAPIServerGoroutines() string {
	if err := n.apiserver.signal(syscall.SIGQUIT); err != nil {
		return err.Error()
	}
	if err := n.apiserver.wait(10 * time.Second); err != nil {
		return err.Error()
	}
	return "kube-apiserver's goroutines (SIGQUIT) are at the end of " + n.APIServerLog() + " (VIPCAST_E2E_KEEP=1 keeps it)"
}

// APIServerAlive reports whether the kube-apiserver process exists.
func (n *Node) APIServerAlive() bool { return n.apiserver.alive() }

// WaitAPIServerExit waits for kube-apiserver to exit.
func (n *Node) WaitAPIServerExit(timeout time.Duration) error { return n.apiserver.wait(timeout) }

// Ready probes https://<node>:6443/readyz once, as vipcast does.
func (n *Node) Ready(timeout time.Duration) bool {
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(n.CertFile())
	if err != nil || !pool.AppendCertsFromPEM(pem) {
		return false
	}
	c := n.httpClient(&tls.Config{RootCAs: pool, ServerName: "kubernetes"}, timeout)
	defer c.CloseIdleConnections()
	resp, err := c.Get(fmt.Sprintf("https://%s/readyz", netip.AddrPortFrom(n.Addr4, APIServerPort)))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// WaitAPIServerReady polls /readyz every 5ms until it answers 200 and
// returns when it did.
func (n *Node) WaitAPIServerReady(timeout time.Duration) error {
	_, err := n.waitReady(timeout)
	return err
}

func (n *Node) waitReady(timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if n.Ready(500 * time.Millisecond) {
			return time.Now(), nil
		}
		if !n.apiserver.alive() {
			return time.Time{}, fmt.Errorf("%s: kube-apiserver exited: %v\n%s", n.Name, n.apiserver.exitErr(), tail(n.apiserver.logPath, 30))
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("%s: kube-apiserver not ready after %v\n%s", n.Name, timeout, tail(n.apiserver.logPath, 30))
}

// WaitReadyAt is WaitAPIServerReady returning the time /readyz first
// answered 200.
func (n *Node) WaitReadyAt(timeout time.Duration) (time.Time, error) { return n.waitReady(timeout) }

func (n *Node) httpClient(tc *tls.Config, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			TLSClientConfig: tc,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return dialIn(ctx, n.NS, network, addr)
			},
			DisableKeepAlives: true,
		},
	}
}

// --- responder ---

// The responder answers every TCP connection to port 8080 (on any local
// address, so on the VIP while it is on lo) with the node's name.
func (n *Node) startResponder() error {
	if n.responder == nil {
		n.responder = newProc(n.Name+"/responder", n.NS, filepath.Join(n.Dir, "responder.log"), "socat",
			fmt.Sprintf("TCP6-LISTEN:%d,ipv6only=0,fork,reuseaddr", ResponderPort), "SYSTEM:echo "+n.Name)
	}
	return n.responder.start()
}

// --- vipcast ---

// ConfigFile is the node's generated vipcast configuration.
func (n *Node) ConfigFile() string { return filepath.Join(n.Dir, "vipcast.yaml") }

// PasswordFile holds the TCP MD5 key vipcast reads.
func (n *Node) PasswordFile() string { return filepath.Join(n.Dir, "bgp-password") }

// VipcastLog is vipcast's stderr (JSON lines).
func (n *Node) VipcastLog() string { return filepath.Join(n.Dir, "vipcast.log") }

func dur(d time.Duration) string { return d.String() }

func (n *Node) writeVipcastConfig() error {
	o := n.lab.Opts
	var vips []string
	for _, p := range n.lab.VIPs() {
		vips = append(vips, p.String())
	}
	pw := ""
	if o.MD5Password != "" {
		if err := os.WriteFile(n.PasswordFile(), []byte(n.password+"\n"), 0o600); err != nil {
			return err
		}
		pw = ", passwordFile: " + n.PasswordFile()
	}
	timers := fmt.Sprintf("holdTime: %s, keepaliveTime: %s, connectRetry: %s", dur(o.HoldTime), dur(o.KeepaliveTime), dur(o.ConnectRetry))
	if o.BFD != nil {
		timers += fmt.Sprintf(", bfd: {enabled: true, strict: %t, minTx: %s, minRx: %s, multiplier: %d}", o.BFD.Strict, dur(o.BFD.Interval), dur(o.BFD.Interval), o.BFD.Multiplier)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# generated by e2e/lab for %s (%s)\n", n.Name, n.NS)
	fmt.Fprintf(&b, "vips: [%s]\n", strings.Join(vips, ", "))
	fmt.Fprintf(&b, "loopback: {interface: lo, onWithdraw: remove, removeDelay: %s}\n", dur(o.RemoveDelay))
	fmt.Fprintf(&b, "health: {url: \"https://%s/readyz\", caFile: %s, serverName: kubernetes, interval: %s, timeout: %s, rise: %d, fall: %d, timeoutFall: %d}\n",
		netip.AddrPortFrom(n.Addr4, APIServerPort), n.CertFile(), dur(o.HealthInterval), dur(o.HealthTimeout), o.Rise, o.Fall, o.TimeoutFall)
	if o.DampingHalfLife == 0 {
		b.WriteString("damping: {halfLife: 0s}\n")
	} else {
		fmt.Fprintf(&b, "damping: {halfLife: %s, suppress: 2.5, reuse: 1}\n", dur(o.DampingHalfLife))
	}
	fmt.Fprintf(&b, "shutdown: {drainPeriod: %s}\n", dur(o.DrainPeriod))
	// Nodes share the host's file system: each gets its own API socket and
	// state file, or the second vipcast would refuse the first one's socket.
	fmt.Fprintf(&b, "api: {socket: %s, stateFile: %s}\n", filepath.Join(n.Dir, "vipcast.sock"), filepath.Join(n.Dir, "state.json"))
	fmt.Fprintf(&b, "bgp: {asn: %d, routerID: %s}\n", NodeASN, n.Addr4)
	b.WriteString("peers:\n")
	fmt.Fprintf(&b, "  - {address: %s, asn: %d%s, %s}\n", RouterAddr4, RouterASN, pw, timers)
	if o.IPv6 {
		fmt.Fprintf(&b, "  - {address: \"%s\", asn: %d%s, %s, families: [ipv6]}\n", RouterAddr6, RouterASN, pw, timers)
	}
	q := make([]string, len(o.Communities))
	for i, c := range o.Communities {
		q[i] = fmt.Sprintf("%q", c)
	}
	gshut := "gracefulShutdown: {enabled: false}"
	if o.GracefulShutdownWait > 0 {
		gshut = fmt.Sprintf("gracefulShutdown: {enabled: true, wait: %s}", dur(o.GracefulShutdownWait))
	}
	last := o.LastResort
	if last == "" {
		last = "{enabled: false}"
	}
	lastResort := ", lastResort: " + last
	if n.baseline {
		lastResort = "" // the key came after the bench's baseline build, which rejects it
	}
	fmt.Fprintf(&b, "policy: {communities: [%s], med: %d, %s%s}\n", strings.Join(q, ", "), o.MED, gshut, lastResort)
	b.WriteString(n.kubeVipcastConfig())
	return os.WriteFile(n.ConfigFile(), []byte(b.String()), 0o644)
}

// SetPassword changes the MD5 key vipcast will use from its next start.
func (n *Node) SetPassword(pw string) error {
	n.password = pw
	return n.writeVipcastConfig()
}

// StartVipcast writes the node's config and starts vipcast (debug, JSON logs).
func (n *Node) StartVipcast() error {
	if err := n.writeVipcastConfig(); err != nil {
		return err
	}
	if n.vipcast == nil {
		n.vipcast = newProc(n.Name+"/vipcast", n.NS, n.VipcastLog(), VipcastBin(),
			"run", "--config", n.ConfigFile(), "--log-level", "debug", "--log-format", "json")
	}
	return n.vipcast.start()
}

// KillVipcast sends sig to vipcast and returns when it was sent.
func (n *Node) KillVipcast(sig syscall.Signal) (time.Time, error) {
	err := n.vipcast.signal(sig)
	return time.Now(), err
}

// VipcastAlive reports whether the vipcast process exists.
func (n *Node) VipcastAlive() bool { return n.vipcast.alive() }

// WaitVipcastExit waits for vipcast to exit and returns its exit error.
func (n *Node) WaitVipcastExit(timeout time.Duration) error {
	if err := n.vipcast.wait(timeout); err != nil {
		return err
	}
	return n.vipcast.exitErr()
}

// LogRecords parses vipcast's JSON log lines (other lines are skipped).
func (n *Node) LogRecords() []map[string]any {
	b, _ := os.ReadFile(n.VipcastLog())
	var out []map[string]any
	for _, line := range strings.Split(string(b), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// --- network ---

// LinkDown takes the node's link down (the router side of its veth, so
// both ends lose carrier).
func (n *Node) LinkDown() error {
	_, err := run("ip", "-n", n.lab.routerNS, "link", "set", n.routerLink(), "down")
	if err == nil {
		n.linkDown = true
	}
	return err
}

// LinkUp undoes LinkDown.
func (n *Node) LinkUp() error {
	_, err := run("ip", "-n", n.lab.routerNS, "link", "set", n.routerLink(), "up")
	if err == nil {
		n.linkDown = false
	}
	return err
}

// VIPOnLo reports whether vip is an address of the node's lo.
func (n *Node) VIPOnLo(vip netip.Prefix) (bool, error) {
	out, err := runStdout("ip", "-n", n.NS, "-j", "addr", "show", "dev", "lo")
	if err != nil {
		return false, err
	}
	var links []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		return false, fmt.Errorf("ip addr json: %w", err)
	}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if ad, err := netip.ParseAddr(a.Local); err == nil && ad == vip.Addr() {
				return true, nil
			}
		}
	}
	return false, nil
}
