package peers

import (
	"context"
	"fmt"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/vipcast/vipcast/policy"
)

// The GoBGP policy objects: the global import and export policies, the VIP
// prefix sets, and one export policy per peer carrying its attributes.

// Names of the GoBGP policy objects vipcast installs.
const (
	importPolicy = "vipcast-import"
	exportPolicy = "vipcast-export-" // + peer address and a generation: one per peer
	vipSetPrefix = "vipcast-vips-"   // + "v4" / "v6": GoBGP prefix sets hold one family
	peerSetName  = "vipcast-peer-"   // + peer address: a neighbor set of one
	gshutSet     = "vipcast-gshut"   // a community set holding 65535:0
	lastSet      = "vipcast-last"    // a community set holding policy.LastResortMarker
)

func (g *GoBGP) installPolicies(ctx context.Context) error {
	s := g.srv
	local := api.Conditions_ROUTE_TYPE_LOCAL
	imp := &api.Policy{Name: importPolicy, Statements: []*api.Statement{{
		Name: importPolicy + "-local", Conditions: &api.Conditions{RouteType: local},
		Actions: &api.Actions{RouteAction: api.RouteAction_ACCEPT},
	}}}
	sets := map[string][]*api.Prefix{}
	for p := range g.vips {
		fam := vipFamily(p)
		bits := uint32(p.Bits()) // exact match: a covering or longer prefix never passes
		sets[fam] = append(sets[fam], &api.Prefix{IpPrefix: p.String(), MaskLengthMin: bits, MaskLengthMax: bits})
	}
	for _, fam := range []string{"v4", "v6"} {
		if len(sets[fam]) == 0 {
			continue
		}
		if err := s.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
			DefinedType: api.DefinedType_PREFIX, Name: vipSetPrefix + fam, Prefixes: sets[fam],
		}}); err != nil {
			return err
		}
	}
	if err := s.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
		DefinedType: api.DefinedType_COMMUNITY, Name: gshutSet, List: []string{policy.GracefulShutdown.String()},
	}}); err != nil {
		return err
	}
	if err := s.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
		DefinedType: api.DefinedType_COMMUNITY, Name: lastSet, List: []string{policy.LastResortMarker.String()},
	}}); err != nil {
		return err
	}
	if err := s.AddPolicy(ctx, &api.AddPolicyRequest{Policy: imp}); err != nil {
		return err
	}
	for _, a := range []struct {
		policies []*api.Policy
		dir      api.PolicyDirection
	}{{[]*api.Policy{{Name: importPolicy}}, api.PolicyDirection_IMPORT}, {nil, api.PolicyDirection_EXPORT}} {
		if err := s.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
			Name: "global", Direction: a.dir, Policies: a.policies, DefaultAction: api.RouteAction_REJECT,
		}}); err != nil {
			return err
		}
	}
	return nil
}

func (g *GoBGP) hasFamily(fam string) bool {
	for p := range g.vips {
		if vipFamily(p) == fam {
			return true
		}
	}
	return false
}

func vipFamily(p netip.Prefix) string {
	if p.Addr().Is6() {
		return "v6"
	}
	return "v4"
}

// setExport installs n's export policy, replacing the one it had. The new
// one goes in before the old one leaves, so no path is evaluated without a
// policy for p (which would withdraw it). nh is the IPv6 VIPs' next hop on
// this session; a refused one leaves them out of the policy, so they are
// not sent. Callers hold mu or own g.srv.
func (g *GoBGP) setExport(ctx context.Context, n Neighbor, nh nextHop6) error {
	s := g.srv
	addr, e := n.Addr, n.Export
	old, had := g.exports[addr]
	nset := peerSetName + addr.String()
	if !had {
		if err := s.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
			DefinedType: api.DefinedType_NEIGHBOR, Name: nset, List: []string{netip.PrefixFrom(addr, addr.BitLen()).String()},
		}}); err != nil {
			return err
		}
	}
	g.exportGen++
	name := fmt.Sprintf("%s%s-%d", exportPolicy, addr, g.exportGen)
	pol := &api.Policy{Name: name}
	for _, fam := range []string{"v4", "v6"} {
		if !g.hasFamily(fam) || (fam == "v6" && nh.refused != "") {
			continue
		}
		actions := func(s policy.Session) *api.Actions {
			a := sessionActions(s, n.LocalASN)
			if fam == "v6" && nh.addr.IsValid() {
				a.Nexthop = &api.NexthopAction{Address: nh.addr.String()}
			}
			return a
		}
		cond := func(community string) *api.Conditions {
			c := &api.Conditions{
				PrefixSet:   &api.MatchSet{Type: api.MatchSet_ANY, Name: vipSetPrefix + fam},
				NeighborSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: nset},
				RouteType:   api.Conditions_ROUTE_TYPE_LOCAL,
			}
			if community != "" {
				c.CommunitySet = &api.MatchSet{Type: api.MatchSet_ANY, Name: community}
			}
			return c
		}
		pol.Statements = append(pol.Statements,
			&api.Statement{Name: name + "-" + fam + "-gshut", Conditions: cond(gshutSet), Actions: actions(e.Shutdown)})
		// Without a last-resort statement a marked path would leave with
		// the marker and no prepend; with the mode off none is marked.
		if e.LastResort != nil {
			pol.Statements = append(pol.Statements,
				&api.Statement{Name: name + "-" + fam + "-last", Conditions: cond(lastSet), Actions: actions(*e.LastResort)})
		}
		pol.Statements = append(pol.Statements,
			&api.Statement{Name: name + "-" + fam, Conditions: cond(""), Actions: actions(e.Normal)})
	}
	if err := s.AddPolicy(ctx, &api.AddPolicyRequest{Policy: pol}); err != nil {
		return err
	}
	if err := s.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_EXPORT, Policies: []*api.Policy{{Name: name}}, DefaultAction: api.RouteAction_REJECT,
	}}); err != nil {
		return err
	}
	g.exports[addr] = name
	g.noteNextHop(addr, nh)
	if had {
		return g.dropPolicy(ctx, old)
	}
	return nil
}

// noteNextHop records the IPv6 next hop installed for addr, and tells the
// operator when it changed: a refusal is an error in the log and the
// peer's status until a reload finds a next hop.
func (g *GoBGP) noteNextHop(addr netip.Addr, nh nextHop6) {
	old, had := g.nextHops[addr]
	g.nextHops[addr] = nh
	g.pmu.Lock()
	if t := g.peers[addr]; t != nil {
		t.nextHopErr = nh.refused
	}
	g.pmu.Unlock()
	switch {
	case had && old == nh:
	case nh.refused != "":
		g.log.Error("IPv6 VIPs not sent to this peer: no IPv6 next hop", "peer", addr, "err", nh.refused)
	case nh.addr.IsValid():
		g.log.Info("IPv6 VIPs sent with next hop", "peer", addr, "nexthop", nh.addr)
	}
}

// removeExport deletes p's export policy and its neighbor set.
func (g *GoBGP) removeExport(ctx context.Context, addr netip.Addr) error {
	name, ok := g.exports[addr]
	if !ok {
		return nil
	}
	if err := g.dropPolicy(ctx, name); err != nil {
		return err
	}
	delete(g.exports, addr)
	delete(g.nextHops, addr)
	return g.srv.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{
		DefinedSet: &api.DefinedSet{DefinedType: api.DefinedType_NEIGHBOR, Name: peerSetName + addr.String()}, All: true,
	})
}

func (g *GoBGP) dropPolicy(ctx context.Context, name string) error {
	if err := g.srv.DeletePolicyAssignment(ctx, &api.DeletePolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_EXPORT, Policies: []*api.Policy{{Name: name}},
	}}); err != nil {
		return err
	}
	return g.srv.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: &api.Policy{Name: name}, All: true})
}

// sessionActions turns a policy.Session into GoBGP actions ending in accept.
// asn is the session's local ASN, which is what a prepend repeats.
func sessionActions(s policy.Session, asn uint32) *api.Actions {
	a := &api.Actions{RouteAction: api.RouteAction_ACCEPT}
	if len(s.AddCommunities) > 0 || s.ReplaceCommunities {
		cs := make([]string, len(s.AddCommunities))
		for i, c := range s.AddCommunities {
			cs[i] = c.String()
		}
		typ := api.CommunityAction_ADD
		if s.ReplaceCommunities {
			typ = api.CommunityAction_REPLACE // an empty list removes the attribute
		}
		a.Community = &api.CommunityAction{Type: typ, Communities: cs}
	}
	if len(s.AddLargeCommunities) > 0 {
		cs := make([]string, len(s.AddLargeCommunities))
		for i, c := range s.AddLargeCommunities {
			cs[i] = c.String()
		}
		a.LargeCommunity = &api.CommunityAction{Type: api.CommunityAction_ADD, Communities: cs}
	}
	if s.MED != nil {
		a.Med = &api.MedAction{Type: api.MedAction_REPLACE, Value: int64(*s.MED)}
	}
	if s.LocalPref != nil {
		a.LocalPref = &api.LocalPrefAction{Value: *s.LocalPref}
	}
	if s.Prepend > 0 {
		a.AsPrepend = &api.AsPrependAction{Asn: asn, Repeat: uint32(s.Prepend)}
	}
	return a
}
