package policy

import (
	"fmt"
	"slices"
)

// LastResortConfig is policy.lastResort: a node whose apiserver answers
// but fails its readiness check keeps advertising the VIPs with attributes
// that lose to every healthy path, so routers use it only when no healthy
// node advertises (every node failing together: etcd down, a bad flag
// rolled out everywhere, an expired certificate), and still spread load by
// ECMP across all such degraded paths. docs/last-resort.md has the
// reasoning behind the defaults and the router-side configuration.
type LastResortConfig struct {
	Enabled bool `mapstructure:"enabled"`
	// Prepend is how many extra times the session's local ASN goes in front
	// of the AS path, on top of the session's own prepend. It needs no
	// router configuration: AS-path length is compared on every router,
	// across neighbouring ASes, before MED.
	Prepend uint8 `mapstructure:"prepend"`
	// MED, if set, replaces the MED (e.g. 4294967295). Routers compare MED
	// only between paths from the same neighbouring AS unless told to
	// always compare it.
	MED *uint32 `mapstructure:"med"`
	// LocalPref, if set, replaces the local preference on iBGP sessions.
	LocalPref *uint32 `mapstructure:"localPref"`
	// Communities are added; the network team maps one to a low local-pref.
	Communities []string `mapstructure:"communities"`
}

// DefaultLastResort is on, with 8 prepends and nothing else: the one
// attribute that works without router configuration.
func DefaultLastResort() LastResortConfig {
	return LastResortConfig{Enabled: true, Prepend: DefaultLastResortPrepend}
}

// DefaultLastResortPrepend makes a degraded path longer than a healthy one
// that crosses a three-tier fabric (a few ASNs) plus priority prepends.
const DefaultLastResortPrepend = 8

// maxLastResortPrepend keeps the AS path under common maxas-limit filters.
const maxLastResortPrepend = 32

// LastResortMarker is the community that marks a last-resort path inside
// vipcast, so the export policy of each session applies the last-resort
// attributes. The export policy replaces the communities of such a path, so
// the marker itself never leaves the node. 0:x lies in RFC 1997's reserved
// range, which no network assigns.
const LastResortMarker Community = 0x0000_1A57

// communities parses lastResort.communities, refusing the marker.
func (l LastResortConfig) communities(errs []error) ([]Community, []error) {
	out, errs := parseCommunities("policy.lastResort.communities", l.Communities, errs)
	for i, c := range out {
		if c == LastResortMarker {
			errs = append(errs, fmt.Errorf("policy.lastResort.communities[%d]: %s is vipcast's internal last-resort marker; use another community", i, c))
		}
	}
	return out, errs
}

func (c Config) validateLastResort() []error {
	l := c.LastResort
	var errs []error
	_, errs = l.communities(errs)
	if !l.Enabled {
		return errs
	}
	if l.Prepend == 0 && l.MED == nil && l.LocalPref == nil && len(l.Communities) == 0 {
		errs = append(errs, fmt.Errorf("policy.lastResort: enabled with no prepend, med, localPref or communities, so a degraded path would tie with healthy ones; set prepend (default %d), or enabled: false", DefaultLastResortPrepend))
	}
	if l.Prepend > maxLastResortPrepend {
		errs = append(errs, fmt.Errorf("policy.lastResort.prepend: %d is more than %d; use 1 to %d (default %d)", l.Prepend, maxLastResortPrepend, maxLastResortPrepend, DefaultLastResortPrepend))
	}
	if l.LocalPref != nil && *l.LocalPref == 0 {
		// GoBGP's set-local-pref action treats 0 as "no action".
		errs = append(errs, fmt.Errorf("policy.lastResort.localPref: 0 cannot be set; use 1 or more (lower than the healthy localPref, default 100)"))
	}
	if l.LocalPref != nil && c.LocalPref != nil && *l.LocalPref >= *c.LocalPref {
		errs = append(errs, fmt.Errorf("policy.lastResort.localPref: %d is not lower than policy.localPref %d, so a degraded path would win on iBGP; use less than %d", *l.LocalPref, *c.LocalPref, *c.LocalPref))
	}
	if l.MED != nil && c.MED != nil && *l.MED <= *c.MED {
		errs = append(errs, fmt.Errorf("policy.lastResort.med: %d is not higher than policy.med %d, so a degraded path would not lose on MED; use more than %d, e.g. 4294967295", *l.MED, *c.MED, *c.MED))
	}
	return errs
}

// WithLastResort returns a copy of a as a last-resort path: the marker and
// l's communities added, l's MED and local preference in place of a's. The
// prepend is the session's (see Export's LastResort). a is not modified.
func (a Attributes) WithLastResort(l LastResortConfig) Attributes {
	comms, _ := l.communities(nil) // validated
	return a.overlay(append(comms, LastResortMarker), l.MED, l.LocalPref)
}

// IsLastResort reports whether a marks a last-resort path.
func (a Attributes) IsLastResort() bool { return slices.Contains(a.Communities, LastResortMarker) }

// IBGP turns e's last-resort session into one for an iBGP peer, which
// drops a path carrying its own ASN: no extra prepend, and, unless
// lastResort.localPref puts one on the path, a local preference half the
// healthy one (at least 1), so the degraded path still loses.
func (c Config) IBGP(e Export) Export {
	if e.LastResort == nil {
		return e
	}
	lr := *e.LastResort
	lr.Prepend = e.Normal.Prepend
	if c.LastResort.LocalPref == nil {
		healthy := uint32(100)
		switch {
		case e.Normal.LocalPref != nil:
			healthy = *e.Normal.LocalPref
		case c.LocalPref != nil:
			healthy = *c.LocalPref
		}
		v := max(healthy/2, 1)
		lr.LocalPref = &v
	}
	e.LastResort = &lr
	return e
}
