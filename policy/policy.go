// Package policy decides what vipcast puts on the wire: only the VIP
// prefixes, with the attributes the network team asked for, and nothing
// imported. It is vendor neutral; peers translates it for GoBGP.
package policy

import (
	"errors"
	"fmt"
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

// Attributes are the path attributes sent with every VIP prefix. All nodes
// of a cluster must send identical attributes or routers pick one best path
// instead of spreading traffic by ECMP.
type Attributes struct {
	Communities      []Community
	LargeCommunities []LargeCommunity
	// MED is sent only when set; nil leaves the attribute out.
	MED *uint32
	// LocalPref is sent to iBGP peers only; nil leaves the default (100).
	LocalPref *uint32
	// Prepend repeats the local ASN this many extra times.
	Prepend uint8
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
	// Priority ranks this node for networks without ECMP: the lowest
	// priority is the primary. 0 (default) adds nothing.
	Priority uint32 `mapstructure:"priority"`
	// PriorityMode is how Priority goes on the wire: med (default) or prepend.
	PriorityMode string `mapstructure:"priorityMode"`
}

// Default returns the default policy: bare prefixes, no attributes, and
// graceful shutdown on.
func Default() Config {
	return Config{GracefulShutdown: DefaultGracefulShutdown(), PriorityMode: PriorityMED}
}

// maxPrepend keeps AS paths sane; more than a few prepends is always a typo.
const maxPrepend = 10

// Validate returns every problem at once, each naming the field, the value
// and the fix.
func (c Config) Validate() error {
	_, err := c.Attributes()
	return err
}

// Attributes parses the configuration into wire attributes.
func (c Config) Attributes() (Attributes, error) {
	var errs []error
	a := Attributes{MED: c.MED, LocalPref: c.LocalPref, Prepend: c.Prepend}
	for i, s := range c.Communities {
		v, err := ParseCommunity(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy.communities[%d]: %w", i, err))
			continue
		}
		a.Communities = append(a.Communities, v)
	}
	for i, s := range c.LargeCommunities {
		v, err := ParseLargeCommunity(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy.largeCommunities[%d]: %w", i, err))
			continue
		}
		a.LargeCommunities = append(a.LargeCommunities, v)
	}
	if c.Prepend > maxPrepend {
		errs = append(errs, fmt.Errorf("policy.prepend: %d is more than %d; use a value from 0 to %d", c.Prepend, maxPrepend, maxPrepend))
	}
	if err := c.applyPriority(&a); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.GracefulShutdown.validate()...)
	return a, errors.Join(errs...)
}
