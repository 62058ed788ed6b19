// Package nodestatus is the status a vipcast speaker publishes about itself
// in its status Lease (package kube writes and lists the Leases), and
// `vipcast status --all` reads back: its JSON form, its size bounds and its
// parser. It depends on the standard library only, so its parser can be
// fuzzed without building the Kubernetes client into the fuzz binary.
package nodestatus

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Annotation is the status Lease's annotation that holds the Status as
// JSON.
const Annotation = "vipcast.io/status"

// Bounds of the published status: it must stay small (it is written on
// every change and every renewal, and read by `status --all` for every
// node), whatever the configuration.
const (
	MaxVIPs     = 16
	MaxSessions = 16
	MaxString   = 256
	// MaxBytes bounds the annotation, written and read.
	MaxBytes = 16 << 10
)

// Status is what a speaker publishes about itself. Nothing in it is a
// secret: VIPs, reasons, probe results and session states, as `vipcast
// status` shows them to anyone on the node.
type Status struct {
	Node    string `json:"node"`
	Version string `json:"version,omitempty"`
	// Advertised: at least one VIP is advertised on a session.
	Advertised bool  `json:"advertised"`
	VIPs       []VIP `json:"vips"`
	// MoreVIPs counts the VIPs left out (MaxVIPs).
	MoreVIPs  int    `json:"moreVips,omitempty"`
	LastProbe *Probe `json:"lastProbe,omitempty"`
	// OKRun and FailRun are the probes in a row that passed or failed.
	OKRun    int       `json:"okRun"`
	FailRun  int       `json:"failRun"`
	Sessions []Session `json:"sessions"`
	// MoreSessions counts the sessions left out (MaxSessions).
	MoreSessions int    `json:"moreSessions,omitempty"`
	Drained      bool   `json:"drained"`
	DrainReason  string `json:"drainReason,omitempty"`
}

// VIP is one VIP's decision.
type VIP struct {
	Prefix     string    `json:"prefix"`
	Advertised bool      `json:"advertised"`
	Announce   bool      `json:"announce"`
	Reason     string    `json:"reason"`
	Since      time.Time `json:"since"`
}

// Probe is the last health probe.
type Probe struct {
	At      time.Time `json:"at"`
	OK      bool      `json:"ok"`
	Reason  string    `json:"reason"`
	Latency Duration  `json:"latency"`
}

// Session is one BGP session.
type Session struct {
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

// Clip keeps s valid UTF-8 and at most MaxString bytes.
func Clip(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= MaxString {
		return s
	}
	cut := MaxString - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// SameState reports whether a and b differ only in what changes with
// every probe (the last probe and the run counters): a change of anything
// else is published at once, the rest with the periodic renewal.
func SameState(a, b Status) bool {
	a.LastProbe, b.LastProbe = nil, nil
	a.OKRun, b.OKRun, a.FailRun, b.FailRun = 0, 0, 0, 0
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// Marshal is the annotation's value.
func (s Status) Marshal() (string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	if len(b) > MaxBytes {
		return "", fmt.Errorf("status is %d bytes, over the %d limit", len(b), MaxBytes)
	}
	return string(b), nil
}

// Parse reads an annotation written by Marshal. It accepts at most
// MaxBytes, and rejects fields of the wrong type, trailing data and a
// missing node name with an error naming the annotation and saying what is
// wrong.
func Parse(s string) (Status, error) {
	var ns Status
	if len(s) > MaxBytes {
		return ns, fmt.Errorf("%s: %d bytes, over the %d limit", Annotation, len(s), MaxBytes)
	}
	dec := json.NewDecoder(strings.NewReader(s))
	if err := dec.Decode(&ns); err != nil {
		return Status{}, fmt.Errorf("%s: not vipcast's status JSON: %w", Annotation, err)
	}
	// Not dec.More: it is false before a stray ']' or '}'.
	if rest := s[dec.InputOffset():]; strings.Trim(rest, " \t\r\n") != "" {
		return Status{}, fmt.Errorf("%s: data after the JSON object", Annotation)
	}
	if ns.Node == "" {
		return Status{}, fmt.Errorf("%s: no node name", Annotation)
	}
	return ns, nil
}
