package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipcast/vipcast/speaker/kube"
)

// nodesAPI is a kube.API that knows some Nodes and refuses Events.
type nodesAPI map[string]*corev1.Node

func (a nodesAPI) GetNode(_ context.Context, name string) (*corev1.Node, error) {
	if n, ok := a[name]; ok {
		return n.DeepCopy(), nil
	}
	return nil, fmt.Errorf("%w: %q", kube.ErrNodeNotFound, name)
}

func (nodesAPI) CreateEvent(context.Context, *eventsv1.Event) error {
	return fmt.Errorf("not implemented")
}

func TestNodeConfigFromEnv(t *testing.T) {
	cfg, err := parseConfig(strings.NewReader(goodYAML), []string{"VIPCAST_NODE_NAME=cp-2", "VIPCAST_KUBERNETES_EVENTS=false"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Node.Name != "cp-2" || cfg.Kubernetes.Events {
		t.Errorf("node %+v kubernetes %+v", cfg.Node, cfg.Kubernetes)
	}
	def, err := parseConfig(strings.NewReader(goodYAML), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !def.Kubernetes.Events || def.Kubernetes.Kubeconfig != "" {
		t.Errorf("defaults: node %+v kubernetes %+v", def.Node, def.Kubernetes)
	}
	// Two nodes with the same settings have the same digest.
	if configDigest(cfg) == configDigest(def) {
		t.Error("digest ignores kubernetes.events")
	}
	def.Node.Name = "cp-2"
	def.Kubernetes.Events = false
	if configDigest(cfg) != configDigest(def) {
		t.Error("digest depends on node.name")
	}
}

func TestNodeInfo(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	k := &kubeAPI{node: "cp1", log: log}
	if ni := k.nodeInfo(context.Background()); ni.LabelsKnown || ni.Labels != nil {
		t.Errorf("no API: %+v", ni)
	}
	k.client = nodesAPI{"cp1": {ObjectMeta: metav1.ObjectMeta{Name: "cp1", Labels: map[string]string{"rack": "r1"}}}}
	ni := k.nodeInfo(context.Background())
	if !ni.LabelsKnown || ni.Labels["rack"] != "r1" {
		t.Errorf("labels: %+v", ni)
	}
	if !slices.Contains(ni.Addresses, netip.MustParseAddr("127.0.0.1")) {
		t.Errorf("addresses %v lack lo's 127.0.0.1", ni.Addresses)
	}
	k.node = "other"
	if ni := k.nodeInfo(context.Background()); ni.LabelsKnown {
		t.Errorf("missing Node object: %+v", ni)
	}
}

func TestNewKubeAPINoAPI(t *testing.T) {
	cfg := defaultConfig()
	k := newKubeAPI(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), envLookup(nil))
	if k.client != nil || k.observer() != nil {
		t.Errorf("no API configured, yet client %v observer %v", k.client, k.observer())
	}
	k.close()
	env := envLookup([]string{"KUBECONFIG=/a", "X=1", "KUBECONFIG=/b"})
	if env("KUBECONFIG") != "/b" || env("Y") != "" {
		t.Errorf("envLookup")
	}
}
