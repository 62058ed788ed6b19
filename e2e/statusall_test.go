package e2e

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// clusterStatus is the part of `vipcast status --all -o json` the test reads.
type clusterStatus struct {
	APIError string        `json:"apiError"`
	Nodes    []statusEntry `json:"nodes"`
	Local    *struct {
		VIPs []struct {
			Reason string `json:"reason"`
		} `json:"vips"`
	} `json:"local"`
}

type statusEntry struct {
	Node    string    `json:"node"`
	Renewed time.Time `json:"renewed"`
	Stale   bool      `json:"stale"`
	Status  *struct {
		Advertised bool `json:"advertised"`
		VIPs       []struct {
			Reason string `json:"reason"`
		} `json:"vips"`
		LastProbe *struct {
			OK     bool   `json:"ok"`
			Reason string `json:"reason"`
		} `json:"lastProbe"`
		Sessions []struct {
			State string `json:"state"`
		} `json:"sessions"`
	} `json:"status"`
}

func statusAll(t *testing.T, l *lab.Lab, args ...string) (clusterStatus, string, int, time.Duration) {
	t.Helper()
	out, code, took := l.StatusAll(append([]string{"-o", "json"}, args...)...)
	var cs clusterStatus
	if code == 0 || code == 4 {
		if err := json.Unmarshal([]byte(out), &cs); err != nil {
			t.Fatalf("status --all -o json (exit %d): %v\n%s", code, err, out)
		}
	}
	return cs, out, code, took
}

// TestStatusAll: three nodes behind the VIP with one control plane (one
// etcd cluster), each vipcast's kubeconfig pointing at the VIP, as in a
// real cluster. `vipcast status --all`, run outside the cluster through
// the VIP, lists all three from their Leases; a node whose apiserver is
// killed shows withdrawn and why within 2 s (its publisher reaches the
// other apiservers through the router once the VIP has left its lo); with
// every etcd stopped the last resort keeps the VIP and the command still
// lists all three, from the apiservers' watch cache; with every apiserver
// down the command says the API is unreachable, exits 4, and shows what
// the node's own socket says.
func TestStatusAll(t *testing.T) {
	lab.Require(t, lab.FRR)
	// The last resort on, as vipcast's default: a refused connection (the
	// killed apiservers below) still withdraws.
	l := lab.New(t, lab.Options{Router: lab.FRR, ControlPlane: true, Kubeconfig: true, LastResort: "{enabled: true}"})
	l.DumpOnFailure(t)
	n1, n2, n3 := l.Node(1), l.Node(2), l.Node(3)

	// All three listed, advertised, fresh.
	var cs clusterStatus
	var out string
	deadline := time.Now().Add(20 * time.Second)
	for {
		var code int
		cs, out, code, _ = statusAll(t, l)
		ok := code == 0 && len(cs.Nodes) == 3
		for _, e := range cs.Nodes {
			ok = ok && !e.Stale && e.Status != nil && e.Status.Advertised && len(e.Status.Sessions) == 1 && e.Status.Sessions[0].State == "established"
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status --all never listed 3 advertised nodes (exit %d):\n%s", code, out)
		}
		time.Sleep(200 * time.Millisecond) // poll interval
	}
	var names []string
	for _, e := range cs.Nodes {
		names = append(names, e.Node)
	}
	if !slices.Equal(names, []string{n1.Name, n2.Name, n3.Name}) {
		t.Errorf("nodes %v", names)
	}
	// The latency an operator sees (a process start, one LIST through
	// the VIP): the issue asks for under 1 s; measured, not asserted.
	var worst time.Duration
	for range 5 {
		tbl, code, took := l.StatusAll()
		if code != 0 || !strings.Contains(tbl, "ADVERTISED") {
			t.Fatalf("status --all table: exit %d\n%s", code, tbl)
		}
		worst = max(worst, took)
	}
	l.Record(t, "status_all_latency_worst_of_5", worst)
	if _, err := exec.LookPath("kubectl"); err == nil {
		kout, err := n1.Kubectl("get", "leases", "-n", "kube-system", "-l", "app.kubernetes.io/name=vipcast", "-o", "name")
		if err != nil || strings.Count(kout, "lease.coordination.k8s.io/vipcast-") != 3 {
			t.Errorf("kubectl get leases -l app.kubernetes.io/name=vipcast: %v\n%s", err, kout)
		}
	}

	statusAllWithoutEtcd(t, l)

	// n2's apiserver killed: its row says withdrawn, unhealthy, and the
	// probe's reason. The time is the Lease write's own (renewTime, the
	// publisher's clock), so a slow CLI start on a busy machine does not
	// count; the poll itself waits up to 15 s.
	t0, err := n2.KillAPIServer(syscall.SIGKILL)
	if err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		cs, out, _, _ = statusAll(t, l)
		i := slices.IndexFunc(cs.Nodes, func(e statusEntry) bool {
			return e.Node == n2.Name && e.Status != nil && !e.Status.Advertised && len(e.Status.VIPs) == 1 && e.Status.VIPs[0].Reason == "unhealthy"
		})
		if i >= 0 {
			e := cs.Nodes[i]
			d := e.Renewed.Sub(t0)
			l.Record(t, "status_all_apiserver_sigkill_to_lease_withdrawn", d)
			if d > 2*time.Second {
				t.Errorf("n2's withdraw reached its Lease %v after the kill, want within 2s", d)
			}
			if e.Status.LastProbe == nil || e.Status.LastProbe.OK || e.Status.LastProbe.Reason == "" {
				t.Errorf("n2's last probe does not say why: %+v", e.Status.LastProbe)
			}
			l.Record(t, "status_all_apiserver_sigkill_to_cli_shows_withdrawn", time.Since(t0))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n2 never showed withdrawn/unhealthy:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
	tbl, _, _ := l.StatusAll()
	if !strings.Contains(tbl, "unhealthy") {
		t.Errorf("table:\n%s", tbl)
	}

	// Every apiserver down: the VIP is withdrawn everywhere, the API is
	// unreachable. The command says so, exits 4, and shows n1's own
	// status from its socket.
	for _, n := range []*lab.Node{n1, n3} {
		if _, err := n.KillAPIServer(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	l.WaitNexthops(t, v4, nil, 10*time.Second)
	cs, out, code, took := statusAll(t, l, "--socket", n1.Socket())
	l.Record(t, "status_all_api_unreachable_latency", took)
	if code != 4 || cs.APIError == "" || !strings.Contains(cs.APIError, "unreachable") {
		t.Errorf("API down: exit %d, want 4:\n%s", code, out)
	}
	if cs.Local == nil || len(cs.Local.VIPs) != 1 || cs.Local.VIPs[0].Reason != "unhealthy" {
		t.Errorf("API down: no local status from n1's socket:\n%s", out)
	}
	tbl, code, _ = l.StatusAll("--socket", n1.Socket())
	if code != 4 || !strings.Contains(tbl, "KUBERNETES API UNREACHABLE") || !strings.Contains(tbl, "unhealthy") {
		t.Errorf("API down, table: exit %d\n%s", code, tbl)
	}
}

// statusAllWithoutEtcd stops every etcd (no quorum, no write anywhere):
// each node degrades to a last resort and keeps the VIP, and `status --all`
// through the VIP still exits 0 and lists all three nodes, served from an
// apiserver's watch cache (resourceVersion=0) with each node's last write.
// Then the etcds start again and every node is healthy and writing.
func statusAllWithoutEtcd(t *testing.T, l *lab.Lab) {
	t.Helper()
	t0 := stopEtcds(l.Nodes())
	lab.WaitFor(t, "every node a last resort", 20*time.Second, func() bool {
		for _, n := range l.Nodes() {
			if out, err := n.Vipcast("status"); err != nil || !strings.Contains(out, "last-resort") {
				return false
			}
		}
		return true
	})
	l.Record(t, "status_all_etcd_stop_all_to_last_resort", time.Since(t0))
	l.WaitNexthops(t, v4, l.AllAddrs(v4), 5*time.Second)
	cs, out, code, took := statusAll(t, l)
	l.Record(t, "status_all_etcd_down_latency", took)
	if code != 0 || cs.APIError != "" || len(cs.Nodes) != 3 {
		t.Fatalf("every etcd stopped, last resort on: status --all exit %d with %d nodes, want 0 and 3 (from the watch cache):\n%s", code, len(cs.Nodes), out)
	}
	for _, e := range cs.Nodes {
		if e.Status == nil || e.Renewed.After(t0.Add(2*time.Second)) {
			// A write accepted 2 s after every etcd stopped cannot be.
			t.Errorf("%s: row %+v, renewed %v after the etcds stopped", e.Node, e.Status, e.Renewed.Sub(t0))
		}
	}
	if tbl, code, _ := l.StatusAll(); code != 0 || strings.Count(tbl, "\nn") != 3 {
		t.Errorf("every etcd stopped: table, exit %d:\n%s", code, tbl)
	} else {
		t.Logf("status --all with every etcd stopped:\n%s", tbl)
	}

	t1 := time.Now()
	errs := make(chan error, len(l.Nodes()))
	for _, n := range l.Nodes() {
		go func() { errs <- n.StartEtcd() }() // together: one alone has no quorum
	}
	for range l.Nodes() {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Healthy again, and each node's Lease written since.
	lab.WaitFor(t, "every node healthy in its Lease again", 30*time.Second, func() bool {
		cs, _, code, _ := statusAll(t, l)
		ok := code == 0 && len(cs.Nodes) == 3
		for _, e := range cs.Nodes {
			ok = ok && e.Renewed.After(t1) && e.Status != nil && e.Status.Advertised && len(e.Status.VIPs) == 1 && e.Status.VIPs[0].Reason == "healthy"
		}
		return ok
	})
	l.Record(t, "status_all_etcd_start_all_to_leases_healthy", time.Since(t1))
}
