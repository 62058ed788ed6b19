package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// AdminKubeconfig writes a kubeconfig for the node's own apiserver
// (system:masters through the lab's token file) and returns its path. It
// is only reachable from inside the node's namespace: see Exec.
func (n *Node) AdminKubeconfig() (string, error) {
	b, err := os.ReadFile(n.lab.tokens)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	token, _, _ := strings.Cut(strings.TrimSpace(string(b)), ",")
	path := filepath.Join(n.Dir, "admin.kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster: {server: "https://127.0.0.1:6443", certificate-authority: %q, tls-server-name: kubernetes}
users:
- name: admin
  user: {token: %q}
contexts:
- name: lab
  context: {cluster: lab, user: admin}
current-context: lab
`, n.CertFile(), token)
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// Exec runs a command inside the node's network namespace and returns its
// combined output.
func (n *Node) Exec(args ...string) (string, error) { return nsExec(n.NS, args...) }
