package kube

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/vipcast/vipcast/speaker"
)

// The status Leases: one coordination.k8s.io/v1 Lease per node, named
// LeasePrefix + node, in kubernetes.namespace, labelled so that
// `kubectl get leases -l app.kubernetes.io/name=vipcast` lists them. The
// Lease's spec says who wrote it and when (holderIdentity, renewTime,
// leaseDurationSeconds: stale once renewTime + duration is past); the
// annotation StatusAnnotation holds the node's status as JSON.
const (
	LeasePrefix      = "vipcast-"
	StatusAnnotation = "vipcast.io/status"
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

// Bounds of the published status: it must stay small (it is written on
// every change and every renewal, and read by `status --all` for every
// node), whatever the configuration.
const (
	MaxStatusVIPs     = 16
	MaxStatusSessions = 16
	MaxStatusString   = 256
	// MaxStatusBytes bounds the annotation, written and read.
	MaxStatusBytes = 16 << 10
)

// NodeStatus is what a speaker publishes about itself. Nothing in it is a
// secret: VIPs, reasons, probe results and session states, as `vipcast
// status` shows them to anyone on the node.
type NodeStatus struct {
	Node    string `json:"node"`
	Version string `json:"version,omitempty"`
	// Advertised: at least one VIP is advertised on a session.
	Advertised bool        `json:"advertised"`
	VIPs       []VIPStatus `json:"vips"`
	// MoreVIPs counts the VIPs left out (MaxStatusVIPs).
	MoreVIPs  int          `json:"moreVips,omitempty"`
	LastProbe *ProbeStatus `json:"lastProbe,omitempty"`
	// OKRun and FailRun are the probes in a row that passed or failed.
	OKRun    int             `json:"okRun"`
	FailRun  int             `json:"failRun"`
	Sessions []SessionStatus `json:"sessions"`
	// MoreSessions counts the sessions left out (MaxStatusSessions).
	MoreSessions int    `json:"moreSessions,omitempty"`
	Drained      bool   `json:"drained"`
	DrainReason  string `json:"drainReason,omitempty"`
}

// VIPStatus is one VIP's decision.
type VIPStatus struct {
	Prefix     string    `json:"prefix"`
	Advertised bool      `json:"advertised"`
	Announce   bool      `json:"announce"`
	Reason     string    `json:"reason"`
	Since      time.Time `json:"since"`
}

// ProbeStatus is the last health probe.
type ProbeStatus struct {
	At      time.Time `json:"at"`
	OK      bool      `json:"ok"`
	Reason  string    `json:"reason"`
	Latency Duration  `json:"latency"`
}

// SessionStatus is one BGP session.
type SessionStatus struct {
	Peer  string    `json:"peer"`
	ASN   uint32    `json:"asn"`
	State string    `json:"state"`
	Since time.Time `json:"since,omitzero"`
	// LastError is why the session last went down, if it did.
	LastError string `json:"lastError,omitempty"`
}

// Duration is a time.Duration written as "1.5ms" in JSON and YAML.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// clip keeps s valid UTF-8 and at most MaxStatusString bytes.
func clip(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= MaxStatusString {
		return s
	}
	cut := MaxStatusString - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// FromSpeaker is the status to publish, from the speaker's snapshot,
// bounded in size.
func FromSpeaker(node, version string, st speaker.Status) NodeStatus {
	ns := NodeStatus{Node: node, Version: clip(version), OKRun: st.OKRun, FailRun: st.FailRun,
		Drained: st.Drained, DrainReason: clip(st.DrainReason), VIPs: []VIPStatus{}, Sessions: []SessionStatus{}}
	for i, d := range st.Decisions {
		ns.Advertised = ns.Advertised || d.Advertised
		if i >= MaxStatusVIPs {
			ns.MoreVIPs++
			continue
		}
		ns.VIPs = append(ns.VIPs, VIPStatus{Prefix: d.VIP.String(), Advertised: d.Advertised, Announce: d.Announce,
			Reason: clip(string(d.Reason)), Since: d.Since.UTC().Truncate(time.Millisecond)})
	}
	if p := st.LastProbe; !p.At.IsZero() {
		ns.LastProbe = &ProbeStatus{At: p.At.UTC().Truncate(time.Millisecond), OK: p.OK, Reason: clip(p.Reason), Latency: Duration(p.Latency.Round(time.Microsecond))}
	}
	for i, p := range st.Peers {
		if i >= MaxStatusSessions {
			ns.MoreSessions++
			continue
		}
		ns.Sessions = append(ns.Sessions, SessionStatus{Peer: p.Address.String(), ASN: p.ASN, State: clip(string(p.State)),
			Since: p.Since.UTC().Truncate(time.Millisecond), LastError: clip(p.LastError)})
	}
	return ns
}

// SameState reports whether a and b differ only in what changes with
// every probe (the last probe and the run counters): a change of anything
// else is published at once, the rest with the periodic renewal.
func SameState(a, b NodeStatus) bool {
	a.LastProbe, b.LastProbe = nil, nil
	a.OKRun, b.OKRun, a.FailRun, b.FailRun = 0, 0, 0, 0
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// Marshal is the annotation's value.
func (s NodeStatus) Marshal() (string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	if len(b) > MaxStatusBytes {
		return "", fmt.Errorf("status is %d bytes, over the %d limit", len(b), MaxStatusBytes)
	}
	return string(b), nil
}

// ParseStatus reads an annotation written by Marshal. It accepts at most
// MaxStatusBytes, and rejects unknown fields' wrong types, trailing data
// and a missing node name with an error saying what is wrong.
func ParseStatus(s string) (NodeStatus, error) {
	var ns NodeStatus
	if len(s) > MaxStatusBytes {
		return ns, fmt.Errorf("%s: %d bytes, over the %d limit", StatusAnnotation, len(s), MaxStatusBytes)
	}
	dec := json.NewDecoder(strings.NewReader(s))
	if err := dec.Decode(&ns); err != nil {
		return NodeStatus{}, fmt.Errorf("%s: not vipcast's status JSON: %w", StatusAnnotation, err)
	}
	if dec.More() {
		return NodeStatus{}, fmt.Errorf("%s: data after the JSON object", StatusAnnotation)
	}
	if ns.Node == "" {
		return NodeStatus{}, fmt.Errorf("%s: no node name", StatusAnnotation)
	}
	return ns, nil
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
	Duration Duration `json:"leaseDuration"`
	// Stale: Renewed + Duration is in the past (or either is missing): the
	// speaker stopped, or cannot reach the API; Status is its last word.
	Stale bool `json:"stale"`
	// Status is the published status; nil if the annotation is missing or
	// unreadable (Problem says why).
	Status  *NodeStatus `json:"status,omitempty"`
	Problem string      `json:"problem,omitempty"`
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
		e.Duration = Duration(time.Duration(*d) * time.Second)
	}
	e.Stale = e.Renewed.IsZero() || e.Duration == 0 || now.After(e.Renewed.Add(time.Duration(e.Duration)))
	raw, ok := l.Annotations[StatusAnnotation]
	if !ok {
		e.Problem = "no " + StatusAnnotation + " annotation"
		return e
	}
	st, err := ParseStatus(raw)
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
