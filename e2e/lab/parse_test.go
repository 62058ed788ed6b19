package lab

import (
	"net/netip"
	"slices"
	"testing"
)

// These run without root: they pin the parsers the e2e assertions rely on.

func TestParseNexthops(t *testing.T) {
	a := netip.MustParseAddr
	for _, tc := range []struct {
		name, in string
		want     []netip.Addr
	}{
		{"none", ``, nil},
		{"empty list", `[]`, nil},
		{"single", `[{"dst":"203.0.113.10","gateway":"192.0.2.12","dev":"br0","protocol":"bgp","metric":20,"flags":[]}]`,
			[]netip.Addr{a("192.0.2.12")}},
		{"multipath", `[{"dst":"203.0.113.10","protocol":"bgp","metric":20,"flags":[],"nexthops":[
			{"gateway":"192.0.2.13","dev":"br0","weight":1,"flags":[]},
			{"gateway":"192.0.2.11","dev":"br0","weight":1,"flags":[]},
			{"gateway":"192.0.2.12","dev":"br0","weight":1,"flags":[]}]}]`,
			[]netip.Addr{a("192.0.2.11"), a("192.0.2.12"), a("192.0.2.13")}},
		{"ipv6 routes listed one per nexthop", `[{"dst":"2001:db8:ffff::10","gateway":"2001:db8:2::12","dev":"br0"},{"dst":"2001:db8:ffff::10","gateway":"2001:db8:2::11","dev":"br0"}]`,
			[]netip.Addr{a("2001:db8:2::11"), a("2001:db8:2::12")}},
		{"blackhole ignored", `[{"type":"blackhole","dst":"203.0.113.10"}]`, nil},
	} {
		got, err := parseNexthops([]byte(tc.in))
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	if _, err := parseNexthops([]byte(`{not json`)); err == nil {
		t.Error("bad JSON: no error")
	}
}

func TestParseBirdRoutes(t *testing.T) {
	out := `BIRD 2.0.12 ready.
Table master4:
203.0.113.10/32      unicast [n2 11:50:01.300] * (100) [AS64512i]
	via 192.0.2.12 on br0
	Type: BGP univ
	BGP.origin: IGP
	BGP.as_path: 64512
	BGP.next_hop: 192.0.2.12
	BGP.med: 10
	BGP.local_pref: 100
	BGP.community: (64512,100) (64512,200)
                     unicast [n1 11:50:01.234] (100) [AS64512i]
	via 192.0.2.11 on br0
	Type: BGP univ
	BGP.origin: IGP
	BGP.as_path: 64512
	BGP.next_hop: 192.0.2.11
	BGP.local_pref: 100
`
	peers := map[string]netip.Addr{"n1": netip.MustParseAddr("192.0.2.11"), "n2": netip.MustParseAddr("192.0.2.12")}
	got := parseBirdRoutes(out, peers)
	if len(got) != 2 {
		t.Fatalf("got %d paths: %+v", len(got), got)
	}
	n1, n2 := got[0], got[1]
	if n1.Peer != peers["n1"] || n1.NextHop != peers["n1"] || n1.Best || n1.HasMED || n1.ASPath != "64512" {
		t.Errorf("n1 path: %+v", n1)
	}
	if n2.Peer != peers["n2"] || !n2.Best || !n2.HasMED || n2.MED != 10 || !slices.Equal(n2.Communities, []string{"64512:100", "64512:200"}) {
		t.Errorf("n2 path: %+v", n2)
	}
}
