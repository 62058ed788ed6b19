package peers

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vipcast/vipcast/policy"
)

func TestSelect(t *testing.T) {
	c := Config{BGP: Global{ASN: 64512}, Peers: []Peer{
		{Address: "192.0.2.1", ASN: 65000},
		{Address: "192.0.2.2", ASN: 65000, NodeCIDRs: []string{"192.0.2.0/26"}},
		{Address: "192.0.2.3", ASN: 65000, NodeCIDRs: []string{"198.51.100.0/24", "2001:db8:1::/64"}},
		{Address: "192.0.2.4", ASN: 65000, NodeSelector: map[string]string{"topology.kubernetes.io/zone": "a"}},
		{Address: "192.0.2.5", ASN: 65000, NodeCIDRs: []string{"192.0.2.0/26"}, NodeSelector: map[string]string{"rack": "r1"}},
	}}
	addrs := []netip.Addr{netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("2001:db8:2::11")}
	kept := func(p Peering) string {
		var s []string
		for _, n := range p.Neighbors {
			s = append(s, n.Address)
		}
		return strings.Join(s, " ")
	}
	pc := mustParse(t, c, policy.Default())
	tests := []struct {
		name    string
		n       NodeInfo
		want    string
		skipped []string // substrings, in order
		reasons []SkipReason
	}{
		{"labels unknown: selector peers skipped", NodeInfo{Addresses: addrs},
			"192.0.2.1 192.0.2.2", []string{"peers[2] (192.0.2.3): no address", "peers[3] (192.0.2.4): nodeSelector {topology.kubernetes.io/zone=a} cannot be evaluated", "peers[4] (192.0.2.5): nodeSelector {rack=r1} cannot"},
			[]SkipReason{SkipNodeCIDRs, SkipLabelsUnknown, SkipLabelsUnknown}},
		{"labels match", NodeInfo{Addresses: addrs, LabelsKnown: true, Labels: map[string]string{"topology.kubernetes.io/zone": "a", "rack": "r1"}},
			"192.0.2.1 192.0.2.2 192.0.2.4 192.0.2.5", []string{"peers[2]"}, []SkipReason{SkipNodeCIDRs}},
		{"labels differ", NodeInfo{Addresses: addrs, LabelsKnown: true, Labels: map[string]string{"topology.kubernetes.io/zone": "b"}},
			"192.0.2.1 192.0.2.2", []string{"peers[2]", `peers[3] (192.0.2.4): nodeSelector {topology.kubernetes.io/zone=a} does not match the node's labels (topology.kubernetes.io/zone="b")`, "peers[4]"},
			[]SkipReason{SkipNodeCIDRs, SkipNodeSelector, SkipNodeSelector}},
		{"IPv6 address selects", NodeInfo{Addresses: []netip.Addr{netip.MustParseAddr("2001:db8:1::5")}},
			"192.0.2.1 192.0.2.3", []string{"peers[1]", "peers[3]", "peers[4]"}, []SkipReason{SkipNodeCIDRs, SkipLabelsUnknown, SkipNodeCIDRs}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, skipped := pc.Select(tt.n)
			if kept(got) != tt.want {
				t.Errorf("kept %q, want %q", kept(got), tt.want)
			}
			if len(skipped) != len(tt.skipped) {
				t.Fatalf("skipped %q, want %d", skipped, len(tt.skipped))
			}
			var reasons []SkipReason
			for i, s := range tt.skipped {
				if !strings.Contains(skipped[i].String(), s) {
					t.Errorf("skipped[%d] = %q, want it to contain %q", i, skipped[i], s)
				}
				reasons = append(reasons, skipped[i].Reason)
			}
			if diff := cmp.Diff(tt.reasons, reasons); diff != "" {
				t.Errorf("reasons (-want +got):\n%s", diff)
			}
			if got.BGP.ASN != c.BGP.ASN || len(pc.Neighbors) != 5 {
				t.Error("Select changed the global settings or its receiver")
			}
		})
	}
}

func TestValidateSelection(t *testing.T) {
	c := Config{BGP: Global{ASN: 64512}, Peers: []Peer{{Address: "192.0.2.1", ASN: 65000, NodeCIDRs: []string{"192.0.2.1/26", "nope"}, NodeSelector: map[string]string{"": "x"}}}}
	err := c.Validate()
	for _, want := range []string{`peers[0].nodeCIDRs[0]: "192.0.2.1/26" has host bits set; write 192.0.2.0/26`, `peers[0].nodeCIDRs[1]: "nope" is not a CIDR`, "peers[0].nodeSelector: empty label name"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want %q", err, want)
		}
	}
}

func TestLocalAddresses(t *testing.T) {
	as, err := LocalAddresses()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if a.IsLoopback() {
			return
		}
	}
	t.Errorf("no loopback address among %v", as)
}
