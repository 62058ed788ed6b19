package lab

// Bootstrap mode (Options.Bootstrap): the cluster lab built the way
// docs/install.md builds a cluster, one kubeadm step at a time, driven by
// the caller. New returns with the network, the router and the cluster's
// PKI only; then, as on real machines:
//
//   - PrepareNode: the machine before kubeadm: containerd running, the
//     cluster CA at /etc/kubernetes/pki/ca.crt ("kubeadm init phase certs
//     ca"; kubeadm join copies it), the pause image;
//   - NodeShell runs the doc's commands on the node ("ssh nN"), with the
//     doc's paths: each node's private mount namespace (the one containerd
//     and the kubelet share, see cluster.go) has its own /etc/kubernetes
//     (whose manifests directory is the kubelet's staticPodPath),
//     /etc/vipcast and /root;
//   - StartKubelet: kubeadm's kubelet-start, with the kubeconfig through
//     the VIP before anything answers there: the kubelet runs its static
//     pods while the cluster does not exist yet;
//   - InitControlPlane: the rest of kubeadm init: a one-member etcd, the
//     apiserver, the controller-manager and the scheduler (processes, as in
//     the other cluster labs; the controllers reach the API through the
//     VIP);
//   - JoinControlPlane: kubeadm join --control-plane, through the VIP: the
//     etcd endpoints from the API (stacked etcd: one per apiserver), the new
//     member added as a learner and promoted once in sync (kubeadm's
//     EtcdLearnerMode: adding a voting member to a one-member cluster would
//     halve its quorum until the new member catches up, and the only
//     apiserver behind the VIP would fail /readyz meanwhile), then the
//     apiserver, controllers and kubelet;
//   - MarkControlPlane: kubeadm's mark-control-plane (the label; the
//     kubelets register with the taint);
//   - Admin runs kubectl and helm on the admin's machine: the client
//     namespace behind the router, through the VIP.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// EtcKubernetesDir is the node's /etc/kubernetes as seen from the host.
func (n *Node) EtcKubernetesDir() string { return filepath.Join(n.Dir, "etc-kubernetes") }

// EtcVipcastDir is the node's /etc/vipcast as seen from the host.
func (n *Node) EtcVipcastDir() string { return filepath.Join(n.Dir, "etc-vipcast") }

// RootDir is the node's /root as seen from the host.
func (n *Node) RootDir() string { return filepath.Join(n.Dir, "root") }

// bootstrapMounts is the part of the containerd start script that gives a
// bootstrap lab's node its own kubeadm directories: a shell fragment
// ending in "&& ", or "" outside bootstrap mode.
func (n *Node) bootstrapMounts() string {
	if !n.lab.Opts.Bootstrap {
		return ""
	}
	return fmt.Sprintf("mount --bind %q /etc/kubernetes && mount --bind %q /etc/kubernetes/manifests && mount --bind %q /etc/vipcast && mount --bind %q /root && ",
		n.EtcKubernetesDir(), n.StaticPodPath(), n.EtcVipcastDir(), n.RootDir())
}

// PrepareNode makes n a machine ready for kubeadm (see the top of this
// file). Bootstrap mode only.
func (n *Node) PrepareNode() error {
	if !n.lab.Opts.Bootstrap {
		return fmt.Errorf("%s: PrepareNode needs Options.Bootstrap", n.Name)
	}
	// The host's mount points (empty; the node's namespace mounts its own
	// directories on them) and the node's directories.
	for _, d := range []string{"/etc/kubernetes", "/etc/vipcast", "/root",
		filepath.Join(n.EtcKubernetesDir(), "pki"), filepath.Join(n.EtcKubernetesDir(), "manifests"),
		n.StaticPodPath(), n.EtcVipcastDir(), n.RootDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	ca, err := os.ReadFile(n.lab.caFile)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.EtcKubernetesDir(), "pki", "ca.crt"), ca, 0o644); err != nil {
		return err
	}
	tar, err := buildPauseImage()
	if err != nil {
		return err
	}
	if err := n.makeCgroups(); err != nil {
		return err
	}
	if err := n.serviceDNAT(); err != nil {
		return err
	}
	if err := n.startContainerd(); err != nil {
		return err
	}
	if err := n.waitContainerd(30 * time.Second); err != nil {
		return err
	}
	return n.ImportImage(tar)
}

var unpackingRE = regexp.MustCompile(`unpacking (\S+) \(sha256:`)

// ImportImageRef imports an image tarball into the node's containerd
// (`ctr -n k8s.io images import`, as docs/install.md says) and returns the
// image's name.
func (n *Node) ImportImageRef(tarball string) (string, error) {
	out, err := n.Ctr("images", "import", tarball)
	if err != nil {
		return "", fmt.Errorf("%s: ctr images import %s: %w", n.Name, tarball, err)
	}
	m := unpackingRE.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%s: no image name in ctr's output:\n%s", n.Name, out)
	}
	return m[1], nil
}

// NodeShell runs a shell script on the node: in its network and mount
// namespaces, as root, with vipcast and kubectl on the PATH and no
// VIPCAST_* variables.
func (n *Node) NodeShell(ctx context.Context, script string) (string, error) {
	pid := n.cluster.containerd.pid()
	if pid == 0 {
		return "", fmt.Errorf("%s: containerd (the node's mount namespace) not running", n.Name)
	}
	cmd := exec.CommandContext(ctx, "nsenter", fmt.Sprintf("--mount=/proc/%d/ns/mnt", pid), "--net=/run/netns/"+n.NS, "--", "sh", "-ec", script)
	cmd.Env = append(childEnv(), "PATH="+filepath.Dir(VipcastBin())+":"+filepath.Dir(KubeBin("kubectl"))+":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s$ %s: %w: %s", n.Name, script, err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// StartKubelet starts the node's kubelet (its kubeconfig points at the
// VIP, whether or not anything answers there yet).
func (n *Node) StartKubelet() error { return n.startKubelet() }

// ContainerdAlive reports whether the node's containerd runs.
func (n *Node) ContainerdAlive() bool { return n.cluster.containerd.alive() }

func (n *Node) newClusterEtcd(initial []string, state string) *proc {
	return newProc(n.Name+"/etcd", n.NS, filepath.Join(n.Dir, "etcd.log"), "etcd",
		"--name", n.Name,
		"--data-dir", filepath.Join(n.Dir, "etcd"),
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:2379,http://%s:2379", n.Addr4),
		"--advertise-client-urls", fmt.Sprintf("http://%s:2379", n.Addr4),
		"--listen-peer-urls", n.etcdPeerURL(),
		"--initial-advertise-peer-urls", n.etcdPeerURL(),
		"--initial-cluster", strings.Join(initial, ","),
		"--initial-cluster-token", n.lab.ID,
		"--initial-cluster-state", state,
		"--log-level", "warn")
}

func (n *Node) etcdPeerURL() string { return fmt.Sprintf("http://%s:2380", n.Addr4) }

// InitControlPlane is the control-plane part of kubeadm init on n: etcd as
// a cluster of one, the apiserver (waits until /readyz passes), the
// controller-manager and the scheduler (through the VIP).
func (n *Node) InitControlPlane() error {
	if n.etcd == nil {
		n.etcd = n.newClusterEtcd([]string{n.Name + "=" + n.etcdPeerURL()}, "new")
	}
	if err := n.etcd.start(); err != nil {
		return err
	}
	if err := n.waitEtcd(30 * time.Second); err != nil {
		return err
	}
	if err := n.StartAPIServer(); err != nil {
		return err
	}
	if err := n.WaitAPIServerReady(90 * time.Second); err != nil {
		return err
	}
	return n.startControllers()
}

// VIPRequest is KubeRequest through the VIP (from the node's namespace).
func (n *Node) VIPRequest(method, path string, body any) ([]byte, error) {
	return n.kubeRequestTo(netip.AddrPortFrom(VIP4.Addr(), APIServerPort), method, path, body)
}

// etcdCall posts a JSON request to etcd's v3 gateway from the node's
// namespace.
func (n *Node) etcdCall(url string, req, resp any) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	c := n.httpClient(nil, 5*time.Second)
	defer c.CloseIdleConnections()
	r, err := c.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer r.Body.Close()
	out, _ := io.ReadAll(r.Body)
	if r.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s: %s", url, r.Status, bytes.TrimSpace(out))
	}
	return json.Unmarshal(out, resp)
}

type etcdMember struct {
	ID        string   `json:"ID"` // a uint64, as a JSON string
	Name      string   `json:"name"`
	PeerURLs  []string `json:"peerURLs"`
	IsLearner bool     `json:"isLearner"`
}

// etcdMemberAdd is etcd's answer to a member add.
type etcdMemberAdd struct {
	Member  etcdMember   `json:"member"`
	Members []etcdMember `json:"members"`
}

// initialCluster is the new member's --initial-cluster: every member's
// name=peerURL, the new one (which has no name yet) named name.
func (a etcdMemberAdd) initialCluster(name string) []string {
	var out []string
	for _, m := range a.Members {
		n := m.Name
		if m.ID == a.Member.ID {
			n = name
		}
		if len(m.PeerURLs) > 0 {
			out = append(out, n+"="+m.PeerURLs[0])
		}
	}
	return out
}

// JoinControlPlane is kubeadm join --control-plane on n, through the VIP
// (see the top of this file); it returns once the apiserver is ready and
// the kubelet started.
func (n *Node) JoinControlPlane() error {
	// Discovery through the VIP: the apiservers, each with its etcd member.
	b, err := n.VIPRequest(http.MethodGet, "/api/v1/namespaces/default/endpoints/kubernetes", nil)
	if err != nil {
		return fmt.Errorf("%s: discovery through the VIP: %w", n.Name, err)
	}
	var ep struct {
		Subsets []struct {
			Addresses []struct {
				IP string `json:"ip"`
			} `json:"addresses"`
		} `json:"subsets"`
	}
	if err := json.Unmarshal(b, &ep); err != nil {
		return err
	}
	if len(ep.Subsets) == 0 || len(ep.Subsets[0].Addresses) == 0 {
		return fmt.Errorf("%s: the kubernetes Endpoints list no apiserver: %s", n.Name, b)
	}
	etcdURL := fmt.Sprintf("http://%s:2379", ep.Subsets[0].Addresses[0].IP)
	var added etcdMemberAdd
	// etcd refuses a member change as "unhealthy cluster" until every member
	// has been connected for a few seconds (--strict-reconfig-check), which is
	// right after the previous join; kubeadm retries it too.
	for deadline := time.Now().Add(60 * time.Second); ; {
		err := n.etcdCall(etcdURL+"/v3/cluster/member/add", map[string]any{"peerURLs": []string{n.etcdPeerURL()}, "isLearner": true}, &added)
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "unhealthy cluster") || time.Now().After(deadline) {
			return fmt.Errorf("%s: etcd member add --learner: %w", n.Name, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	initial := added.initialCluster(n.Name)
	if n.etcd == nil {
		n.etcd = n.newClusterEtcd(initial, "existing")
	}
	if err := n.etcd.start(); err != nil {
		return err
	}
	// A learner can be promoted only once it has caught up with the leader.
	deadline := time.Now().Add(90 * time.Second)
	for {
		var resp struct{}
		err := n.etcdCall(etcdURL+"/v3/cluster/member/promote", map[string]any{"ID": added.Member.ID}, &resp)
		// "not a learner": a promote whose answer was lost did it.
		if err == nil || (strings.Contains(err.Error(), "can only promote a learner member") && !strings.Contains(err.Error(), "in sync")) {
			break
		}
		if !n.etcd.alive() {
			return fmt.Errorf("%s: etcd exited: %v\n%s", n.Name, n.etcd.exitErr(), tail(n.etcd.logPath, 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: etcd member promote: %w\n%s", n.Name, err, tail(n.etcd.logPath, 20))
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err := n.waitEtcd(30 * time.Second); err != nil {
		return err
	}
	if err := n.StartAPIServer(); err != nil {
		return err
	}
	if err := n.WaitAPIServerReady(90 * time.Second); err != nil {
		return err
	}
	if err := n.startControllers(); err != nil {
		return err
	}
	return n.startKubelet()
}

// WaitNode waits until the Node named after n exists and ok holds for it.
func (l *Lab) WaitNode(n *Node, timeout time.Duration, what string, ok func(KubeNode) bool) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		nodes, err := l.KubeNodes()
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("no Node %s among %d", n.Name, len(nodes))
			for _, k := range nodes {
				if k.Metadata.Name == n.Name {
					if ok(k) {
						return nil
					}
					last = fmt.Sprintf("Node %s: Ready=%q", n.Name, k.Condition("Ready"))
				}
			}
		}
		if n.cluster.kubelet != nil && !n.cluster.kubelet.alive() {
			return fmt.Errorf("%s: kubelet exited: %v\n%s", n.Name, n.cluster.kubelet.exitErr(), tail(n.KubeletLog(), 30))
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("Node %s not %s after %v (%s)\n--- kubelet log (tail)\n%s", n.Name, what, timeout, last, tail(n.KubeletLog(), 25))
}

// MarkControlPlane is kubeadm's mark-control-plane: the label (the
// kubelet registered with the taint); it waits for the Node to register.
func (l *Lab) MarkControlPlane(n *Node, timeout time.Duration) error {
	if err := l.WaitNode(n, timeout, "registered", func(KubeNode) bool { return true }); err != nil {
		return err
	}
	empty := ""
	for _, key := range []string{ControlPlaneLabel, "node.kubernetes.io/exclude-from-external-load-balancers"} {
		if err := l.LabelNode(n.Name, key, &empty); err != nil {
			return err
		}
	}
	return nil
}

// Admin runs a command (kubectl, helm) on the admin's machine: the lab's
// client namespace behind the router, with KUBECONFIG the admin
// kubeconfig through the VIP, the lab's kubectl on the PATH and extraPath
// in front.
func (l *Lab) Admin(ctx context.Context, extraPath string, args ...string) (string, error) {
	out, err := l.AdminCmd(ctx, extraPath, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("admin$ %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// AdminCmd is the command Admin runs, for the caller to start.
func (l *Lab) AdminCmd(ctx context.Context, extraPath string, args ...string) *exec.Cmd {
	path := filepath.Dir(KubeBin("kubectl")) + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	if extraPath != "" {
		path = extraPath + ":" + path
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.clientNS, "env", "PATH=" + path}, args...)...)
	cmd.Env = append(childEnv(), "KUBECONFIG="+l.ClusterKubeconfig(), "HOME="+l.Dir)
	return cmd
}

// BootstrapVipcastConfig is the vipcast configuration of docs/install.md's
// bootstrap for this lab, with the doc's absolute paths: the static pod's
// /etc/vipcast/config.yaml. The chart's values (ChartValues) give the
// DaemonSet the same speaker settings and path attributes, so the router
// spreads the VIP over static and DaemonSet speakers alike during the
// migration.
func (l *Lab) BootstrapVipcastConfig() string {
	return fmt.Sprintf(`vips: [%s]
health: {url: "https://127.0.0.1:%d/readyz", caFile: /etc/kubernetes/pki/ca.crt, serverName: kubernetes, %s}
damping: {halfLife: 0s}
shutdown: {drainPeriod: 3s}
bgp: {asn: %d}
peers:
  - {address: %s, asn: %d, holdTime: 3s, keepaliveTime: 1s, connectRetry: 1s}
policy: {communities: ["64512:100"], med: 10, gracefulShutdown: {enabled: false}}
`, VIP4, APIServerPort, clusterProbeTimers, NodeASN, RouterAddr4, RouterASN)
}

// clusterProbeTimers: three control planes on a loaded 2-core box time out
// 80 ms probes on every node at once now and then; tolerate 2 s of
// timeouts (a refused or failed probe still withdraws within fall 2).
const clusterProbeTimers = "interval: 250ms, timeout: 200ms, timeoutFall: 8"

// ChartValues are the chart's values for this lab (my-values.yaml in
// docs/install.md) with the image repo:tag as imported into the nodes.
func (l *Lab) ChartValues(ref string) (string, error) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return "", fmt.Errorf("image %q has no tag", ref)
	}
	return fmt.Sprintf(`vips: [%s]
bgp: {asn: %d}
peers:
  - {address: %s, asn: %d, holdTime: 3s, keepaliveTime: 1s, connectRetry: 1s}
damping: {halfLife: 0s}
health: {%s}
shutdown: {drainPeriod: 3s}
policy: {communities: ["64512:100"], med: 10, gracefulShutdown: {enabled: false}}
image: {repository: %q, tag: %q}
logLevel: debug
`, VIP4, NodeASN, RouterAddr4, RouterASN, clusterProbeTimers, ref[:i], ref[i+1:]), nil
}
