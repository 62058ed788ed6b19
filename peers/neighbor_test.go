package peers

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vipcast/vipcast/policy"
)

// Parse types every string once and keeps each peer's place in the file,
// through selection, so a later message names the peer the operator wrote.
func TestParse(t *testing.T) {
	pol := policy.Default()
	pol.Communities = []string{"64512:1"}
	c := Config{BGP: Global{ASN: 64512, RouterID: "192.0.2.11"}, Peers: []Peer{
		{Address: "192.0.2.1", ASN: 65000, NodeCIDRs: []string{"198.51.100.0/24"}},
		{Address: "192.0.2.2", ASN: 65000, SourceAddress: "192.0.2.11", Families: []string{"ipv4", "ipv6"}, NextHopIPv6: "2001:db8:2::11",
			NodeCIDRs: []string{"192.0.2.0/24"}, Policy: policy.PeerConfig{Communities: []string{"64512:1", "64512:2"}}},
	}}
	p, err := c.Parse(pol)
	if err != nil {
		t.Fatal(err)
	}
	n := p.Neighbors[1]
	got := struct {
		Field                 string
		Addr, Source, NextHop netip.Addr
		Nodes                 []netip.Prefix
		Add                   []policy.Community
		Hold                  time.Duration
	}{n.Field, n.Addr, n.Source, n.NextHop, n.Nodes, n.Export.Normal.AddCommunities, n.HoldTime}
	want := got
	want.Field, want.Hold = "peers[1]", DefaultHoldTime
	want.Addr, want.Source, want.NextHop = netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("2001:db8:2::11")
	want.Nodes = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	want.Add = []policy.Community{64512<<16 | 2} // 64512:1 is already on the path
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("neighbor (-want +got):\n%s", diff)
	}
	if p.Neighbors[0].Source.IsValid() || p.Neighbors[0].NextHop.IsValid() {
		t.Errorf("unset addresses parsed as %v, %v", p.Neighbors[0].Source, p.Neighbors[0].NextHop)
	}

	kept, skipped := p.Select(NodeInfo{Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.11")}})
	if len(kept.Neighbors) != 1 || kept.Neighbors[0].Field != "peers[1]" || len(skipped) != 1 || skipped[0].Field != "peers[0]" {
		t.Errorf("after selection: kept %+v, skipped %+v; want peers[1] kept under its own name", kept.Neighbors, skipped)
	}
}

func TestParseErrors(t *testing.T) {
	prepend := uint8(1)
	tests := []struct {
		name        string
		c           Config
		pol         func(*policy.Config)
		own, policy []string // substrings; nil: none
		invalidPol  bool
	}{
		{"own and cross-section problems apart",
			Config{BGP: Global{ASN: 64512}, Peers: []Peer{{Address: "nope", ASN: 65000}, {Address: "192.0.2.2", ASN: 64512, Policy: policy.PeerConfig{Prepend: &prepend}}}},
			nil, []string{`peers[0].address: "nope"`}, []string{"peers[1].policy.prepend: 1 with peers[1] being iBGP"}, false},
		{"bad global policy: named by the policy section only",
			Config{BGP: Global{ASN: 64512}, Peers: []Peer{{Address: "192.0.2.1", ASN: 65000}}},
			func(p *policy.Config) { p.Communities = []string{"x"} }, nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := policy.Default()
			if tt.pol != nil {
				tt.pol(&pol)
			}
			p, err := tt.c.Parse(pol)
			var pe *ParseError
			if !errors.As(err, &pe) || len(p.Neighbors) != 0 {
				t.Fatalf("Parse = %+v, %v; want a *ParseError and no peering", p, err)
			}
			check := func(what string, err error, want []string) {
				if want == nil && err != nil && !tt.invalidPol {
					t.Errorf("%s: %v, want none", what, err)
				}
				for _, w := range want {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("%s: %v, want it to contain %q", what, err, w)
					}
				}
			}
			check("Own", pe.Own, tt.own)
			check("Policy", pe.Policy, tt.policy)
			if tt.invalidPol != errors.Is(pe.Policy, ErrInvalidPolicy) {
				t.Errorf("Policy = %v, ErrInvalidPolicy %v", pe.Policy, tt.invalidPol)
			}
		})
	}
}
