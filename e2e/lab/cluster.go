package lab

// Cluster mode (Options.Cluster): the lab's nodes form one highly available
// Kubernetes control plane behind the VIP, laid out as kubeadm lays out a
// stacked-etcd cluster with controlPlaneEndpoint = the VIP:
//
//   - one etcd cluster of every node (peers on the node addresses), each
//     apiserver talking to its local member;
//   - apiserver serving certificates from a lab CA, listing the VIP, the
//     service IP, the node addresses, 127.0.0.1 and "kubernetes";
//   - per node a kube-controller-manager and a kube-scheduler (leader
//     elected) and a kubelet, all reaching the API through
//     https://203.0.113.10:6443, never their local apiserver;
//   - per node a containerd (Debian's, with runc) with its own root, state
//     and socket under the node's directory, and Debian's CNI plugins with a
//     loopback-only network (pods here are hostNetwork);
//   - Nodes registered by their kubelet with kubeadm's control-plane taint,
//     and the control-plane label set by the admin (NodeRestriction forbids
//     a kubelet to set node-role labels on itself).
//
// The VIP itself comes from the host-run vipcast of every node, as in the
// other labs: that stands in for the static pod of docs/install.md.
//
// containerd and the kubelet run through nsenter, not `ip netns exec`: the
// latter makes a mount namespace with /sys remounted and runc then finds no
// cgroup mounts. They share one private mount namespace per node (unshare,
// slave propagation), in which the node's /run/vipcast and /var/lib/vipcast
// are bind mounts of directories of its own: three nodes on one host would
// otherwise share the chart's hostPath socket and state file, and the pods'
// mounts never leak into the host. Every process of a node (daemons, shims,
// containers) lives in the node's cgroups, so teardown kills by cgroup.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Cluster addressing.
var (
	// ServiceCIDR is the apiservers' --service-cluster-ip-range.
	ServiceCIDR = netip.MustParsePrefix("203.0.113.128/25")
	// KubernetesServiceIP is the first IP of ServiceCIDR: the in-cluster
	// clients' KUBERNETES_SERVICE_HOST.
	KubernetesServiceIP = netip.MustParseAddr("203.0.113.129")
)

// PauseImage is the sandbox image every node's containerd uses, imported
// from a locally built tarball (the lab has no registry).
const PauseImage = "registry.k8s.io/pause:3.10"

// ControlPlaneLabel and ControlPlaneTaint are kubeadm's.
const (
	ControlPlaneLabel = "node-role.kubernetes.io/control-plane"
	ControlPlaneTaint = "node-role.kubernetes.io/control-plane"
)

// KubeBin is a Kubernetes binary built by `e2e/tools/build.sh kube`.
func KubeBin(name string) string {
	if name == "kube-apiserver" {
		return KubeAPIServerBin()
	}
	return filepath.Join(BinDir(), name)
}

// MissingCluster lists what this machine lacks to run a cluster lab on top
// of Missing.
func MissingCluster() []string {
	var missing []string
	for _, b := range []string{"kube-controller-manager", "kube-scheduler", "kubelet", "kubectl", "vipcast-e2e-client"} {
		if st, err := os.Stat(KubeBin(b)); err != nil || st.IsDir() {
			missing = append(missing, fmt.Sprintf("%s not built (run e2e/tools/build.sh kube)", KubeBin(b)))
		}
	}
	for _, tool := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "nsenter", "unshare", "iptables", "/usr/lib/cni/loopback"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" not installed (apt-get install containerd runc containernetworking-plugins)")
		}
	}
	return missing
}

// RequireCluster skips t unless Require passes and VIPCAST_E2E_CLUSTER=1
// is set (`make e2e` sets it; the cluster binaries are a ~9 min cold
// build). Once it is set, anything MissingCluster fails t: a run that asked
// for the cluster (CI) must not pass by skipping it.
func RequireCluster(t T) {
	t.Helper()
	Require(t, FRR)
	if os.Getenv("VIPCAST_E2E_CLUSTER") != "1" {
		t.Skipf("\n" + strings.Repeat("#", 78) + "\n# SKIPPING vipcast cluster e2e: VIPCAST_E2E_CLUSTER=1 is not set\n" +
			"# Run: make e2e   (or: cd e2e && VIPCAST_E2E=1 VIPCAST_E2E_CLUSTER=1 go test -count=1 -timeout 30m -run Cluster ./...)\n" +
			strings.Repeat("#", 78))
	}
	if missing := MissingCluster(); len(missing) > 0 {
		t.Fatalf("VIPCAST_E2E_CLUSTER=1 but the cluster lab cannot run: %s\n"+
			"# Run: apt-get install -y --no-install-recommends containerd runc containernetworking-plugins iptables util-linux (make deps)\n"+
			"#      e2e/tools/build.sh kube (TestMain runs it)", strings.Join(missing, "; "))
	}
}

// clusterNode is the per-node state of cluster mode.
type clusterNode struct {
	containerd, kubelet, kcm, scheduler *proc
}

func (n *Node) cgroupRoot() string { return "/" + n.NS }

// daemonCgroup holds containerd, the shims and the kubelet (pids hierarchy
// only), a sibling of the kubelet's cgroupRoot.
func (n *Node) daemonCgroup() string { return "/" + n.NS + "-d" }

// ContainerdSocket is the node's containerd socket.
func (n *Node) ContainerdSocket() string {
	return filepath.Join(n.Dir, "containerd", "containerd.sock")
}

// RunVipcastDir is the node's /run/vipcast as seen from the host: the
// chart's hostPath socket directory.
func (n *Node) RunVipcastDir() string { return filepath.Join(n.Dir, "run-vipcast") }

// VarLibVipcastDir is the node's /var/lib/vipcast as seen from the host.
func (n *Node) VarLibVipcastDir() string { return filepath.Join(n.Dir, "var-lib-vipcast") }

// ClusterKubeconfig is the admin kubeconfig through the VIP (usable from
// any node's namespace).
func (l *Lab) ClusterKubeconfig() string { return filepath.Join(l.Dir, "admin-vip.kubeconfig") }

// --- PKI and credentials ---

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

// writeClusterPKI writes the lab CA and the apiservers' serving certificate
// (shared by all three: same SANs) into l.Dir/pki.
func (l *Lab) writeClusterPKI() error {
	dir := filepath.Join(l.Dir, "pki")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vipcast-lab-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), VIP4.Addr().AsSlice(), KubernetesServiceIP.AsSlice()}
	for _, n := range l.nodes {
		ips = append(ips, n.Addr4.AsSlice())
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"},
		IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	l.caFile = filepath.Join(dir, "ca.crt")
	l.apiCert = filepath.Join(dir, "apiserver.crt")
	l.apiKey = filepath.Join(dir, "apiserver.key")
	if err := writePEM(l.caFile, "CERTIFICATE", caDER, 0o644); err != nil {
		return err
	}
	if err := writePEM(l.apiCert, "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(l.apiKey, "EC PRIVATE KEY", kb, 0o600)
}

// appendNodeTokens adds a token per kubelet (system:node:<name> in
// system:nodes, as the Node authorizer and NodeRestriction expect).
func (l *Lab) appendNodeTokens() error {
	f, err := os.OpenFile(l.tokens, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, n := range l.nodes {
		var b [16]byte
		_, _ = rand.Read(b[:])
		n.kubeletToken = hex.EncodeToString(b[:])
		if _, err := fmt.Fprintf(f, "%s,system:node:%s,node-%s,system:nodes\n", n.kubeletToken, n.Name, n.Name); err != nil {
			return err
		}
	}
	return nil
}

func writeKubeconfig(path, server, ca, user, token string) error {
	return os.WriteFile(path, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster: {server: %q, certificate-authority: %q}
users:
- name: %s
  user: {token: %q}
contexts:
- name: lab
  context: {cluster: lab, user: %s}
current-context: lab
`, server, ca, user, token, user)), 0o600)
}

func vipServer() string {
	return fmt.Sprintf("https://%s", netip.AddrPortFrom(VIP4.Addr(), APIServerPort))
}

// --- the pause image ---

var (
	pauseOnce sync.Once
	pauseTar  string
	pauseErr  error
)

// buildPauseImage builds cmd/pause (static) and writes it as a
// docker-archive tarball, which `ctr images import` accepts.
func buildPauseImage() (string, error) {
	pauseOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		e2e := filepath.Dir(filepath.Dir(file))
		bin := filepath.Join(BinDir(), "pause")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/pause")
		cmd.Dir = e2e
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			pauseErr = fmt.Errorf("building the pause binary: %w: %s", err, out)
			return
		}
		pauseTar = filepath.Join(BinDir(), "pause-image.tar")
		pauseErr = writeImageArchive(pauseTar, PauseImage, bin, "/pause")
	})
	return pauseTar, pauseErr
}

// writeImageArchive writes a one-layer docker-archive image holding the
// binary at path inside, as its entrypoint.
func writeImageArchive(out, ref, binary, inside string) error {
	data, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(inside, "/"), Mode: 0o755, Size: int64(len(data)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(data); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	diffID := fmt.Sprintf("sha256:%x", sha256.Sum256(layer.Bytes()))
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux",
		"config": map[string]any{"Entrypoint": []string{inside}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
	if err != nil {
		return err
	}
	manifest, err := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{ref}, "Layers": []string{"layer.tar"}}})
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	aw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		b    []byte
	}{{"config.json", config}, {"layer.tar", layer.Bytes()}, {"manifest.json", manifest}} {
		if err := aw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.b)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := aw.Write(f.b); err != nil {
			return err
		}
	}
	if err := aw.Close(); err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

// --- cgroups ---

// cgroupHierarchies are the mounted cgroup v1 hierarchies (and the unified
// one) the kubelet's cgroupRoot must exist in.
func cgroupHierarchies() []string {
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	var out []string
	for _, e := range entries {
		p := filepath.Join("/sys/fs/cgroup", e.Name())
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			out = append(out, p)
		}
	}
	return out
}

// makeCgroups creates the kubelet's cgroupRoot in every hierarchy (cpuset
// ones get their parent's cpus and mems, or nothing could join them) and
// the daemon cgroup in the pids hierarchy.
func (n *Node) makeCgroups() error {
	for _, h := range cgroupHierarchies() {
		d := filepath.Join(h, n.cgroupRoot())
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("cgroup %s: %w", d, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(h, f)); err == nil {
				_ = os.WriteFile(filepath.Join(d, f), b, 0o644)
			}
		}
	}
	return os.MkdirAll(filepath.Join("/sys/fs/cgroup/pids", n.daemonCgroup()), 0o755)
}

// cgroupPIDs lists every process in the node's pids cgroups.
func cgroupPIDs(roots ...string) []int {
	var pids []int
	for _, r := range roots {
		_ = filepath.WalkDir(filepath.Join("/sys/fs/cgroup/pids", r), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids
}

// killCgroups SIGKILLs everything in the given cgroups until they are
// empty, then removes them (deepest first) from every hierarchy.
func killCgroups(roots ...string) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		pids := cgroupPIDs(roots...)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, h := range cgroupHierarchies() {
		for _, r := range roots {
			var dirs []string
			_ = filepath.WalkDir(filepath.Join(h, r), func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
			for _, d := range dirs {
				_ = syscall.Rmdir(d)
			}
		}
	}
}

// sweepStaleCgroups kills and removes the cgroups of a lab whose test
// process died (id is the lab ID: every node cgroup starts with it).
func sweepStaleCgroups(id string) {
	entries, _ := os.ReadDir("/sys/fs/cgroup/pids")
	var roots []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), id) {
			roots = append(roots, "/"+e.Name())
		}
	}
	if len(roots) > 0 {
		killCgroups(roots...)
	}
}

// --- processes ---

func (n *Node) startContainerd() error {
	c := &n.cluster
	if c.containerd == nil {
		d := filepath.Join(n.Dir, "containerd")
		for _, sub := range []string{"root", "state", "runc", "cni", "opt"} {
			if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
				return err
			}
		}
		for _, p := range []string{n.RunVipcastDir(), n.VarLibVipcastDir(), "/run/vipcast", "/var/lib/vipcast"} {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(d, "cni", "10-lab.conflist"),
			[]byte(`{"cniVersion": "0.4.0", "name": "lab", "plugins": [{"type": "loopback"}]}`+"\n"), 0o644); err != nil {
			return err
		}
		cfg := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = %[3]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  disable_apparmor = true
  # root here lacks CAP_SYS_RESOURCE: the sandbox's oom_score_adj -998 is
  # refused and every sandbox fails without this.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
      Root = %[6]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[7]q
`, filepath.Join(d, "root"), filepath.Join(d, "state"), n.ContainerdSocket(), filepath.Join(d, "opt"),
			PauseImage, filepath.Join(d, "runc"), filepath.Join(d, "cni"))
		if err := os.WriteFile(filepath.Join(d, "config.toml"), []byte(cfg), 0o644); err != nil {
			return err
		}
		// Join the daemon cgroup, make the node's mount namespace with its
		// own /run/vipcast and /var/lib/vipcast, enter the network
		// namespace, exec containerd: the PID stays containerd's.
		script := fmt.Sprintf(`echo $$ > /sys/fs/cgroup/pids%s/cgroup.procs && mount --bind %q /run/vipcast && mount --bind %q /var/lib/vipcast && %sexec nsenter --net=/run/netns/%s containerd --config %q`,
			n.daemonCgroup(), n.RunVipcastDir(), n.VarLibVipcastDir(), n.bootstrapMounts(), n.NS, filepath.Join(d, "config.toml"))
		c.containerd = newProc(n.Name+"/containerd", "", filepath.Join(n.Dir, "containerd.log"),
			"unshare", "--mount", "--propagation", "slave", "--", "sh", "-c", script)
	}
	return c.containerd.start()
}

// Ctr runs ctr against the node's containerd (namespace k8s.io, the CRI's).
func (n *Node) Ctr(args ...string) (string, error) {
	return run("ctr", append([]string{"--address", n.ContainerdSocket(), "--namespace", "k8s.io"}, args...)...)
}

func (n *Node) waitContainerd(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if _, err = run("ctr", "--address", n.ContainerdSocket(), "version"); err == nil {
			return nil
		}
		if !n.cluster.containerd.alive() {
			return fmt.Errorf("%s: containerd exited: %v\n%s", n.Name, n.cluster.containerd.exitErr(), tail(n.cluster.containerd.logPath, 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s: containerd not answering after %v: %v\n%s", n.Name, timeout, err, tail(n.cluster.containerd.logPath, 20))
}

// ImportImage imports an image tarball into the node's containerd.
func (n *Node) ImportImage(tarball string) error {
	_, err := n.Ctr("images", "import", tarball)
	return err
}

func (n *Node) startControllers() error {
	c := &n.cluster
	l := n.lab
	kc := filepath.Join(n.Dir, "controllers.kubeconfig")
	tok, err := l.AdminToken()
	if err != nil {
		return err
	}
	if err := writeKubeconfig(kc, vipServer(), l.caFile, "admin", tok); err != nil {
		return err
	}
	if c.kcm == nil {
		c.kcm = newProc(n.Name+"/kube-controller-manager", n.NS, filepath.Join(n.Dir, "kube-controller-manager.log"),
			KubeBin("kube-controller-manager"),
			"--kubeconfig="+kc, "--leader-elect=true", "--bind-address=127.0.0.1",
			"--service-account-private-key-file="+l.saKey, "--root-ca-file="+l.caFile,
			"--use-service-account-credentials=false", "--profiling=false", "--v=1")
	}
	if c.scheduler == nil {
		c.scheduler = newProc(n.Name+"/kube-scheduler", n.NS, filepath.Join(n.Dir, "kube-scheduler.log"),
			KubeBin("kube-scheduler"),
			"--kubeconfig="+kc, "--leader-elect=true", "--bind-address=127.0.0.1", "--profiling=false", "--v=1")
	}
	// Both exit when they lose their leader lease (an apiserver restart
	// on a busy host can do that); kubeadm's kubelet restarts them.
	c.kcm.keepAlive, c.scheduler.keepAlive = true, true
	if err := c.kcm.start(); err != nil {
		return err
	}
	return c.scheduler.start()
}

func (n *Node) startKubelet() error {
	c := &n.cluster
	if c.kubelet == nil {
		d := filepath.Join(n.Dir, "kubelet")
		for _, sub := range []string{"", "manifests", "pod-logs", "volume-plugins", "pki"} {
			if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
				return err
			}
		}
		kc := filepath.Join(d, "kubelet.kubeconfig")
		if err := writeKubeconfig(kc, vipServer(), n.lab.caFile, "system:node:"+n.Name, n.kubeletToken); err != nil {
			return err
		}
		cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: %[1]s
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://%[2]s
staticPodPath: %[3]s
podLogsDir: %[4]s
volumePluginDir: %[5]s
readOnlyPort: 0
# The apiserver reaches the kubelet for logs and exec; the lab trusts its own
# network.
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
# The lab's disk and memory are small and shared: never evict, never GC.
evictionHard: {memory.available: "1Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
makeIPTablesUtilChains: false
# A static pod's mirror pod cannot be created before the Node and the
# kube-system namespace exist; the kubelet tries again at its next pod sync,
# by default a minute later. The lab waits for mirror pods, so sync sooner.
syncFrequency: 10s
resolvConf: ""
localStorageCapacityIsolation: false
registerWithTaints:
- {key: %[6]s, effect: NoSchedule}
`, n.cgroupRoot(), n.ContainerdSocket(), filepath.Join(d, "manifests"), filepath.Join(d, "pod-logs"),
			filepath.Join(d, "volume-plugins"), ControlPlaneTaint)
		if err := os.WriteFile(filepath.Join(d, "config.yaml"), []byte(cfg), 0o644); err != nil {
			return err
		}
		pid := c.containerd.pid()
		if pid == 0 {
			return fmt.Errorf("%s: containerd not running", n.Name)
		}
		script := fmt.Sprintf(`echo $$ > /sys/fs/cgroup/pids%s/cgroup.procs && exec nsenter --mount=/proc/%d/ns/mnt --net=/run/netns/%s -- "$@"`,
			n.daemonCgroup(), pid, n.NS)
		c.kubelet = newProc(n.Name+"/kubelet", "", filepath.Join(n.Dir, "kubelet.log"),
			"sh", "-c", script, "kubelet", KubeBin("kubelet"),
			"--config="+filepath.Join(d, "config.yaml"), "--kubeconfig="+kc,
			"--root-dir="+d, "--cert-dir="+filepath.Join(d, "pki"),
			"--hostname-override="+n.Name, "--node-ip="+n.Addr4.String(), "--v=1")
	}
	return c.kubelet.start()
}

// ControlPlaneProcs says which of the node's cluster processes run and how
// often the lab restarted them, for a failed test's log.
func (n *Node) ControlPlaneProcs() string {
	c := &n.cluster
	var parts []string
	for _, p := range []*proc{c.containerd, c.kubelet, c.kcm, c.scheduler} {
		if p == nil {
			continue
		}
		p.mu.Lock()
		restarts := p.restarts
		p.mu.Unlock()
		parts = append(parts, fmt.Sprintf("%s alive=%v restarts=%d", p.name, p.alive(), restarts))
	}
	return strings.Join(parts, "; ")
}

// StaticPodPath is the node kubelet's staticPodPath.
func (n *Node) StaticPodPath() string { return filepath.Join(n.Dir, "kubelet", "manifests") }

// KubeletAlive reports whether the node's kubelet runs.
func (n *Node) KubeletAlive() bool { return n.cluster.kubelet != nil && n.cluster.kubelet.alive() }

// KubeletLog is the kubelet's log file.
func (n *Node) KubeletLog() string { return filepath.Join(n.Dir, "kubelet.log") }

// PodLogFiles are the container log files containerd writes for the
// kubelet (podLogsDir/<ns>_<pod>_<uid>/<container>/<restart>.log, CRI
// format: "<time> <stream> <F|P> <line>").
func (n *Node) PodLogFiles(ns, pod, container string) []string {
	files, _ := filepath.Glob(filepath.Join(n.Dir, "kubelet", "pod-logs", ns+"_"+pod+"_*", container, "*.log"))
	sort.Strings(files)
	return files
}

// PodLog holds a pod's container log files open: the kubelet removes them
// with the pod, the open files stay readable. It reads the log on the node
// as an admin would (`crictl logs`, /var/log/pods), which works for a
// static pod whose mirror pod is gone, where `kubectl logs` cannot.
type PodLog struct {
	files []*os.File
}

// OpenPodLog opens every log file of the container; it fails if there is
// none yet.
func (n *Node) OpenPodLog(ns, pod, container string) (*PodLog, error) {
	names := n.PodLogFiles(ns, pod, container)
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no log file of %s/%s container %s under %s", n.Name, ns, pod, container,
			filepath.Join(n.Dir, "kubelet", "pod-logs"))
	}
	pl := &PodLog{}
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			pl.Close()
			return nil, err
		}
		pl.files = append(pl.files, f)
	}
	return pl, nil
}

// String is everything written to the files so far, in restart order.
func (pl *PodLog) String() string {
	var b strings.Builder
	for _, f := range pl.files {
		st, err := f.Stat()
		if err != nil {
			continue
		}
		buf := make([]byte, st.Size())
		n, _ := f.ReadAt(buf, 0)
		b.Write(buf[:n])
	}
	return b.String()
}

// Close closes the files.
func (pl *PodLog) Close() {
	for _, f := range pl.files {
		_ = f.Close()
	}
}

// serviceDNAT sends the kubernetes Service IP to the VIP inside the node:
// there is no kube-proxy, and in-cluster clients (vipcast's Events) dial
// KUBERNETES_SERVICE_HOST:443.
func (n *Node) serviceDNAT() error {
	_, err := nsExec(n.NS, "iptables", "-t", "nat", "-A", "OUTPUT", "-d", KubernetesServiceIP.String()+"/32",
		"-p", "tcp", "--dport", "443", "-j", "DNAT", "--to-destination", netip.AddrPortFrom(VIP4.Addr(), APIServerPort).String())
	return err
}

// startCluster brings up the Kubernetes side once the VIP is routed.
func (l *Lab) startCluster() error {
	start := time.Now()
	tar, err := buildPauseImage()
	if err != nil {
		return err
	}
	tok, err := l.AdminToken()
	if err != nil {
		return err
	}
	if err := writeKubeconfig(l.ClusterKubeconfig(), vipServer(), l.caFile, "admin", tok); err != nil {
		return err
	}
	for _, n := range l.nodes {
		if err := n.makeCgroups(); err != nil {
			return err
		}
		if err := n.serviceDNAT(); err != nil {
			return err
		}
		if err := n.startContainerd(); err != nil {
			return err
		}
	}
	for _, n := range l.nodes {
		if err := n.waitContainerd(30 * time.Second); err != nil {
			return err
		}
		if err := n.ImportImage(tar); err != nil {
			return err
		}
		if err := n.startControllers(); err != nil {
			return err
		}
		if err := n.startKubelet(); err != nil {
			return err
		}
	}
	l.t.Logf("cluster: containerd, controllers and kubelets started in %v", time.Since(start).Round(time.Millisecond))
	if err := l.waitNodesRegistered(120 * time.Second); err != nil {
		return err
	}
	for _, n := range l.nodes {
		patch := map[string]any{"metadata": map[string]any{"labels": map[string]any{
			ControlPlaneLabel: "", "node.kubernetes.io/exclude-from-external-load-balancers": "",
		}}}
		if _, err := n.KubeRequest(http.MethodPatch, "/api/v1/nodes/"+n.Name, patch); err != nil {
			return fmt.Errorf("labelling %s: %w", n.Name, err)
		}
	}
	if err := l.WaitNodesReady(120 * time.Second); err != nil {
		return err
	}
	l.t.Logf("cluster: %d Nodes registered and Ready in %v", len(l.nodes), time.Since(start).Round(time.Millisecond))
	return nil
}

// stopCluster kills every process of the cluster side of each node (by
// cgroup: containers and shims too) and removes the cgroups.
func (l *Lab) stopCluster() {
	for _, n := range l.nodes {
		c := &n.cluster
		for _, p := range []*proc{c.kubelet, c.kcm, c.scheduler, c.containerd} {
			if p != nil {
				p.kill()
			}
		}
	}
	var roots []string
	for _, n := range l.nodes {
		roots = append(roots, n.cgroupRoot(), n.daemonCgroup())
	}
	killCgroups(roots...)
}

// --- Node objects ---

// KubeNode is the part of a v1 Node the tests look at.
type KubeNode struct {
	Metadata struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Taints []struct {
			Key    string `json:"key"`
			Effect string `json:"effect"`
		} `json:"taints"`
	} `json:"spec"`
	Status struct {
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
			Reason string `json:"reason"`
		} `json:"conditions"`
		Addresses []struct {
			Type    string `json:"type"`
			Address string `json:"address"`
		} `json:"addresses"`
	} `json:"status"`
}

// Condition returns the status of condition typ ("" if absent).
func (k KubeNode) Condition(typ string) string {
	for _, c := range k.Status.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}

// HasTaint reports whether the Node carries taint key with effect.
func (k KubeNode) HasTaint(key, effect string) bool {
	for _, t := range k.Spec.Taints {
		if t.Key == key && t.Effect == effect {
			return true
		}
	}
	return false
}

// KubeNodes lists the Nodes through the first node with a live apiserver.
func (l *Lab) KubeNodes() ([]KubeNode, error) {
	var lastErr error
	for _, n := range l.nodes {
		if !n.apiserver.alive() {
			continue
		}
		b, err := n.KubeRequest(http.MethodGet, "/api/v1/nodes", nil)
		if err != nil {
			lastErr = err
			continue
		}
		var list struct {
			Items []KubeNode `json:"items"`
		}
		return list.Items, json.Unmarshal(b, &list)
	}
	return nil, fmt.Errorf("no apiserver answered: %v", lastErr)
}

func (l *Lab) waitNodesRegistered(timeout time.Duration) error {
	return l.pollNodes(timeout, "registered", func(KubeNode) bool { return true })
}

// WaitNodesReady waits until every lab node has a Node whose Ready
// condition is True.
func (l *Lab) WaitNodesReady(timeout time.Duration) error {
	return l.pollNodes(timeout, "Ready", func(k KubeNode) bool { return k.Condition("Ready") == "True" })
}

func (l *Lab) pollNodes(timeout time.Duration, what string, ok func(KubeNode) bool) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		nodes, err := l.KubeNodes()
		if err == nil {
			have := map[string]bool{}
			for _, k := range nodes {
				if ok(k) {
					have[k.Metadata.Name] = true
				}
			}
			all := true
			for _, n := range l.nodes {
				all = all && have[n.Name]
			}
			if all {
				return nil
			}
			last = fmt.Sprintf("%d Nodes, %d %s", len(nodes), len(have), what)
		} else {
			last = err.Error()
		}
		for _, n := range l.nodes {
			if n.cluster.kubelet != nil && !n.cluster.kubelet.alive() {
				return fmt.Errorf("%s: kubelet exited: %v\n%s", n.Name, n.cluster.kubelet.exitErr(), tail(n.KubeletLog(), 30))
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	var logs strings.Builder
	for _, n := range l.nodes {
		fmt.Fprintf(&logs, "--- %s kubelet log (tail)\n%s", n.Name, tail(n.KubeletLog(), 25))
	}
	return fmt.Errorf("Nodes not all %s after %v (%s)\n%s", what, timeout, last, logs.String())
}

// KubectlVIP runs the lab's kubectl in node n's namespace with the admin
// kubeconfig through the VIP.
func (n *Node) KubectlVIP(ctx context.Context, args ...string) (string, error) {
	args = append([]string{"netns", "exec", n.NS, KubeBin("kubectl"), "--kubeconfig", n.lab.ClusterKubeconfig()}, args...)
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args[5:], " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// --- pods ---

// KubePod is the part of a v1 Pod the tests look at.
type KubePod struct {
	Metadata struct {
		Name              string `json:"name"`
		UID               string `json:"uid"`
		DeletionTimestamp string `json:"deletionTimestamp"`
	} `json:"metadata"`
	Spec struct {
		NodeName string `json:"nodeName"`
	} `json:"spec"`
	Status struct {
		Phase      string `json:"phase"`
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
		} `json:"conditions"`
		ContainerStatuses []struct {
			Name         string `json:"name"`
			Ready        bool   `json:"ready"`
			RestartCount int    `json:"restartCount"`
			ContainerID  string `json:"containerID"`
			Image        string `json:"image"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

// Ready reports the pod's Ready condition.
func (p KubePod) Ready() bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

// Restarts is the sum of the containers' restart counts.
func (p KubePod) Restarts() int {
	r := 0
	for _, c := range p.Status.ContainerStatuses {
		r += c.RestartCount
	}
	return r
}

// ContainerID is the first container's runtime ID (without "containerd://").
func (p KubePod) ContainerID() string {
	if len(p.Status.ContainerStatuses) == 0 {
		return ""
	}
	_, id, _ := strings.Cut(p.Status.ContainerStatuses[0].ContainerID, "://")
	return id
}

// KubePods lists the pods of namespace ns matching selector through the
// first node with a live apiserver.
func (l *Lab) KubePods(ns, selector string) ([]KubePod, error) {
	var lastErr error
	for _, n := range l.nodes {
		if !n.apiserver.alive() {
			continue
		}
		b, err := n.KubeRequest(http.MethodGet, fmt.Sprintf("/api/v1/namespaces/%s/pods?labelSelector=%s", ns, selector), nil)
		if err != nil {
			lastErr = err
			continue
		}
		var list struct {
			Items []KubePod `json:"items"`
		}
		return list.Items, json.Unmarshal(b, &list)
	}
	return nil, fmt.Errorf("no apiserver answered: %v", lastErr)
}

// PodOn returns the pod of the list on node name that is not being
// deleted.
func PodOn(pods []KubePod, name string) (KubePod, bool) {
	for _, p := range pods {
		if p.Spec.NodeName == name && p.Metadata.DeletionTimestamp == "" {
			return p, true
		}
	}
	return KubePod{}, false
}

// LabelNode sets (value non-nil) or removes (nil) a label on the Node.
func (l *Lab) LabelNode(name, key string, value *string) error {
	var v any
	if value != nil {
		v = *value
	}
	patch := map[string]any{"metadata": map[string]any{"labels": map[string]any{key: v}}}
	var lastErr error
	for _, n := range l.nodes {
		if !n.apiserver.alive() {
			continue
		}
		if _, lastErr = n.KubeRequest(http.MethodPatch, "/api/v1/nodes/"+name, patch); lastErr == nil {
			return nil
		}
	}
	return fmt.Errorf("labelling Node %s: %w", name, lastErr)
}

// StopHostVipcast stops the node's host-run vipcast (the static pod's
// stand-in) with SIGTERM and waits for it to exit, so the chart's pod can
// take the node over.
func (n *Node) StopHostVipcast(timeout time.Duration) error {
	if n.vipcast == nil || !n.vipcast.alive() {
		return nil
	}
	if err := n.vipcast.signal(syscall.SIGTERM); err != nil {
		return err
	}
	return n.vipcast.wait(timeout)
}
