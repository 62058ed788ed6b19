package kube

import (
	"errors"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/vipcast/vipcast/speaker"
	"github.com/vipcast/vipcast/speaker/kube/nodestatus"
)

// The status Leases: one coordination.k8s.io/v1 Lease per node, named
// LeasePrefix + node, in kubernetes.namespace, labelled so that
// `kubectl get leases -l app.kubernetes.io/name=vipcast` lists them. The
// Lease's spec says who wrote it and when (holderIdentity, renewTime,
// leaseDurationSeconds: stale once renewTime + duration is past); the
// annotation StatusAnnotation holds the node's status as JSON.
const (
	LeasePrefix      = "vipcast-"
	StatusAnnotation = nodestatus.Annotation
	LabelName        = "app.kubernetes.io/name"
	LabelComponent   = "app.kubernetes.io/component"
	LabelNode        = "vipcast.io/node"
	NameValue        = "vipcast"
	ComponentValue   = "status"
	// StatusSelector selects the status Leases.
	StatusSelector = LabelName + "=" + NameValue + "," + LabelComponent + "=" + ComponentValue
	// DefaultNamespace is kubernetes.namespace's default: where a
	// control-plane component without a chart lives.
	DefaultNamespace = "kube-system"
)

// FromSpeaker is the status to publish, from the speaker's snapshot,
// bounded in size.
func FromSpeaker(node, version string, st speaker.Status) nodestatus.Status {
	ns := nodestatus.Status{Node: node, Version: nodestatus.Clip(version), OKRun: st.OKRun, FailRun: st.FailRun,
		Drained: st.Drained, DrainReason: nodestatus.Clip(st.DrainReason), VIPs: []nodestatus.VIP{}, Sessions: []nodestatus.Session{}}
	for i, d := range st.Decisions {
		ns.Advertised = ns.Advertised || d.Advertised
		if i >= nodestatus.MaxVIPs {
			ns.MoreVIPs++
			continue
		}
		ns.VIPs = append(ns.VIPs, nodestatus.VIP{Prefix: d.VIP.String(), Advertised: d.Advertised, Announce: d.Announce,
			Reason: nodestatus.Clip(string(d.Reason)), Since: d.Since.UTC().Truncate(time.Millisecond)})
	}
	if p := st.LastProbe; !p.At.IsZero() {
		ns.LastProbe = &nodestatus.Probe{At: p.At.UTC().Truncate(time.Millisecond), OK: p.OK, Reason: nodestatus.Clip(p.Reason), Latency: nodestatus.Duration(p.Latency.Round(time.Microsecond))}
	}
	for i, p := range st.Peers {
		if i >= nodestatus.MaxSessions {
			ns.MoreSessions++
			continue
		}
		ns.Sessions = append(ns.Sessions, nodestatus.Session{Peer: p.Address.String(), ASN: p.ASN, State: nodestatus.Clip(string(p.State)),
			Since: p.Since.UTC().Truncate(time.Millisecond), LastError: nodestatus.Clip(p.LastError)})
	}
	return ns
}

// LeaseName is the status Lease of node: LeasePrefix + node, cut to a
// valid object name.
func LeaseName(node string) string {
	n := LeasePrefix + node
	if len(n) > validation.DNS1123SubdomainMaxLength {
		n = strings.TrimRight(n[:validation.DNS1123SubdomainMaxLength], ".-")
	}
	return n
}

// statusLabels are the Lease's labels; the node label only when the node
// name is a valid label value (at most 63 characters).
func statusLabels(node string) map[string]string {
	l := map[string]string{LabelName: NameValue, LabelComponent: ComponentValue}
	if len(validation.IsValidLabelValue(node)) == 0 {
		l[LabelNode] = node
	}
	return l
}

// Entry is one node's status as `status --all` reads it from its Lease.
type Entry struct {
	// Node is the Lease's holder (the node name), else the Lease's name.
	Node string `json:"node"`
	// Lease is the Lease's name.
	Lease string `json:"lease"`
	// Renewed is the Lease's renewTime: when the speaker last wrote it.
	Renewed time.Time `json:"renewed,omitzero"`
	// Duration is the Lease's leaseDurationSeconds.
	Duration nodestatus.Duration `json:"leaseDuration"`
	// Stale: Renewed + Duration is in the past (or either is missing): the
	// speaker stopped, or cannot reach the API; Status is its last word.
	Stale bool `json:"stale"`
	// Status is the published status; nil if the annotation is missing or
	// unreadable (Problem says why).
	Status  *nodestatus.Status `json:"status,omitempty"`
	Problem string             `json:"problem,omitempty"`
}

// EntryFromLease reads one status Lease at time now.
func EntryFromLease(l *coordinationv1.Lease, now time.Time) Entry {
	e := Entry{Node: l.Name, Lease: l.Name}
	if h := l.Spec.HolderIdentity; h != nil && *h != "" {
		e.Node = *h
	}
	if l.Spec.RenewTime != nil {
		e.Renewed = l.Spec.RenewTime.UTC()
	}
	if d := l.Spec.LeaseDurationSeconds; d != nil && *d > 0 {
		e.Duration = nodestatus.Duration(time.Duration(*d) * time.Second)
	}
	e.Stale = e.Renewed.IsZero() || e.Duration == 0 || now.After(e.Renewed.Add(time.Duration(e.Duration)))
	raw, ok := l.Annotations[StatusAnnotation]
	if !ok {
		e.Problem = "no " + StatusAnnotation + " annotation"
		return e
	}
	st, err := nodestatus.Parse(raw)
	if err != nil {
		e.Problem = err.Error()
		return e
	}
	e.Status = &st
	return e
}

// newStatusLease is the Lease object for node, without status.
func newStatusLease(namespace, node string) *coordinationv1.Lease {
	holder := node
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: LeaseName(node), Namespace: namespace, Labels: statusLabels(node)},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder},
	}
}

// errNoLeaseAPI: the API client cannot do Leases (tests only).
var errNoLeaseAPI = errors.New("this Kubernetes client has no Lease calls")
