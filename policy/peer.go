package policy

import (
	"errors"
	"fmt"
	"slices"
)

// PeerConfig is one peer's policy (peers[].policy): what that session gets
// besides, or instead of, the global policy. Communities and large
// communities are added to the global ones; med, localPref and prepend
// replace the global values for this session. A node's priority applies on
// top of whichever value is in force, on every session, and during graceful
// shutdown policy.gracefulShutdown.med and .localPref win.
type PeerConfig struct {
	Communities      []string `mapstructure:"communities"`
	LargeCommunities []string `mapstructure:"largeCommunities"`
	MED              *uint32  `mapstructure:"med"`
	LocalPref        *uint32  `mapstructure:"localPref"`
	Prepend          *uint8   `mapstructure:"prepend"`
}

// Session is what the export policy does to a VIP path on its way to one
// peer: the difference between what the path carries (Attributes) and what
// that peer must see.
type Session struct {
	// AddCommunities and AddLargeCommunities are added to the path's.
	// With ReplaceCommunities, AddCommunities replaces the path's instead:
	// it is the whole list the peer sees (a last-resort path's marker goes).
	ReplaceCommunities  bool
	AddCommunities      []Community
	AddLargeCommunities []LargeCommunity
	// MED and LocalPref, when set, replace the path's.
	MED, LocalPref *uint32
	// Prepend is how many extra times the session's local ASN goes in
	// front of the AS path.
	Prepend uint8
}

// Export is one peer's Session in normal operation, while the path
// carries GRACEFUL_SHUTDOWN, and while it is a last resort (carries
// LastResortMarker); LastResort is nil while policy.lastResort is off.
type Export struct {
	Normal, Shutdown Session
	LastResort       *Session
}

// Validate checks what needs no global policy; field names the block in
// errors, e.g. "peers[1].policy".
func (p PeerConfig) Validate(field string) error {
	var errs []error
	_, errs = parseCommunities(field+".communities", p.Communities, errs)
	_, errs = parseLargeCommunities(field+".largeCommunities", p.LargeCommunities, errs)
	if p.LocalPref != nil && *p.LocalPref == 0 {
		// GoBGP's set-local-pref action treats 0 as "no action".
		errs = append(errs, fmt.Errorf("%s.localPref: 0 cannot be set per peer; use 1 or more here, or policy.localPref: 0 for every peer", field))
	}
	if p.Prepend != nil && *p.Prepend > maxPrepend {
		errs = append(errs, fmt.Errorf("%s.prepend: %d is more than %d; use a value from 0 to %d", field, *p.Prepend, maxPrepend, maxPrepend))
	}
	return errors.Join(errs...)
}

// Export computes what the session to a peer with policy p gets, in both
// states. field names p in errors, e.g. "peers[1].policy".
func (c Config) Export(field string, p PeerConfig) (Export, error) {
	if err := p.Validate(field); err != nil {
		return Export{}, err
	}
	global, err := c.Attributes()
	if err != nil {
		return Export{}, err
	}
	var s Session
	var errs []error
	comms, _ := parseCommunities("", p.Communities, nil)
	for _, v := range comms {
		if !slices.Contains(global.Communities, v) {
			s.AddCommunities = append(s.AddCommunities, v)
		}
	}
	large, _ := parseLargeCommunities("", p.LargeCommunities, nil)
	for _, v := range large {
		if !slices.Contains(global.LargeCommunities, v) {
			s.AddLargeCommunities = append(s.AddLargeCommunities, v)
		}
	}
	if p.MED != nil {
		if s.MED, err = c.priorityMED(field+".med", p.MED); err != nil {
			errs = append(errs, err)
		}
	}
	if p.LocalPref != nil {
		v := *p.LocalPref
		s.LocalPref = &v
	}
	prepend, prependField := c.Prepend, "policy.prepend"
	if p.Prepend != nil {
		prepend, prependField = *p.Prepend, field+".prepend"
	}
	if s.Prepend, err = c.priorityPrepend(prependField, prepend); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return Export{}, err
	}
	shut := s
	shut.AddCommunities = slices.Clone(s.AddCommunities)
	shut.AddLargeCommunities = slices.Clone(s.AddLargeCommunities)
	// The path already carries the graceful-shutdown values.
	if c.GracefulShutdown.MED != nil {
		shut.MED = nil
	}
	if c.GracefulShutdown.LocalPref != nil {
		shut.LocalPref = nil
	}
	return Export{Normal: s, Shutdown: shut, LastResort: c.lastResortSession(global, s)}, nil
}

// lastResortSession is s for a last-resort path (see WithLastResort): the
// extra prepends, the path's own MED and local preference where the last
// resort sets them, and the communities replaced by the list the peer must
// see, without the marker.
func (c Config) lastResortSession(global Attributes, s Session) *Session {
	l := c.LastResort
	if !l.Enabled {
		return nil
	}
	lr := s
	lr.AddLargeCommunities = slices.Clone(s.AddLargeCommunities)
	// With prepend priorities another node's healthy path may carry up to
	// maxPrepend prepends: a degraded one starts from there.
	base := s.Prepend
	if c.PriorityMode == PriorityPrepend {
		base = max(base, maxPrepend)
	}
	lr.Prepend = base + l.Prepend
	if l.MED != nil {
		lr.MED = nil
	}
	if l.LocalPref != nil {
		lr.LocalPref = nil
	}
	path := global.WithLastResort(l)
	lr.ReplaceCommunities = true
	lr.AddCommunities = nil
	for _, v := range append(path.Communities, s.AddCommunities...) {
		if v != LastResortMarker && !slices.Contains(lr.AddCommunities, v) {
			lr.AddCommunities = append(lr.AddCommunities, v)
		}
	}
	return &lr
}
