package kube

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Client limits: vipcast makes a handful of requests per hour (one lookup
// at start, one Event per transition), and must never wait long on an API
// that may be down (its own node's apiserver, or the whole control plane
// during bootstrap).
const (
	// LookupTimeout bounds NodeLabels: startup never waits longer on the API.
	LookupTimeout = 2 * time.Second
	// RequestTimeout bounds every other request.
	RequestTimeout = 5 * time.Second
	dialTimeout    = 2 * time.Second
	qps            = 5
	burst          = 10
)

// ErrNoAPI says no Kubernetes API is configured or detectable.
var ErrNoAPI = errors.New("no Kubernetes API configured (kubernetes.kubeconfig empty, not in a pod, $KUBECONFIG unset)")

// RESTConfig resolves where the API is: kubernetes.kubeconfig if set, else
// the in-cluster configuration when KUBERNETES_SERVICE_HOST is set, else
// $KUBECONFIG; getenv is os.Getenv (a parameter for tests). It returns
// ErrNoAPI when there is none, and a description of the source for logs.
func RESTConfig(c Config, getenv func(string) string) (*rest.Config, string, error) {
	var rc *rest.Config
	var source string
	var err error
	switch {
	case c.Kubeconfig != "":
		source = "kubeconfig " + c.Kubeconfig
		rc, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	case getenv("KUBERNETES_SERVICE_HOST") != "":
		source = "in-cluster"
		rc, err = rest.InClusterConfig()
	case getenv("KUBECONFIG") != "":
		source = "$KUBECONFIG " + getenv("KUBECONFIG")
		rules := &clientcmd.ClientConfigLoadingRules{Precedence: filepath.SplitList(getenv("KUBECONFIG"))}
		rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	default:
		return nil, "", ErrNoAPI
	}
	if err != nil {
		return nil, source, fmt.Errorf("kubernetes client (%s): %w", source, err)
	}
	rc = rest.CopyConfig(rc)
	rc.Timeout = RequestTimeout
	rc.QPS, rc.Burst = qps, burst
	rc.UserAgent = "vipcast"
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	rc.Dial = d.DialContext
	return rc, source, nil
}

// NewClient builds a clientset with short timeouts and a small QPS (see
// RESTConfig). Building it does not contact the API.
func NewClient(c Config, getenv func(string) string) (kubernetes.Interface, string, error) {
	rc, source, err := RESTConfig(c, getenv)
	if err != nil {
		return nil, source, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, source, fmt.Errorf("kubernetes client (%s): %w", source, err)
	}
	return cs, source, nil
}

// GetNode reads the Node object, waiting at most LookupTimeout.
func GetNode(ctx context.Context, client kubernetes.Interface, name string) (*corev1.Node, error) {
	if client == nil {
		return nil, ErrNoAPI
	}
	ctx, cancel := context.WithTimeout(ctx, LookupTimeout)
	defer cancel()
	n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", name, err)
	}
	return n, nil
}

// NodeLabels returns the labels of the Node called name, waiting at most
// LookupTimeout (about 2 s) so a start without an API (bootstrap, static
// pod, the control plane down) is never held up. The map is a copy and
// never nil on success.
func NodeLabels(ctx context.Context, client kubernetes.Interface, name string) (map[string]string, error) {
	n, err := GetNode(ctx, client, name)
	if err != nil {
		return nil, err
	}
	out := maps.Clone(n.Labels)
	if out == nil {
		out = map[string]string{}
	}
	return out, nil
}
