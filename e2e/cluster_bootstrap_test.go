package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// TestClusterBootstrap runs docs/install.md's bootstrap for real (issue 12,
// test 7), step by step as the doc gives it, on a lab with nothing running
// (lab.Options.Bootstrap):
//
//  1. n1 before any cluster exists: the CA, the configuration installed at
//     /etc/vipcast/config.yaml, `vipcast manifest static-pod --config
//     /etc/vipcast/config.yaml --image ...` written to
//     /etc/kubernetes/manifests/vipcast.yaml, the kubelet started (its
//     kubeconfig already points at the VIP, as kubeadm init's): the static
//     vipcast runs, nothing is routed;
//  2. kubeadm init on n1 (etcd, apiserver, controllers): the VIP comes up
//     at the router with n1 only; n1's Node registers through the VIP;
//  3. n2 and n3 join through the VIP (discovery and kubelets through it,
//     etcd learners promoted once in sync);
//  4. "From the static pod to the DaemonSet": n1 labelled, helm install
//     (pods on n2 and n3), then on n1: the manifest moved away, kubectl
//     wait for the mirror pod's deletion, the label removed, kubectl
//     rollout status.
//
// A FIB monitor on the router runs throughout: once the VIP first has a
// nexthop it never has zero. The end state: 3 nexthops, the DaemonSet 3/3
// Ready with no restart (no pod ever met a second speaker on its node), no
// static pod left, the VIP on every lo and each node's socket answering.
func TestClusterBootstrap(t *testing.T) {
	lab.RequireCluster(t)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	helm := filepath.Join(root, "bin", "helm")
	if _, err := os.Stat(helm); err != nil {
		t.Fatalf("%s missing: `make helm` builds it (make e2e does)", helm)
	}
	img := clusterImage(t)
	if _, err := os.Stat(img); err != nil {
		t.Fatalf("image tarball %s missing: `make image` builds it (or set VIPCAST_IMAGE)", img)
	}
	start := time.Now()
	l := lab.New(t, lab.Options{Router: lab.FRR, Nodes: 3, Bootstrap: true})
	l.DumpOnFailure(t)
	mon, err := l.MonitorFIB(lab.VIP4)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	b := &bootRun{l: l, mon: mon, helm: helm, chart: filepath.Join(root, "charts", "vipcast"), img: img}
	t.Cleanup(func() {
		if t.Failed() {
			b.dump(t)
		}
	})
	n1 := l.Node(1)
	steps := []struct {
		name string
		run  func(*testing.T)
	}{
		{"static-pod-before-the-cluster", b.staticPod},
		{"kubeadm-init-n1", b.initFirst},
		{"join-n2-n3-through-the-vip", b.join},
		{"helm-install-n1-labelled", b.helmInstall},
		{"n1-static-pod-to-daemonset", b.moveOff(n1)},
		{"final-state", b.finalState},
	}
	for _, s := range steps {
		t0 := time.Now()
		if !t.Run(s.name, s.run) {
			return
		}
		t.Logf("step %s: %v", s.name, time.Since(t0).Round(time.Millisecond))
	}
	// The poller: from the VIP's first nexthop on, never none.
	var first time.Time
	for _, st := range mon.History(start) {
		switch {
		case first.IsZero() && len(st.Nexthops) > 0:
			first = st.At
		case !first.IsZero() && len(st.Nexthops) == 0:
			t.Errorf("the VIP had no nexthop at the router %v after it first appeared", st.At.Sub(first).Round(time.Millisecond))
		}
	}
	if first.IsZero() {
		t.Errorf("the VIP never had a nexthop")
	}
	var changes []string
	for _, st := range mon.History(first) {
		changes = append(changes, fmt.Sprintf("+%v %v", st.At.Sub(first).Round(time.Millisecond), st.Nexthops))
	}
	t.Logf("router FIB for %s from its first nexthop on (%d changes, %d seen by the backstop poll only):\n  %s",
		lab.VIP4, len(changes), mon.Missed(), strings.Join(changes, "\n  "))
	t.Logf("bootstrap to DaemonSet: %v in all", time.Since(start).Round(time.Millisecond))
}

// bootRun is what the steps of TestClusterBootstrap share.
type bootRun struct {
	l            *lab.Lab
	mon          *lab.FIBMonitor
	helm, chart  string
	img, ref     string
	values       string
	initDone     time.Time
	staticPodLog string // the static pod's container log, read once it is gone
}

const (
	bootDSSelector     = "app.kubernetes.io/name=vipcast,app.kubernetes.io/instance=vipcast"
	bootStaticSelector = "app.kubernetes.io/name=vipcast,app.kubernetes.io/component=static-pod"
	bootMigrationLabel = "vipcast.io/static-pod"
)

func (b *bootRun) ctx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// shell runs one of the doc's commands on node n ("ssh nN ...").
func (b *bootRun) shell(t *testing.T, n *lab.Node, script string) string {
	t.Helper()
	t.Logf("%s$ %s", n.Name, script)
	out, err := n.NodeShell(b.ctx(t, 2*time.Minute), script)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// admin runs one of the doc's kubectl or helm commands on the admin's
// machine (through the VIP).
func (b *bootRun) admin(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	t.Logf("admin$ %s", strings.Join(args, " "))
	out, err := b.l.Admin(b.ctx(t, timeout), filepath.Dir(b.helm), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (b *bootRun) status(n *lab.Node) (string, error) {
	out, err := exec.Command(lab.VipcastBin(), "status", "--socket", filepath.Join(n.RunVipcastDir(), "vipcast.sock")).CombinedOutput()
	return string(out), err
}

// staticPod: docs/install.md "Bootstrap: static pod for kubeadm init",
// steps 1-3, then kubeadm init's kubelet-start: the static vipcast runs
// before anything else on the node.
func (b *bootRun) staticPod(t *testing.T) {
	l, n1 := b.l, b.l.Node(1)
	if err := n1.PrepareNode(); err != nil { // containerd, and step 1: the CA
		t.Fatal(err)
	}
	ref, err := n1.ImportImageRef(b.img) // "The image": ctr -n k8s.io images import
	if err != nil {
		t.Fatal(err)
	}
	b.ref = ref
	cfg := filepath.Join(l.Dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(l.BootstrapVipcastConfig()), 0o644); err != nil {
		t.Fatal(err)
	}
	b.shell(t, n1, "install -D -m 0600 "+cfg+" /etc/vipcast/config.yaml")
	b.shell(t, n1, "mkdir -p /etc/kubernetes/manifests\nvipcast manifest static-pod --config /etc/vipcast/config.yaml --image "+ref+" > /etc/kubernetes/manifests/vipcast.yaml")
	manifest, err := os.ReadFile(filepath.Join(n1.StaticPodPath(), "vipcast.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(manifest), "image: "+ref) {
		t.Fatalf("the manifest does not run %s:\n%s", ref, manifest)
	}
	t0 := time.Now()
	if err := n1.StartKubelet(); err != nil {
		t.Fatal(err)
	}
	var st string
	pollAPI(t, "the static vipcast on n1 answering on its socket", 3*time.Minute, func() bool {
		st, err = b.status(n1)
		return err == nil
	})
	t.Logf("kubelet start -> static vipcast answering: %v; status before the cluster exists:\n%s", time.Since(t0).Round(time.Millisecond), st)
	// No apiserver anywhere: the speaker holds the VIP back.
	if nh := b.monitor(t).Current().Nexthops; len(nh) != 0 {
		t.Errorf("the VIP is routed (%v) before any apiserver runs", nh)
	}
	if on, err := n1.VIPOnLo(lab.VIP4); err != nil || on {
		t.Errorf("VIP on n1's lo = %v (err %v) before any apiserver runs", on, err)
	}
}

// initFirst: kubeadm init on n1: the VIP comes up with n1 only, and n1's
// kubelet registers its Node through it.
func (b *bootRun) initFirst(t *testing.T) {
	l, n1 := b.l, b.l.Node(1)
	t0 := time.Now()
	if err := n1.InitControlPlane(); err != nil {
		t.Fatal(err)
	}
	ready := time.Now()
	mon := b.monitor(t)
	routed, err := mon.WaitExactly(t0, time.Minute, l.Addrs(lab.VIP4, n1))
	if err != nil {
		t.Fatal(err)
	}
	// Routed before /readyz passed means routed as a last resort (the
	// static pod's default) once the starting apiserver answered.
	t.Logf("kubeadm init on n1: apiserver ready %v after start; the VIP routed via n1 only %v after start (readyz passed at %v)",
		ready.Sub(t0).Round(time.Millisecond), routed.Sub(t0).Round(time.Millisecond), ready.Sub(t0).Round(time.Millisecond))
	if err := l.MarkControlPlane(n1, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitNode(n1, 2*time.Minute, "Ready", func(k lab.KubeNode) bool { return k.Condition("Ready") == "True" }); err != nil {
		t.Fatal(err)
	}
	// The static pod's mirror in the API, Running.
	pollAPI(t, "the mirror pod vipcast-n1 Running", 2*time.Minute, func() bool {
		pods, err := l.KubePods(clusterNamespace, bootStaticSelector)
		p, ok := lab.PodOn(pods, "n1")
		return err == nil && ok && p.Metadata.Name == "vipcast-n1" && p.Status.Phase == "Running"
	})
	bootKubeletOnVIP(t, n1)
	b.initDone = time.Now()
	t.Logf("kubeadm init on n1 -> Node n1 Ready: %v", b.initDone.Sub(t0).Round(time.Millisecond))
}

// monitor returns the test's FIB monitor (one lab-wide monitor, started
// before anything ran).
func (b *bootRun) monitor(t *testing.T) *lab.FIBMonitor {
	t.Helper()
	if b.mon == nil {
		t.Fatal("no FIB monitor")
	}
	return b.mon
}

// join: kubeadm join --control-plane on n2 and n3: the image imported
// (docs/install.md, "The image": on every control-plane node), the API
// found through the VIP, the kubelets through the VIP. They get no static
// pod ("Other control-plane nodes can join and get the DaemonSet
// directly"), so the VIP stays on n1 alone.
func (b *bootRun) join(t *testing.T) {
	l := b.l
	for _, n := range []*lab.Node{l.Node(2), l.Node(3)} {
		t0 := time.Now()
		if err := n.PrepareNode(); err != nil {
			t.Fatal(err)
		}
		if _, err := n.ImportImageRef(b.img); err != nil {
			t.Fatal(err)
		}
		if err := n.JoinControlPlane(); err != nil {
			t.Fatal(err)
		}
		if err := l.MarkControlPlane(n, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := l.WaitNode(n, 2*time.Minute, "Ready", func(k lab.KubeNode) bool { return k.Condition("Ready") == "True" }); err != nil {
			t.Fatal(err)
		}
		bootKubeletOnVIP(t, n)
		t.Logf("kubeadm join %s -> Node Ready: %v", n.Name, time.Since(t0).Round(time.Millisecond))
	}
	if err := l.WaitNodesReady(time.Minute); err != nil {
		t.Fatal(err)
	}
	// One etcd cluster: every apiserver lists the three Nodes.
	for _, n := range l.Nodes() {
		body, err := n.KubeRequest("GET", "/api/v1/nodes", nil)
		if err != nil {
			t.Fatalf("%s apiserver: %v", n.Name, err)
		}
		for _, m := range l.Nodes() {
			if !strings.Contains(string(body), `"name":"`+m.Name+`"`) {
				t.Errorf("%s's apiserver does not list Node %s", n.Name, m.Name)
			}
		}
	}
	if nh := b.monitor(t).Current().Nexthops; !slices.Equal(nh, l.Addrs(lab.VIP4, l.Node(1))) {
		t.Errorf("after the joins the VIP is routed via %v, want n1 only (no speaker on n2, n3 yet)", nh)
	}
}

// bootKubeletOnVIP checks the node's kubelet talks to the API through the
// VIP.
func bootKubeletOnVIP(t *testing.T, n *lab.Node) {
	t.Helper()
	lab.WaitFor(t, n.Name+" kubelet connected to the VIP", 30*time.Second, func() bool {
		out, err := n.Exec("ss", "-Htnp", "state", "established", "dst", lab.VIP4.Addr().String()+":6443")
		return err == nil && strings.Contains(out, `"kubelet"`)
	})
}

// helmInstall: "From the static pod to the DaemonSet", step 1: the node
// running the static pod labelled, helm install: the DaemonSet runs on n2
// and n3 only, and the VIP has all three nexthops.
func (b *bootRun) helmInstall(t *testing.T) {
	l := b.l
	values, err := l.ChartValues(b.ref)
	if err != nil {
		t.Fatal(err)
	}
	b.values = filepath.Join(l.Dir, "my-values.yaml")
	if err := os.WriteFile(b.values, []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	b.admin(t, time.Minute, "kubectl", "label", "node", "n1", bootMigrationLabel+"=true")
	b.admin(t, 2*time.Minute, "helm", "install", "vipcast", b.chart, "-n", clusterNamespace, "-f", b.values)
	for _, name := range []string{"n2", "n3"} {
		pollAPI(t, "the DaemonSet pod on "+name+" Ready", 3*time.Minute, func() bool {
			pods, err := l.KubePods(clusterNamespace, bootDSSelector)
			p, ok := lab.PodOn(pods, name)
			return err == nil && ok && p.Ready()
		})
	}
	at, err := b.monitor(t).WaitExactly(t0, time.Minute, l.AllAddrs(lab.VIP4))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("helm install -> 3 nexthops (n1 static, n2 and n3 DaemonSet): %v", at.Sub(t0).Round(time.Millisecond))
	pods, err := l.KubePods(clusterNamespace, bootDSSelector)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := lab.PodOn(pods, "n1"); ok {
		t.Errorf("a DaemonSet pod %s on n1, which is labelled %s", p.Metadata.Name, bootMigrationLabel)
	}
}

// moveOff: "From the static pod to the DaemonSet", step 2, on n: the
// manifest moved out of the staticPodPath (the kubelet sends SIGTERM:
// withdraw, drain, VIP removed, exit), kubectl wait for the mirror pod's
// deletion, the label removed, kubectl rollout status, the router sees n
// again. When the mirror pod is gone the static speaker must be gone too:
// its node lock (@vipcast/speaker) free and the VIP off lo, or the
// DaemonSet pod would meet it and be refused.
func (b *bootRun) moveOff(n *lab.Node) func(*testing.T) {
	return func(t *testing.T) {
		l := b.l
		mon := b.monitor(t)
		others := l.Addrs(lab.VIP4, l.Except(n)...)
		// Hold the static pod's log files open on the node (the kubelet
		// deletes them with the pod): `kubectl logs` goes through the
		// mirror pod, which is deleted while the container still drains.
		podLog, err := n.OpenPodLog(clusterNamespace, "vipcast-"+n.Name, "vipcast")
		if err != nil {
			t.Fatal(err)
		}
		defer podLog.Close()
		t0 := time.Now()
		b.shell(t, n, "mv /etc/kubernetes/manifests/vipcast.yaml /root/")
		gone, err := mon.WaitExactly(t0, 30*time.Second, others)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("manifest moved -> %s's nexthop withdrawn: %v", n.Name, gone.Sub(t0).Round(time.Millisecond))
		b.admin(t, 90*time.Second, "kubectl", "-n", clusterNamespace, "wait", "--for=delete", "pod/vipcast-"+n.Name, "--timeout=60s")
		deleted := time.Now()
		t.Logf("manifest moved -> mirror pod deleted: %v", deleted.Sub(t0).Round(time.Millisecond))
		if out, err := n.Exec("ss", "-Hxl"); err != nil || strings.Contains(out, "@"+"vipcast/speaker") {
			t.Errorf("%s: the static speaker's lock is still held when its mirror pod is gone (err %v):\n%s", n.Name, err, out)
		}
		if on, err := n.VIPOnLo(lab.VIP4); err != nil || on {
			t.Errorf("%s: VIP on lo = %v (err %v) once the static pod is gone", n.Name, on, err)
		}
		// The container has exited (its lock is free); containerd may
		// still be copying its last lines.
		pollAPI(t, "the static pod's last log line on "+n.Name, 15*time.Second, func() bool {
			return strings.Contains(podLog.String(), staticPodLastLine)
		})
		b.staticPodLog = podLog.String()
		b.admin(t, time.Minute, "kubectl", "label", "node", n.Name, bootMigrationLabel+"-")
		b.admin(t, 4*time.Minute, "kubectl", "-n", clusterNamespace, "rollout", "status", "ds/vipcast", "--timeout=3m")
		back, err := mon.WaitExactly(deleted, time.Minute, l.AllAddrs(lab.VIP4))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: static pod -> DaemonSet: routed again %v after the manifest moved (%v after the label went)",
			n.Name, back.Sub(t0).Round(time.Millisecond), back.Sub(deleted).Round(time.Millisecond))
		for _, st := range mon.History(t0) {
			if len(st.Nexthops) < len(others) {
				t.Errorf("during the handover on %s the VIP had only %v at +%v", n.Name, st.Nexthops, st.At.Sub(t0).Round(time.Millisecond))
			}
		}
	}
}

// staticPodLastLine is the last line of the static speaker's SIGTERM
// sequence that the test looks for.
const staticPodLastLine = "shutting down: withdrawing VIPs"

// finalState: the DaemonSet runs everywhere with no restart, nothing of
// the static pod is left, and every node routes the VIP.
func (b *bootRun) finalState(t *testing.T) {
	l := b.l
	l.HoldNexthops(t, lab.VIP4, l.AllAddrs(lab.VIP4), time.Second)
	checkDaemonSetReady(t, l.Node(2))
	pods, err := l.KubePods(clusterNamespace, bootDSSelector)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range l.Nodes() {
		p, ok := lab.PodOn(pods, n.Name)
		if !ok {
			t.Errorf("no DaemonSet pod on %s", n.Name)
			continue
		}
		// A pod that started next to a running speaker would have been
		// refused (exit, restart): none did.
		if p.Restarts() != 0 || !p.Ready() {
			t.Errorf("DaemonSet pod %s on %s: ready %v, restarts %d; want ready, 0", p.Metadata.Name, n.Name, p.Ready(), p.Restarts())
		}
		if on, err := n.VIPOnLo(lab.VIP4); err != nil || !on {
			t.Errorf("%s: VIP on lo = %v (err %v), want on", n.Name, on, err)
		}
		if out, err := b.status(n); err != nil || !strings.Contains(out, lab.VIP4.String()) {
			t.Errorf("%s: vipcast status from the node's socket: %v\n%s", n.Name, err, out)
		}
	}
	static, err := l.KubePods(clusterNamespace, bootStaticSelector)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range static {
		t.Errorf("static vipcast pod %s on %s still in the API", p.Metadata.Name, p.Spec.NodeName)
	}
	if _, err := os.Stat(filepath.Join(l.Node(1).StaticPodPath(), "vipcast.yaml")); !os.IsNotExist(err) {
		t.Errorf("n1's staticPodPath still holds vipcast.yaml (err %v)", err)
	}
	if b.staticPodLog == "" {
		t.Errorf("no log of the static pod found on n1")
	}
	for _, want := range []string{"signal received: graceful shutdown", staticPodLastLine} {
		if !strings.Contains(b.staticPodLog, want) {
			t.Errorf("the static pod's log lacks %q (SIGTERM sequence):\n%s", want, lastLines(b.staticPodLog, 30))
		}
	}
	if strings.Contains(b.staticPodLog, "another vipcast tried to start") {
		t.Errorf("a second speaker tried to start next to the static pod:\n%s", lastLines(b.staticPodLog, 30))
	}
}

// dump adds the cluster's pods and the vipcast logs to a failed run.
func (b *bootRun) dump(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := b.l.Admin(ctx, "", "kubectl", "get", "nodes,pods", "-A", "-o", "wide")
	t.Logf("kubectl get nodes,pods -A:\n%s", out)
	out, _ = b.l.Admin(ctx, "", "kubectl", "-n", clusterNamespace, "describe", "pods", "-l", "app.kubernetes.io/name=vipcast")
	t.Logf("kubectl describe pods:\n%s", lastLines(out, 150))
	for _, n := range b.l.Nodes() {
		logs, _ := filepath.Glob(filepath.Join(n.Dir, "kubelet", "pod-logs", clusterNamespace+"_vipcast-*", "*", "*.log"))
		for _, f := range logs {
			t.Logf("%s:\n%s", f, lab.Tail(f, 30))
		}
		t.Logf("%s kubelet log (tail):\n%s", n.Name, lab.Tail(n.KubeletLog(), 25))
	}
	if b.staticPodLog != "" {
		t.Logf("the static pod's log (tail):\n%s", lastLines(b.staticPodLog, 40))
	}
}
