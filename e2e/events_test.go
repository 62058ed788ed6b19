package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// TestKubeEvents: with a kubeconfig for its own node's (real) apiserver,
// vipcast records events.k8s.io/v1 Events on its Node: VIPAnnounced at
// start, VIPDrained on an operator drain. With that apiserver killed,
// routing is untouched: the node withdraws on time, drains and undrains
// work, the Events are dropped and the outage is logged once; once the
// apiserver is back, Events resume.
func TestKubeEvents(t *testing.T) {
	lab.Require(t, lab.FRR)
	l := lab.New(t, lab.Options{Router: lab.FRR, Nodes: 2, Kubeconfig: true})
	l.DumpOnFailure(t)
	n1, n2 := l.Node(1), l.Node(2)

	uid, err := n1.NodeUID()
	if err != nil {
		t.Fatal(err)
	}
	ev := waitKubeEvent(t, n1, "VIPAnnounced", "", 15*time.Second)
	if ev.Type != "Normal" || ev.Action != "Announce" || ev.Regarding.Kind != "Node" || ev.Regarding.Name != n1.Name ||
		ev.Regarding.UID != uid || ev.Metadata.Namespace != "default" || ev.ReportingController != "vipcast.io/vipcast" ||
		ev.ReportingInstance != "vipcast-"+n1.Name || !strings.Contains(ev.Note, v4.String()) {
		t.Errorf("start event: %+v (node uid %s)", ev, uid)
	}

	// The VIP deleted from lo behind vipcast's back: put back at once, and
	// the Node gets a Warning saying so.
	if err := n1.DeleteVIP(v4.String()); err != nil {
		t.Fatal(err)
	}
	ev = waitKubeEvent(t, n1, "VIPRestoredOnLoopback", "removed from the loopback", 10*time.Second)
	if ev.Type != "Warning" || ev.Action != "Repair" || !strings.Contains(ev.Note, v4.String()) {
		t.Errorf("loopback repair event: %+v", ev)
	}

	// An operator drain: the route leaves, and the Node gets VIPDrained.
	if out, err := n1.Vipcast("drain", "--reason", "e2e-drain"); err != nil {
		t.Fatalf("drain: %v\n%s", err, out)
	}
	l.WaitNexthops(t, v4, addrs(l, v4, n2), 5*time.Second)
	ev = waitKubeEvent(t, n1, "VIPDrained", "e2e-drain", 10*time.Second)
	if ev.Type != "Normal" || ev.Action != "Drain" || ev.Regarding.Name != n1.Name {
		t.Errorf("drain event: %+v", ev)
	}
	// The same through kubectl, as an operator would look (core/v1 view).
	if _, err := exec.LookPath("kubectl"); err == nil {
		out, err := n1.Kubectl("get", "events", "-A", "--field-selector", "involvedObject.kind=Node,involvedObject.name="+n1.Name, "-o", "json")
		if err != nil {
			t.Fatalf("kubectl: %v\n%s", err, out)
		}
		var list struct {
			Items []struct {
				Reason, Type, Message string
			} `json:"items"`
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("kubectl output: %v\n%s", err, out)
		}
		found := false
		for _, e := range list.Items {
			found = found || (e.Reason == "VIPDrained" && e.Type == "Normal" && strings.Contains(e.Message, "e2e-drain"))
		}
		if !found {
			t.Errorf("kubectl get events: no VIPDrained event on node %s:\n%s", n1.Name, out)
		}
	} else {
		t.Log("kubectl not installed: checked through the API only")
	}
	if out, err := n1.Vipcast("undrain"); err != nil {
		t.Fatalf("undrain: %v\n%s", err, out)
	}
	l.WaitAllRouted(t, 10*time.Second)

	// n2's own apiserver dies: its vipcast points its Events at that very
	// apiserver. Routing must not notice.
	before := countKubeEvents(t, n2)
	t0, err := n2.KillAPIServer(syscall.SIGKILL)
	if err != nil {
		t.Fatal(err)
	}
	l.WaitNexthops(t, v4, addrs(l, v4, n1), 5*time.Second)
	l.Record(t, "kube_events_apiserver_sigkill_to_fib_withdraw", time.Since(t0))
	// More transitions while the API is down: drain and undrain still work.
	for _, cmd := range [][]string{{"drain", "--reason", "e2e-api-down"}, {"undrain"}} {
		start := time.Now()
		if out, err := n2.Vipcast(cmd...); err != nil {
			t.Fatalf("%s with the apiserver down: %v\n%s", cmd[0], err, out)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s took %v with the apiserver down", cmd[0], d)
		}
	}
	waitLog(t, n2, "kubernetes events disabled: API unreachable", 10*time.Second)
	// n2 stays out (unhealthy, then drained, then unhealthy again) while
	// every dropped event is tried.
	l.HoldNexthops(t, v4, addrs(l, v4, n1), time.Second)
	if c := countLog(n2, "kubernetes events disabled"); c != 1 {
		t.Errorf("outage logged %d times, want once", c)
	}
	if !n2.VipcastAlive() {
		t.Fatal("vipcast on n2 exited")
	}

	// The apiserver comes back: the route returns, and so do the Events.
	if err := n2.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	if err := n2.WaitAPIServerReady(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	l.WaitAllRouted(t, 15*time.Second)
	waitLog(t, n2, "kubernetes events resumed", 10*time.Second)
	waitKubeEventCount(t, n2, before+1, 10*time.Second)
	for _, e := range mustKubeEvents(t, n2) {
		if strings.Contains(e.Note, "e2e-api-down") {
			t.Errorf("an event from the outage reached the API: %+v", e)
		}
	}
}

func mustKubeEvents(t *testing.T, n *lab.Node) []lab.KubeEvent {
	t.Helper()
	evs, err := n.KubeEvents()
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func countKubeEvents(t *testing.T, n *lab.Node) int { return len(mustKubeEvents(t, n)) }

// waitKubeEvent waits for an Event on n's Node with reason whose note
// contains note.
func waitKubeEvent(t *testing.T, n *lab.Node, reason, note string, timeout time.Duration) lab.KubeEvent {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var seen []string
	for time.Now().Before(deadline) {
		evs, err := n.KubeEvents()
		seen = seen[:0]
		for _, e := range evs {
			if e.Reason == reason && e.Regarding.Name == n.Name && strings.Contains(e.Note, note) {
				return e
			}
			seen = append(seen, e.Reason+": "+e.Note)
		}
		if err != nil {
			seen = append(seen, "error: "+err.Error())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: no %s event (note %q) within %v; seen:\n%s", n.Name, reason, note, timeout, strings.Join(seen, "\n"))
	return lab.KubeEvent{}
}

func waitKubeEventCount(t *testing.T, n *lab.Node, min int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if evs, err := n.KubeEvents(); err == nil && len(evs) >= min {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: fewer than %d events after %v", n.Name, min, timeout)
}

func countLog(n *lab.Node, prefix string) int {
	c := 0
	for _, r := range n.LogRecords() {
		if msg, _ := r["msg"].(string); strings.HasPrefix(msg, prefix) {
			c++
		}
	}
	return c
}

func waitLog(t *testing.T, n *lab.Node, prefix string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for countLog(n, prefix) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no log line %q within %v", n.Name, prefix, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
