// Package policy decides what vipcast puts on the wire: only the VIP
// prefixes, with the attributes the network team asked for, and nothing
// imported. It is vendor neutral; peers translates it for GoBGP.
package policy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Community is a standard RFC 1997 community, ASN:value.
type Community uint32

// GracefulShutdown is the RFC 8326 GRACEFUL_SHUTDOWN community 65535:0.
const GracefulShutdown Community = 0xFFFF0000

func (c Community) String() string { return fmt.Sprintf("%d:%d", uint32(c)>>16, uint32(c)&0xFFFF) }

// ParseCommunity parses "ASN:value" with both halves in 0..65535.
func ParseCommunity(s string) (Community, error) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, fmt.Errorf("%q is not a community; write it as ASN:value, e.g. 64512:100", s)
	}
	hi, err1 := strconv.ParseUint(a, 10, 16)
	lo, err2 := strconv.ParseUint(b, 10, 16)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%q is not a community; both halves must be 0..65535, e.g. 64512:100", s)
	}
	return Community(hi<<16 | lo), nil
}

// LargeCommunity is an RFC 8092 large community, global:local1:local2.
type LargeCommunity struct{ Global, Local1, Local2 uint32 }

func (c LargeCommunity) String() string {
	return fmt.Sprintf("%d:%d:%d", c.Global, c.Local1, c.Local2)
}

// ParseLargeCommunity parses "global:local1:local2", each 0..4294967295.
func ParseLargeCommunity(s string) (LargeCommunity, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return LargeCommunity{}, fmt.Errorf("%q is not a large community; write it as global:local1:local2, e.g. 64512:1:100", s)
	}
	var v [3]uint32
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return LargeCommunity{}, fmt.Errorf("%q is not a large community; each part must be 0..4294967295, e.g. 64512:1:100", s)
		}
		v[i] = uint32(n)
	}
	return LargeCommunity{v[0], v[1], v[2]}, nil
}

// Attributes are the path attributes every VIP path carries before the
// per-session export policy (see Session) adds a peer's own. All nodes of a
// cluster must send identical attributes or routers pick one best path
// instead of spreading traffic by ECMP.
type Attributes struct {
	Communities      []Community
	LargeCommunities []LargeCommunity
	// MED is sent only when set; nil leaves the attribute out.
	MED *uint32
	// LocalPref is sent to iBGP peers only; nil leaves the default (100).
	LocalPref *uint32
}

// Config is the policy section of the configuration file.
type Config struct {
	Communities      []string `mapstructure:"communities"`
	LargeCommunities []string `mapstructure:"largeCommunities"`
	MED              *uint32  `mapstructure:"med"`
	LocalPref        *uint32  `mapstructure:"localPref"`
	Prepend          uint8    `mapstructure:"prepend"`
	// GracefulShutdown is the RFC 8326 sequence on drain and SIGTERM.
	GracefulShutdown GracefulShutdownConfig `mapstructure:"gracefulShutdown"`
	// LastResort keeps a node that fails its health check advertised with
	// losing attributes instead of withdrawing it.
	LastResort LastResortConfig `mapstructure:"lastResort"`
	// Priority ranks this node for networks without ECMP: the lowest
	// priority is the primary. 0 (default) adds nothing.
	Priority uint32 `mapstructure:"priority"`
	// PriorityMode is how Priority goes on the wire: med (default) or prepend.
	PriorityMode string `mapstructure:"priorityMode"`
}

// Default returns the default policy: bare prefixes, no attributes,
// graceful shutdown on, and the last resort on with a prepend.
func Default() Config {
	return Config{GracefulShutdown: DefaultGracefulShutdown(), LastResort: DefaultLastResort(), PriorityMode: PriorityMED}
}

// maxPrepend keeps AS paths sane; more than a few prepends is always a typo.
const maxPrepend = 10

// Validate returns every problem at once, each naming the field, the value
// and the fix.
func (c Config) Validate() error {
	_, err := c.Attributes()
	return err
}

// Attributes parses the configuration into the attributes of the path.
// The AS-path prepend is per session: see Export.
func (c Config) Attributes() (Attributes, error) {
	var errs []error
	a := Attributes{LocalPref: c.LocalPref}
	a.Communities, errs = parseCommunities("policy.communities", c.Communities, errs)
	a.LargeCommunities, errs = parseLargeCommunities("policy.largeCommunities", c.LargeCommunities, errs)
	if c.Prepend > maxPrepend {
		errs = append(errs, fmt.Errorf("policy.prepend: %d is more than %d; use a value from 0 to %d", c.Prepend, maxPrepend, maxPrepend))
	}
	med, err := c.priorityMED("policy.med", c.MED)
	if err != nil {
		errs = append(errs, err)
	}
	a.MED = med
	if _, err := c.priorityPrepend("policy.prepend", c.Prepend); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.GracefulShutdown.validate()...)
	errs = append(errs, c.validateLastResort()...)
	return a, errors.Join(errs...)
}

// parseCommunities parses list into errs' companions; field names the list
// in errors. GRACEFUL_SHUTDOWN is refused: vipcast sends it itself during a
// drain, and a path that always carried it would never get traffic.
func parseCommunities(field string, list []string, errs []error) ([]Community, []error) {
	var out []Community
	for i, s := range list {
		v, err := ParseCommunity(s)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s[%d]: %w", field, i, err))
		case v == GracefulShutdown:
			errs = append(errs, fmt.Errorf("%s[%d]: 65535:0 is GRACEFUL_SHUTDOWN (RFC 8326), which vipcast adds itself during a drain; remove it (see policy.gracefulShutdown)", field, i))
		case v == LastResortMarker && field != "policy.lastResort.communities":
			errs = append(errs, fmt.Errorf("%s[%d]: %s is vipcast's internal last-resort marker, which never leaves the node; use another community", field, i, v))
		case !slices.Contains(out, v):
			out = append(out, v)
		}
	}
	return out, errs
}

func parseLargeCommunities(field string, list []string, errs []error) ([]LargeCommunity, []error) {
	var out []LargeCommunity
	for i, s := range list {
		v, err := ParseLargeCommunity(s)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s[%d]: %w", field, i, err))
		case !slices.Contains(out, v):
			out = append(out, v)
		}
	}
	return out, errs
}
