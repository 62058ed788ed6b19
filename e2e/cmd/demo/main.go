// Command demo shows vipcast's main job in a throwaway network lab: three
// control-plane nodes (etcd, a real kube-apiserver and vipcast each) behind
// an FRR (or BIRD) router advertising 203.0.113.10/32 by ECMP. It kills one
// apiserver, shows the route shrink and heal with measured times, drains a
// node with SIGTERM, and tears everything down. Run as root:
//
//	cd e2e && go run ./cmd/demo [-router frr|bird]
//
// With -cluster (make demo CLUSTER=1) it shows the cluster version instead:
// see clusterDemo.
//
// It builds kube-apiserver (e2e/tools/build.sh, ~4 min the first time) if
// it is missing; VIPCAST_BIN selects the vipcast binary.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

func main() {
	router := flag.String("router", "frr", "upstream router: frr or bird")
	cluster := flag.Bool("cluster", false, "the cluster version: docs/install.md's bootstrap, helm-installed vipcast, one apiserver killed (make demo CLUSTER=1)")
	image := flag.String("image", "../bin/vipcast-image.tar", "with -cluster: vipcast's image tarball (make image)")
	helm := flag.String("helm", "../bin/helm", "with -cluster: the helm binary (make helm)")
	flag.Parse()
	r := lab.Router(*router)
	if r != lab.FRR && r != lab.BIRD {
		fmt.Fprintf(os.Stderr, "-router %q: use frr or bird\n", *router)
		os.Exit(2)
	}
	p := lab.NewProgram("demo")
	defer p.Close()
	if *cluster {
		clusterDemo(p, r, *image, *helm)
		p.Logf("tearing down")
		p.Close()
		if p.Failed() {
			os.Exit(1)
		}
		fmt.Println("demo done")
		return
	}

	if _, err := os.Stat(lab.KubeAPIServerBin()); err != nil {
		p.Logf("building kube-apiserver v1.37.2 from the Go module proxy (first time only, ~4 min)...")
		buildAPIServer(p)
	}
	if missing := lab.Missing(r); len(missing) > 0 {
		p.Skipf("%s", strings.Join(missing, "; "))
	}

	vip := lab.VIP4
	p.Logf("starting the lab: %s router, 3 nodes with etcd + kube-apiserver + vipcast...", r)
	l := lab.New(p, lab.Options{Router: r, Nodes: 3})
	show := func(what string) {
		p.Logf("%s\n    router: %s\n    30 client connections to %s:%d -> %s",
			what, strings.ReplaceAll(l.RouterRouteText(vip), "\n", "\n            "),
			vip.Addr(), lab.ResponderPort, spread(l.ClientSpread(vip.Addr(), 30)))
	}
	show("steady state: every healthy node is a nexthop")
	status := func(n *lab.Node) {
		out, err := n.Vipcast("status")
		if err != nil {
			p.Errorf("vipcast status on %s: %v\n%s", n.Name, err, out)
			return
		}
		p.Logf("vipcast status on %s:\n    %s", n.Name, strings.ReplaceAll(strings.TrimRight(out, "\n"), "\n", "\n    "))
	}
	status(l.Node(1))

	n := l.Node(2)
	p.Logf("SIGKILL kube-apiserver on %s (%s)", n.Name, n.Addr4)
	t0, err := n.KillAPIServer(syscall.SIGKILL)
	if err != nil {
		p.Fatal(err)
	}
	gone := l.WaitNexthops(p, vip, l.Addrs(vip, l.Except(n)...), 5*time.Second)
	p.Logf("MEASURED apiserver killed -> %s gone from the router's FIB: %v", n.Addr4, gone.Sub(t0).Round(time.Millisecond))
	show("after the failure")
	status(n)

	p.Logf("restarting kube-apiserver on %s", n.Name)
	if err := n.StartAPIServer(); err != nil {
		p.Fatal(err)
	}
	ready, err := n.WaitReadyAt(60 * time.Second)
	if err != nil {
		p.Fatal(err)
	}
	back := l.WaitNexthops(p, vip, l.AllAddrs(vip), 15*time.Second)
	p.Logf("MEASURED /readyz passing -> %s back in the FIB: %v (rise %d x %v)", n.Addr4, back.Sub(ready).Round(time.Millisecond), l.Opts.Rise, l.Opts.HealthInterval)
	show("healed")

	n = l.Node(3)
	p.Logf("SIGTERM vipcast on %s: withdraw, drain %v, remove the VIP, exit", n.Name, l.Opts.DrainPeriod)
	t0, err = n.KillVipcast(syscall.SIGTERM)
	if err != nil {
		p.Fatal(err)
	}
	gone = l.WaitNexthops(p, vip, l.Addrs(vip, l.Except(n)...), 5*time.Second)
	onLo, _ := n.VIPOnLo(vip)
	p.Logf("MEASURED SIGTERM -> %s gone from the FIB: %v (vipcast still running: %v, VIP still on lo: %v)",
		n.Addr4, gone.Sub(t0).Round(time.Millisecond), n.VipcastAlive(), onLo)
	if err := n.WaitVipcastExit(15 * time.Second); err != nil {
		p.Errorf("vipcast exit: %v", err)
	}
	onLo, _ = n.VIPOnLo(vip)
	p.Logf("MEASURED SIGTERM -> vipcast exited: %v (VIP on lo now: %v)", time.Since(t0).Round(time.Millisecond), onLo)
	show("node drained")

	p.Logf("tearing down")
	p.Close()
	if p.Failed() {
		os.Exit(1)
	}
	fmt.Println("demo done")
}

func spread(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func buildAPIServer(p *lab.Program) {
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "tools", "build.sh")
	cmd := exec.Command(script, "kube-apiserver")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		p.Fatalf("building kube-apiserver: %v", err)
	}
}
