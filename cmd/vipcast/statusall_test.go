package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipcast/vipcast/speaker/kube"
	"github.com/vipcast/vipcast/speaker/kube/nodestatus"
)

var allNow = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

func sampleStatus(node string, advertised bool, reason string, probe nodestatus.Probe) *nodestatus.Status {
	return &nodestatus.Status{
		Node: node, Version: "v1.2.0", Advertised: advertised,
		VIPs:      []nodestatus.VIP{{Prefix: "203.0.113.10/32", Advertised: advertised, Announce: advertised, Reason: reason, Since: allNow.Add(-90 * time.Second)}},
		LastProbe: &probe, OKRun: 12,
		Sessions: []nodestatus.Session{{Peer: "192.0.2.1", ASN: 65000, State: "established", Since: allNow.Add(-time.Hour)}},
	}
}

func sampleCluster() clusterStatus {
	ok := nodestatus.Probe{At: allNow.Add(-300 * time.Millisecond), OK: true, Reason: "ok", Latency: nodestatus.Duration(1200 * time.Microsecond)}
	down := nodestatus.Probe{At: allNow.Add(-250 * time.Millisecond), Reason: "connection refused", Latency: nodestatus.Duration(150 * time.Microsecond)}
	cp2 := sampleStatus("cp2", false, "unhealthy", down)
	cp2.FailRun, cp2.OKRun = 9, 0
	cp3 := sampleStatus("cp3", false, "drained", ok)
	cp3.Drained, cp3.DrainReason = true, "kernel upgrade"
	cp3.Sessions = append(cp3.Sessions, nodestatus.Session{Peer: "192.0.2.2", ASN: 65000, State: "active", LastError: "hold timer expired"})
	return clusterStatus{
		Namespace: "kube-system", Source: "kubeconfig /etc/kubernetes/admin.conf (https://203.0.113.10:6443)",
		Nodes: []kube.Entry{
			{Node: "cp1", Lease: "vipcast-cp1", Renewed: allNow.Add(-2 * time.Second), Duration: nodestatus.Duration(40 * time.Second), Status: sampleStatus("cp1", true, "healthy", ok)},
			{Node: "cp2", Lease: "vipcast-cp2", Renewed: allNow.Add(-800 * time.Millisecond), Duration: nodestatus.Duration(40 * time.Second), Status: cp2},
			{Node: "cp3", Lease: "vipcast-cp3", Renewed: allNow.Add(-5 * time.Minute), Duration: nodestatus.Duration(40 * time.Second), Stale: true, Status: cp3},
			{Node: "cp4", Lease: "vipcast-cp4", Renewed: allNow.Add(-time.Second), Duration: nodestatus.Duration(40 * time.Second), Problem: "vipcast.io/status: not vipcast's status JSON: unexpected EOF"},
		},
	}
}

func TestStatusAllOutputGolden(t *testing.T) {
	unreachable := clusterStatus{Namespace: "kube-system", Source: "in-cluster (https://203.0.113.129:443)", Nodes: []kube.Entry{},
		APIError: "the Kubernetes API at https://203.0.113.129:443 is unreachable: dial tcp 203.0.113.129:443: connect: connection refused",
		Local:    sampleStatus("cp2", false, "unhealthy", nodestatus.Probe{At: allNow.Add(-time.Second), Reason: "connection refused"})}
	noSocket := unreachable
	noSocket.Local, noSocket.LocalError = nil, "this node's vipcast: vipcast at /run/vipcast/vipcast.sock is unavailable: no such file or directory"
	// etcd down: the list came from the cache, nobody renewed for 25 s.
	quiet := sampleCluster()
	quiet.Nodes = quiet.Nodes[:2]
	for i := range quiet.Nodes {
		quiet.Nodes[i].Renewed = allNow.Add(-25*time.Second - time.Duration(i)*3*time.Second)
	}
	quiet.NoWritesFor = nodestatus.Duration(quietFor(quiet.Nodes, allNow))
	cases := map[string]clusterStatus{
		"cluster":               sampleCluster(),
		"quiet":                 quiet,
		"empty":                 {Namespace: "vipcast", Source: "$KUBECONFIG /root/.kube/config (https://203.0.113.10:6443)", Nodes: []kube.Entry{}},
		"unreachable":           unreachable,
		"unreachable-no-socket": noSocket,
	}
	for name, st := range cases {
		for _, format := range []string{"table", "json", "yaml"} {
			t.Run(name+"/"+format, func(t *testing.T) {
				var b bytes.Buffer
				if err := printAll(&b, format, st, allNow); err != nil {
					t.Fatal(err)
				}
				golden := filepath.Join("testdata", "statusall", name+"."+format+".golden")
				if *update {
					if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test -update)", err)
				}
				if d := cmp.Diff(string(want), b.String()); d != "" {
					t.Errorf("%s (-want +got):\n%s", golden, d)
				}
				if format == "json" {
					var back clusterStatus
					if err := json.Unmarshal(b.Bytes(), &back); err != nil {
						t.Fatalf("the JSON does not read back: %v", err)
					}
				}
			})
		}
	}
}

func TestQuietFor(t *testing.T) {
	entry := func(ago time.Duration) kube.Entry {
		return kube.Entry{Renewed: allNow.Add(-ago), Duration: nodestatus.Duration(40 * time.Second)}
	}
	for _, tc := range []struct {
		name  string
		nodes []kube.Entry
		want  time.Duration
	}{
		{"none", nil, 0},
		{"all fresh", []kube.Entry{entry(time.Second), entry(9 * time.Second)}, 0},
		{"one stopped, others renew", []kube.Entry{entry(5 * time.Minute), entry(3 * time.Second)}, 0},
		{"just under half the duration", []kube.Entry{entry(20 * time.Second), entry(30 * time.Second)}, 0},
		{"nobody renewed for two renewals", []kube.Entry{entry(21 * time.Second), entry(30 * time.Second)}, 21 * time.Second},
		{"all stale", []kube.Entry{entry(time.Hour), entry(2 * time.Hour)}, time.Hour},
		{"no renew time", []kube.Entry{{Duration: nodestatus.Duration(40 * time.Second)}}, 0},
		{"no duration", []kube.Entry{{Renewed: allNow.Add(-time.Hour)}}, 0},
	} {
		if got := quietFor(tc.nodes, allNow); got != tc.want {
			t.Errorf("%s: quietFor = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// leaseServer answers LIST leases like a kube-apiserver, with leases in
// namespace ns, for the status Leases' selector only.
func leaseServer(t *testing.T, ns string, leases ...coordinationv1.Lease) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/apis/coordination.k8s.io/v1/namespaces/"+ns+"/leases" || r.URL.Query().Get("labelSelector") != kube.StatusSelector {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,"message":"leases.coordination.k8s.io is forbidden: User \"bob\" cannot list resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"%s\""}`, strings.Split(r.URL.Path, "/")[5])
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(coordinationv1.LeaseList{TypeMeta: metav1.TypeMeta{Kind: "LeaseList", APIVersion: "coordination.k8s.io/v1"}, Items: leases})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func kubeconfigFor(t *testing.T, server string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	kc := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: %q}\nusers:\n- name: u\n  user: {token: secret-token}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n", server)
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func statusLease(node string, st *nodestatus.Status, renewed time.Time) coordinationv1.Lease {
	raw, _ := st.Marshal()
	secs := int32(40)
	rt := metav1.NewMicroTime(renewed)
	return coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: kube.LeaseName(node), Namespace: "vipcast", Annotations: map[string]string{kube.StatusAnnotation: raw}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &node, LeaseDurationSeconds: &secs, RenewTime: &rt},
	}
}

func TestStatusAllCLI(t *testing.T) {
	now := time.Now()
	ok := nodestatus.Probe{At: now, OK: true, Reason: "ok"}
	srv := leaseServer(t, "vipcast",
		statusLease("cp2", sampleStatus("cp2", false, "unhealthy", nodestatus.Probe{At: now, Reason: "connection refused"}), now),
		statusLease("cp1", sampleStatus("cp1", true, "healthy", ok), now),
		statusLease("cp3", sampleStatus("cp3", true, "healthy", ok), now.Add(-time.Hour)))
	kc := kubeconfigFor(t, srv.URL)

	code, out, errOut := run("status", "--all", "--kubeconfig", kc, "-n", "vipcast")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	lines := strings.Split(out, "\n")
	var rows []string
	for _, l := range lines {
		if strings.HasPrefix(l, "cp") {
			rows = append(rows, strings.Fields(l)[0]+" "+strings.Fields(l)[1]+" "+strings.Fields(l)[2])
		}
	}
	if d := cmp.Diff([]string{"cp1 yes healthy", "cp2 no unhealthy", "cp3 yes healthy"}, rows); d != "" {
		t.Errorf("rows (-want +got):\n%s\n%s", d, out)
	}
	if !strings.Contains(out, "STALE") || !strings.Contains(out, "connection refused") || strings.Contains(out, "secret-token") {
		t.Errorf("table:\n%s", out)
	}

	// The namespace from the environment, as run takes it; JSON output.
	code, out, errOut = runEnv([]string{"VIPCAST_KUBERNETES_NAMESPACE=vipcast", "KUBECONFIG=" + kc}, "status", "--all", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	var cs clusterStatus
	if err := json.Unmarshal([]byte(out), &cs); err != nil || len(cs.Nodes) != 3 || !cs.Nodes[2].Stale || cs.Nodes[0].Stale {
		t.Errorf("json: %v\n%s", err, out)
	}

	// Refused: exit 5, with the API's message.
	code, out, _ = run("status", "--all", "--kubeconfig", kc, "-n", "other")
	if code != exitAPIRefused || !strings.Contains(out, "refused to list the Leases") || !strings.Contains(out, "forbidden") {
		t.Errorf("forbidden: exit %d\n%s", code, out)
	}

	// Unreachable: exit 4, said plainly, this node's status from its socket
	// when it can (here: no socket, and it says so).
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	sock := filepath.Join(t.TempDir(), "none.sock")
	start := time.Now()
	// With a long timeout, so that reporting in time shows it did not
	// wait for it, even on a starved machine.
	code, out, errOut = run("status", "--all", "--timeout", "60s", "--kubeconfig", kubeconfigFor(t, "https://"+addr), "--socket", sock)
	if code != exitAPIUnreachable || !strings.Contains(out, "KUBERNETES API UNREACHABLE") || !strings.Contains(out, "connection refused") || !strings.Contains(out, "none.sock") {
		t.Errorf("unreachable: exit %d\n%s%s", code, out, errOut)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("a refused connection took %v to report", d)
	}

	// Bad settings: named, exit 1.
	code, _, errOut = run("status", "--all", "--kubeconfig", kc, "-n", "Not_A_Namespace")
	if code != 1 || !strings.Contains(errOut, "kubernetes.namespace") {
		t.Errorf("bad namespace: exit %d %s", code, errOut)
	}
}

func runEnv(env []string, args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = execute(args, env, &o, &e)
	return code, o.String(), e.String()
}
