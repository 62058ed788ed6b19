// Package kube is vipcast's optional link to the Kubernetes API: the node's
// identity and labels (for peer selection) and Events about announce and
// withdraw. Nothing in the routing path needs it: when the API is down or
// not configured, vipcast announces and withdraws exactly the same way.
package kube

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// NodeConfig is the node section of the configuration file.
type NodeConfig struct {
	// Name is the node's name, as the Kubernetes Node object is called
	// (VIPCAST_NODE_NAME from spec.nodeName in a pod). Default: the host
	// name in lower case, as the kubelet names its node. "" (or a host name
	// that is no node name) leaves the node unknown: no labels, no events.
	Name string `mapstructure:"name"`
}

// Config is the kubernetes section of the configuration file.
type Config struct {
	// Kubeconfig is a kubeconfig file. "" means: the in-cluster
	// configuration in a pod (KUBERNETES_SERVICE_HOST set), else
	// $KUBECONFIG if set, else no API at all.
	Kubeconfig string `mapstructure:"kubeconfig"`
	// Events records a Kubernetes Event on the Node for each announce,
	// withdraw and drain.
	Events bool `mapstructure:"events"`
	// StatusLease publishes the speaker's status to a Lease per node
	// (coordination.k8s.io/v1, LeasePrefix + node name) in Namespace, for
	// `vipcast status --all`: at once on a change (at most every 500 ms),
	// renewed every 10 s.
	StatusLease bool `mapstructure:"statusLease"`
	// Namespace holds the status Leases: the chart sets it to its release
	// namespace (VIPCAST_KUBERNETES_NAMESPACE). Default kube-system.
	Namespace string `mapstructure:"namespace"`
}

// DefaultNode names the node after the host, lower-cased (the kubelet's
// default node name). A host name that cannot be a node name gives "":
// the node is unknown, which only turns off the Kubernetes features.
func DefaultNode() NodeConfig {
	h, _ := os.Hostname()
	h = strings.ToLower(h)
	if len(validation.IsDNS1123Subdomain(h)) > 0 {
		h = ""
	}
	return NodeConfig{Name: h}
}

// Default: no explicit kubeconfig (auto-detect), events and the status
// Lease on, in kube-system.
func Default() Config { return Config{Events: true, StatusLease: true, Namespace: DefaultNamespace} }

// Validate names the field, the value and the fix.
func (c NodeConfig) Validate() error {
	if c.Name == "" {
		return nil // unknown: no node labels, no events
	}
	if msgs := validation.IsDNS1123Subdomain(c.Name); len(msgs) > 0 {
		return fmt.Errorf("node.name: %q is not a node name (lower-case letters, digits, '-' and '.', at most 253); use the Node object's name, e.g. VIPCAST_NODE_NAME from spec.nodeName", c.Name)
	}
	return nil
}

// Validate names the field, the value and the fix, for every problem.
func (c Config) Validate() error {
	var errs []error
	if msgs := validation.IsDNS1123Label(c.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("kubernetes.namespace: %q is not a namespace name (lower-case letters, digits and '-', at most 63); use the namespace vipcast runs in, e.g. kube-system", c.Namespace))
	}
	if c.Kubeconfig != "" {
		f, err := os.Open(c.Kubeconfig)
		if err != nil {
			errs = append(errs, fmt.Errorf("kubernetes.kubeconfig: %q cannot be read (%v); point it at a readable kubeconfig, or \"\" for in-cluster / $KUBECONFIG", c.Kubeconfig, errors.Unwrap(err)))
		} else {
			f.Close()
		}
	}
	return errors.Join(errs...)
}
