package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/vipcast/vipcast/peers"
	"github.com/vipcast/vipcast/speaker"
	"github.com/vipcast/vipcast/speaker/kube"
)

// kubeAPI is vipcast's optional link to the Kubernetes API: node labels
// for peer selection and Events on the Node. Nothing in the routing path
// waits for it; without an API (bootstrap, static pod before the control
// plane, no kubeconfig) vipcast routes exactly the same.
type kubeAPI struct {
	node   string
	log    *slog.Logger
	client kube.API     // nil: no API
	events *kube.Events // nil: events off or no API
	// status publishes the speaker's status to its Lease (nil: off or no
	// API); it reads sp, set by startStatus before it starts.
	status *kube.Publisher
	sp     *speaker.Speaker
}

// newKubeAPI builds the client (no request is made) and, if enabled, the
// events observer. It never fails: a missing or broken kubeconfig only
// disables the Kubernetes features, with a log line.
func newKubeAPI(cfg fileConfig, log *slog.Logger, getenv func(string) string) *kubeAPI {
	k := &kubeAPI{node: cfg.Node.Name, log: log}
	if k.node == "" {
		log.Warn("node.name unknown (the host name is no node name): node labels and events disabled; routing unaffected; set VIPCAST_NODE_NAME")
		return k
	}
	client, source, err := kube.NewClient(cfg.Kubernetes, getenv)
	switch {
	case errors.Is(err, kube.ErrNoAPI):
		log.Info("no Kubernetes API: node labels and events disabled; routing unaffected", "node", k.node)
		return k
	case err != nil:
		log.Warn("Kubernetes API disabled: node labels and events off; routing unaffected", "err", err, "node", k.node)
		return k
	}
	k.client = client
	if cfg.Kubernetes.Events {
		k.events = kube.NewEvents(client, k.node, log)
	}
	if cfg.Kubernetes.StatusLease {
		pc := kube.DefaultPublisher(cfg.Kubernetes.Namespace, k.node, version)
		k.status = kube.NewPublisher(kube.Leases(client), pc, func() speaker.Status { return k.sp.Status() }, log)
	}
	log.Info("Kubernetes API configured", "source", source, "node", k.node, "events", k.events != nil,
		"statusLease", k.status != nil, "namespace", cfg.Kubernetes.Namespace)
	return k
}

// observer hears the speaker for the events and the status Lease; nil if
// neither is on.
func (k *kubeAPI) observer() speaker.Observer {
	if k == nil {
		return nil
	}
	var o speaker.Observers
	if k.events != nil {
		o = append(o, k.events)
	}
	if k.status != nil {
		o = append(o, k.status)
	}
	if len(o) == 0 {
		return nil
	}
	return o
}

// startStatus starts publishing sp's status, if on.
func (k *kubeAPI) startStatus(sp *speaker.Speaker) {
	if k == nil || k.status == nil {
		return
	}
	k.sp = sp
	k.status.Start()
}

// close writes the queued Events and the last status for at most a second
// together (the shutdown transition included), then stops.
func (k *kubeAPI) close() {
	if k == nil || (k.events == nil && k.status == nil) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		k.status.Close(ctx)
	}()
	k.events.Close(ctx)
	<-done
	if k.events != nil {
		if n := k.events.Dropped(); n > 0 {
			k.log.Info("kubernetes events not written", "dropped", n, "sent", k.events.Sent())
		}
	}
}

// nodeInfo is what per-node peer selection (peers.Config.Select) knows
// about this node: its addresses (peers.LocalAddresses) and, from the API,
// its labels. It waits at most kube.LookupTimeout (about 2 s) for the API;
// without an answer LabelsKnown is false.
func (k *kubeAPI) nodeInfo(ctx context.Context) peers.NodeInfo {
	var ni peers.NodeInfo
	addrs, err := peers.LocalAddresses()
	if err != nil {
		k.log.Warn("reading the node's addresses", "err", err)
	}
	ni.Addresses = addrs
	if k.client == nil {
		return ni
	}
	labels, err := kube.NodeLabels(ctx, k.client, k.node)
	if err != nil {
		k.log.Warn("node labels unknown: Kubernetes API not answering; routing unaffected", "node", k.node, "err", err)
		return ni
	}
	ni.Labels, ni.LabelsKnown = labels, true
	return ni
}

// envLookup is os.Getenv over the environment the command was given.
func envLookup(environ []string) func(string) string {
	return func(key string) string {
		for i := len(environ) - 1; i >= 0; i-- {
			if k, v, ok := strings.Cut(environ[i], "="); ok && k == key {
				return v
			}
		}
		return ""
	}
}
