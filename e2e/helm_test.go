package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// TestHelmInstall installs the chart with its full values into a real
// kube-apiserver of the lab: every object must be accepted by the API
// server (schema, RBAC, DaemonSet spec), then the release is uninstalled.
// No kubelet runs, so pods are never started; the objects are what is
// proven. The script is charts/vipcast/tests/install.sh.
func TestHelmInstall(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	helm := filepath.Join(root, "bin", "helm")
	if _, err := os.Stat(helm); err != nil {
		t.Skipf("SKIPPED: %s missing; `make helm` builds it (make test does)", helm)
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("SKIPPED: kubectl not installed")
	}
	l := lab.New(t, lab.Options{Router: lab.FRR, Nodes: 1})
	n := l.Node(1)
	if err := n.WaitAPIServerReady(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := n.AdminKubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	out, err := n.Exec("env", "HELM="+helm, "bash", filepath.Join(root, "charts/vipcast/tests/install.sh"), kubeconfig, "kube-system")
	t.Logf("install.sh:\n%s", out)
	if err != nil {
		t.Fatalf("helm install into the lab's kube-apiserver failed: %v", err)
	}
	if !strings.Contains(out, "deployed") {
		t.Error("install.sh output does not show the release deployed")
	}
}
