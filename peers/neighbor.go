package peers

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vipcast/vipcast/policy"
)

// Neighbor is one peer as validation leaves it: the configuration with its
// defaults, its addresses parsed and its export policy computed, so nothing
// downstream parses a string again or meets a value it cannot use.
type Neighbor struct {
	Peer
	// Field is the peer's place in the configuration file ("peers[2]").
	// It survives per-node selection, so a message names the entry the
	// operator wrote, not an index in the list a node kept.
	Field string
	// Addr is Address. Source is SourceAddress and NextHop is NextHopIPv6;
	// each is the zero Addr when unset (NextHop then is automatic).
	Addr, Source, NextHop netip.Addr
	// Nodes is NodeCIDRs.
	Nodes []netip.Prefix
	// Export is what the session's export policy does to the VIP paths.
	Export policy.Export
}

// Peering is the bgp and peers sections, validated and typed: what the
// Router is built and reconfigured with.
type Peering struct {
	BGP       Global
	Neighbors []Neighbor
}

// ParseError is Parse's error. Own holds the problems of the bgp and
// peers sections themselves (Validate's); Policy those between a peer and
// the global policy, which a caller validating every section lists last,
// after the policy section's own.
type ParseError struct {
	Own, Policy error
}

func (e *ParseError) Error() string { return errors.Join(e.Own, e.Policy).Error() }

// Unwrap returns the non-nil parts, Own first.
func (e *ParseError) Unwrap() []error {
	var out []error
	for _, err := range []error{e.Own, e.Policy} {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// ErrInvalidPolicy is ParseError.Policy when the global policy alone is
// wrong: its own Validate names the problems.
var ErrInvalidPolicy = errors.New("policy: invalid; see its problems")

// Parse validates c, checks every peer's policy against the global policy
// pol, and returns the result typed. On any problem it returns a
// *ParseError listing all of them, and no Peering.
func (c Config) Parse(pol policy.Config) (Peering, error) {
	own := c.Validate()
	polOK := pol.Validate() == nil
	d := c.WithDefaults()
	out := Peering{BGP: d.BGP, Neighbors: make([]Neighbor, len(d.Peers))}
	var errs []error
	for i, p := range d.Peers {
		f := fmt.Sprintf("peers[%d]", i)
		field := f + ".policy"
		n := Neighbor{Peer: p, Field: f}
		if p.Policy.Validate(field) == nil && polOK {
			e, err := pol.Export(field, p.Policy)
			if err != nil {
				errs = append(errs, err)
			}
			n.Export = e
		}
		// A router drops a path that carries its own ASN: prepending on
		// iBGP would make the VIP vanish instead of lowering its rank.
		if p.ASN != 0 && p.ASN == p.LocalASN {
			n.Export = pol.IBGP(n.Export)
			switch {
			case p.Policy.Prepend != nil && *p.Policy.Prepend > 0:
				errs = append(errs, fmt.Errorf("%s.prepend: %d with peers[%d] being iBGP (asn %d); prepending breaks iBGP, use %s.med or .localPref instead", field, *p.Policy.Prepend, i, p.ASN, field))
			case p.Policy.Prepend == nil && pol.Prepend > 0:
				errs = append(errs, fmt.Errorf("policy.prepend: %d with peers[%d] being iBGP (asn %d); prepending breaks iBGP, use policy.med or policy.localPref instead (or peers[%d].policy.prepend: 0)", pol.Prepend, i, p.ASN, i))
			case pol.PriorityMode == policy.PriorityPrepend && pol.Priority > 0:
				errs = append(errs, fmt.Errorf("policy.priorityMode: prepend with peers[%d] being iBGP (asn %d); prepending breaks iBGP, use priorityMode: med", i, p.ASN))
			}
		}
		out.Neighbors[i] = n
	}
	if cross := errors.Join(errs...); own != nil || cross != nil || !polOK {
		if own == nil && cross == nil {
			cross = ErrInvalidPolicy
		}
		return Peering{}, &ParseError{Own: own, Policy: cross}
	}
	// Validate proved every string below parses.
	for i := range out.Neighbors {
		n := &out.Neighbors[i]
		n.Addr, _ = netip.ParseAddr(n.Address)
		if n.SourceAddress != "" {
			n.Source, _ = netip.ParseAddr(n.SourceAddress)
		}
		if n.NextHopIPv6 != "" {
			n.NextHop, _ = netip.ParseAddr(n.NextHopIPv6)
		}
		for _, s := range n.NodeCIDRs {
			pfx, _ := netip.ParsePrefix(s)
			n.Nodes = append(n.Nodes, pfx)
		}
	}
	return out, nil
}
