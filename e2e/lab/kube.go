package lab

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// With Options.Kubeconfig, each node's vipcast gets `node.name` (the lab
// node's name, n1, n2, ...) and `kubernetes.kubeconfig`: a kubeconfig
// pointing at that node's own apiserver, https://127.0.0.1:6443 (each node
// runs its own etcd, so each apiserver is a cluster of its own), with the
// lab's admin token (system:masters). The Node object is created in that
// apiserver before vipcast starts. With Options.ControlPlane (one etcd
// cluster) the kubeconfig points at the VIP instead, as in a real cluster:
// a node whose own apiserver died reaches the others through the router
// once its VIP has left lo.

// KubeconfigFile is the node's kubeconfig (written with Options.Kubeconfig).
func (n *Node) KubeconfigFile() string { return filepath.Join(n.Dir, "kubeconfig") }

// nodesCreated remembers which lab nodes have their Node object.
var nodesCreated sync.Map // *Node -> bool

// kubeVipcastConfig returns vipcast's node and kubernetes sections, writes
// the kubeconfig and creates the Node object (best effort: vipcast names
// the Node in its Events either way).
func (n *Node) kubeVipcastConfig() string {
	if !n.lab.Opts.Kubeconfig {
		return ""
	}
	tok, err := n.lab.AdminToken()
	if err == nil && n.lab.Opts.ControlPlane {
		// One control plane: through the VIP, as kubeadm's admin.conf.
		err = writeKubeconfig(n.KubeconfigFile(), vipServer(), n.lab.caFile, "admin", tok)
	} else if err == nil {
		kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: %[1]s
  cluster: {server: "https://127.0.0.1:%[2]d", certificate-authority: %[3]s, tls-server-name: kubernetes}
users:
- name: admin
  user: {token: %[4]s}
contexts:
- name: %[1]s
  context: {cluster: %[1]s, user: admin}
current-context: %[1]s
`, n.Name, APIServerPort, n.CertFile(), tok)
		err = os.WriteFile(n.KubeconfigFile(), []byte(kc), 0o600)
	}
	if err != nil {
		n.lab.t.Logf("%s: kubeconfig: %v", n.Name, err)
	}
	if _, done := nodesCreated.Load(n); !done {
		if err := n.CreateNodeObject(); err == nil {
			nodesCreated.Store(n, true)
		} else {
			n.lab.t.Logf("%s: creating the Node object: %v", n.Name, err)
		}
	}
	return fmt.Sprintf("node: {name: %s}\nkubernetes: {kubeconfig: %s, events: true}\n", n.Name, n.KubeconfigFile())
}

// AdminToken is the lab's system:masters bearer token (tokens.csv).
func (l *Lab) AdminToken() (string, error) {
	b, err := os.ReadFile(l.tokens)
	if err != nil {
		return "", err
	}
	tok, _, _ := strings.Cut(strings.TrimSpace(string(b)), ",")
	return tok, nil
}

// KubeRequest sends an authenticated request to the node's own apiserver
// (from inside its namespace) and returns the body; a status >= 300 is an
// error.
func (n *Node) KubeRequest(method, path string, body any) ([]byte, error) {
	return n.kubeRequestTo(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), APIServerPort), method, path, body)
}

// kubeRequestTo is KubeRequest to the apiserver at server, dialled from
// the node's namespace.
func (n *Node) kubeRequestTo(server netip.AddrPort, method, path string, body any) ([]byte, error) {
	tok, err := n.lab.AdminToken()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(n.CertFile())
	if err != nil || !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("apiserver certificate %s: %v", n.CertFile(), err)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, fmt.Sprintf("https://%s%s", server, path), rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	if method == http.MethodPatch {
		req.Header.Set("Content-Type", "application/merge-patch+json")
	}
	c := n.httpClient(&tls.Config{RootCAs: pool, ServerName: "kubernetes"}, 5*time.Second)
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return out, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(out))
	}
	return out, nil
}

// CreateNodeObject creates the Node named after the lab node (labelled as
// a control-plane node) in the node's own apiserver; an existing one is
// fine.
func (n *Node) CreateNodeObject() error {
	obj := map[string]any{
		"apiVersion": "v1", "kind": "Node",
		"metadata": map[string]any{"name": n.Name, "labels": map[string]string{
			"node-role.kubernetes.io/control-plane": "", "vipcast.e2e/lab-node": n.Name,
		}},
	}
	_, err := n.KubeRequest(http.MethodPost, "/api/v1/nodes", obj)
	if err != nil && strings.Contains(err.Error(), "409 Conflict") {
		return nil
	}
	return err
}

// KubeEvent is the part of an events.k8s.io/v1 Event the tests look at.
type KubeEvent struct {
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Type                string `json:"type"`
	Reason              string `json:"reason"`
	Action              string `json:"action"`
	Note                string `json:"note"`
	ReportingController string `json:"reportingController"`
	ReportingInstance   string `json:"reportingInstance"`
	Regarding           struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
		UID  string `json:"uid"`
	} `json:"regarding"`
}

// KubeEvents lists every events.k8s.io/v1 Event in the node's apiserver.
func (n *Node) KubeEvents() ([]KubeEvent, error) {
	b, err := n.KubeRequest(http.MethodGet, "/apis/events.k8s.io/v1/events", nil)
	if err != nil {
		return nil, err
	}
	var l struct {
		Items []KubeEvent `json:"items"`
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// NodeUID is the uid of the node's Node object in its own apiserver.
func (n *Node) NodeUID() (string, error) {
	b, err := n.KubeRequest(http.MethodGet, "/api/v1/nodes/"+n.Name, nil)
	if err != nil {
		return "", err
	}
	var o struct {
		Metadata struct {
			UID string `json:"uid"`
		} `json:"metadata"`
	}
	return o.Metadata.UID, json.Unmarshal(b, &o)
}

// Kubectl runs kubectl inside the node's namespace with its kubeconfig
// (Options.Kubeconfig) and returns its combined output.
func (n *Node) Kubectl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	args = append([]string{"netns", "exec", n.NS, "kubectl", "--kubeconfig", n.KubeconfigFile()}, args...)
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	return string(out), err
}
