package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// clusterDemo is `demo -cluster` (make demo CLUSTER=1): a real highly
// available control plane behind the VIP, built as docs/install.md builds
// it: vipcast as a static pod on n1 before the cluster exists, kubeadm init
// there, n2 and n3 joining through the VIP, then helm install and the
// static pod handing over to the DaemonSet. Then one apiserver is killed:
// the router's FIB and the Nodes' status show the cluster riding through
// on the other two; the apiserver comes back.
func clusterDemo(p *lab.Program, r lab.Router, image, helm string) {
	for _, b := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl"} {
		if _, err := os.Stat(lab.KubeBin(b)); err != nil {
			p.Logf("building the Kubernetes binaries v1.37.2 from the Go module proxy (first time only, ~9 min)...")
			runBuild(p, "kube")
			break
		}
	}
	image, _ = filepath.Abs(image)
	helm, _ = filepath.Abs(helm)
	var missing []string
	missing = append(missing, lab.Missing(r)...)
	missing = append(missing, lab.MissingCluster()...)
	for _, f := range []string{image, helm} {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f+" missing (make image helm)")
		}
	}
	if len(missing) > 0 {
		p.Skipf("%s", strings.Join(missing, "; "))
	}
	_, file, _, _ := runtime.Caller(0)
	chart := filepath.Join(filepath.Dir(file), "..", "..", "..", "charts", "vipcast")
	vip := lab.VIP4
	start := time.Now()
	l := lab.New(p, lab.Options{Router: r, Nodes: 3, Bootstrap: true})
	fib := func(what string) {
		p.Logf("%s\n    router: %s", what, strings.ReplaceAll(l.RouterRouteText(vip), "\n", "\n            "))
	}
	must := func(err error) {
		if err != nil {
			p.Fatal(err)
		}
	}
	shell := func(n *lab.Node, script string) {
		p.Logf("%s$ %s", n.Name, script)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_, err := n.NodeShell(ctx, script)
		must(err)
	}
	admin := func(args ...string) string {
		p.Logf("admin$ %s", strings.Join(args, " "))
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		out, err := l.Admin(ctx, filepath.Dir(helm), args...)
		must(err)
		return out
	}
	indent := func(s string) string { return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") }

	n1, n2, n3 := l.Node(1), l.Node(2), l.Node(3)
	p.Logf("n1: containerd, the cluster CA, vipcast's image; docs/install.md's static pod, then kubeadm init")
	must(n1.PrepareNode())
	ref, err := n1.ImportImageRef(image)
	must(err)
	cfg := filepath.Join(l.Dir, "config.yaml")
	must(os.WriteFile(cfg, []byte(l.BootstrapVipcastConfig()), 0o644))
	shell(n1, "install -D -m 0600 "+cfg+" /etc/vipcast/config.yaml")
	shell(n1, "mkdir -p /etc/kubernetes/manifests\nvipcast manifest static-pod --config /etc/vipcast/config.yaml --image "+ref+" > /etc/kubernetes/manifests/vipcast.yaml")
	must(n1.StartKubelet())
	must(n1.InitControlPlane())
	l.WaitNexthops(p, vip, l.Addrs(vip, n1), 3*time.Minute)
	fib("n1's apiserver is ready: the static vipcast announces the VIP")
	must(l.MarkControlPlane(n1, 2*time.Minute))
	for _, n := range []*lab.Node{n2, n3} {
		p.Logf("%s: kubeadm join --control-plane through the VIP", n.Name)
		must(n.PrepareNode())
		_, err := n.ImportImageRef(image)
		must(err)
		must(n.JoinControlPlane())
		must(l.MarkControlPlane(n, 2*time.Minute))
	}
	must(l.WaitNodesReady(2 * time.Minute))
	values, err := l.ChartValues(ref)
	must(err)
	vf := filepath.Join(l.Dir, "my-values.yaml")
	must(os.WriteFile(vf, []byte(values), 0o644))
	admin("kubectl", "label", "node", "n1", "vipcast.io/static-pod=true")
	admin("helm", "install", "vipcast", chart, "-n", "kube-system", "-f", vf)
	l.WaitNexthops(p, vip, l.AllAddrs(vip), 3*time.Minute)
	fib("the DaemonSet runs on n2 and n3, the static pod on n1")
	p.Logf("n1: the static pod hands over to the DaemonSet")
	shell(n1, "mv /etc/kubernetes/manifests/vipcast.yaml /root/")
	admin("kubectl", "-n", "kube-system", "wait", "--for=delete", "pod/vipcast-n1", "--timeout=60s")
	admin("kubectl", "label", "node", "n1", "vipcast.io/static-pod-")
	admin("kubectl", "-n", "kube-system", "rollout", "status", "ds/vipcast", "--timeout=3m")
	l.WaitNexthops(p, vip, l.AllAddrs(vip), time.Minute)
	p.Logf("cluster up behind the VIP in %v", time.Since(start).Round(time.Second))
	fib("steady state: the DaemonSet on every control-plane node")
	p.Logf("kubectl get nodes,pods -n kube-system -o wide (through the VIP):\n%s", indent(admin("kubectl", "get", "nodes,pods", "-n", "kube-system", "-o", "wide")))

	n := n2
	p.Logf("SIGKILL kube-apiserver on %s (%s)", n.Name, n.Addr4)
	t0, err := n.KillAPIServer(syscall.SIGKILL)
	must(err)
	gone := l.WaitNexthops(p, vip, l.Addrs(vip, l.Except(n)...), 5*time.Second)
	p.Logf("MEASURED apiserver killed -> %s gone from the router's FIB: %v", n.Addr4, gone.Sub(t0).Round(time.Millisecond))
	fib("after the failure")
	// The kubelet renews its Lease every 10 s through the VIP: served by n1 or n3 now.
	lab.WaitFor(p, n.Name+"'s kubelet renewing its Lease", time.Minute, func() bool {
		b, err := n1.KubeRequest(http.MethodGet, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/"+n.Name, nil)
		var lease struct {
			Spec struct {
				RenewTime time.Time `json:"renewTime"`
			} `json:"spec"`
		}
		return err == nil && json.Unmarshal(b, &lease) == nil && lease.Spec.RenewTime.After(t0)
	})
	p.Logf("%s's kubelet renewed its Lease through the VIP with its apiserver down; kubectl get nodes:\n%s", n.Name, indent(admin("kubectl", "get", "nodes")))
	p.Logf("restarting kube-apiserver on %s", n.Name)
	must(n.StartAPIServer())
	ready, err := n.WaitReadyAt(90 * time.Second)
	must(err)
	back := l.WaitNexthops(p, vip, l.AllAddrs(vip), 30*time.Second)
	p.Logf("MEASURED /readyz passing -> %s back in the FIB: %v", n.Addr4, back.Sub(ready).Round(time.Millisecond))
	fib("healed")
	p.Logf("kubectl get nodes:\n%s", indent(admin("kubectl", "get", "nodes")))
}

func runBuild(p *lab.Program, target string) {
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command(filepath.Join(filepath.Dir(file), "..", "..", "tools", "build.sh"), target)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		p.Fatalf("building %s: %v", target, err)
	}
}
