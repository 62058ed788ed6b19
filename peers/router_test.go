package peers

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vipcast/vipcast/peers/bgptest"
	"github.com/vipcast/vipcast/policy"
)

// routerUnderTest is one Router implementation for the contract test:
// announced reads what it holds in its RIB.
type routerUnderTest struct {
	r         Router
	peering   Peering
	announced func() map[netip.Prefix]policy.Attributes
}

// testRouterContract is what the speaker relies on from any Router; Fake
// and GoBGP both run it, so a test written against Fake holds for GoBGP.
func testRouterContract(t *testing.T, newRouter func(t *testing.T, vips []netip.Prefix) routerUnderTest) {
	ctx := context.Background()
	other := netip.MustParsePrefix("203.0.113.99/32")
	med := uint32(7)
	attrs := policy.Attributes{Communities: []policy.Community{64512<<16 | 1}}
	rt := newRouter(t, []netip.Prefix{vip4, vip6})
	r := rt.r

	if err := r.Set(ctx, map[netip.Prefix]policy.Attributes{vip4: attrs}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Set before Start = %v, want ErrNotRunning", err)
	}
	if err := r.Set(ctx, nil); err != nil {
		t.Errorf("empty Set before Start = %v, want nil", err)
	}
	if err := r.Reconfigure(ctx, rt.peering); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Reconfigure before Start = %v, want ErrNotRunning", err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err == nil {
		t.Error("second Start succeeded")
	}
	if ps, err := r.Peers(ctx); err != nil || len(ps) != len(rt.peering.Neighbors) {
		t.Errorf("Peers = %+v, %v; want one per neighbor (%d)", ps, err, len(rt.peering.Neighbors))
	}

	steps := []struct {
		name    string
		want    map[netip.Prefix]policy.Attributes
		wantErr bool
		rib     map[netip.Prefix]policy.Attributes
	}{
		{"announce both", map[netip.Prefix]policy.Attributes{vip4: attrs, vip6: attrs}, false,
			map[netip.Prefix]policy.Attributes{vip4: attrs, vip6: attrs}},
		{"not a VIP: refused whole", map[netip.Prefix]policy.Attributes{other: attrs}, true,
			map[netip.Prefix]policy.Attributes{vip4: attrs, vip6: attrs}},
		{"withdraw one, change the other", map[netip.Prefix]policy.Attributes{vip4: {MED: &med}}, false,
			map[netip.Prefix]policy.Attributes{vip4: {MED: &med}}},
		{"same again", map[netip.Prefix]policy.Attributes{vip4: {MED: &med}}, false,
			map[netip.Prefix]policy.Attributes{vip4: {MED: &med}}},
		{"withdraw all", nil, false, map[netip.Prefix]policy.Attributes{}},
		{"withdraw all again", map[netip.Prefix]policy.Attributes{}, false, map[netip.Prefix]policy.Attributes{}},
		{"announce again", map[netip.Prefix]policy.Attributes{vip6: attrs}, false, map[netip.Prefix]policy.Attributes{vip6: attrs}},
	}
	for _, s := range steps {
		err := r.Set(ctx, s.want)
		if (err != nil) != s.wantErr {
			t.Errorf("%s: Set = %v, want error %v", s.name, err, s.wantErr)
		}
		if diff := cmp.Diff(s.rib, rt.announced(), cmpAttrs); diff != "" {
			t.Errorf("%s: RIB (-want +got):\n%s", s.name, diff)
		}
	}

	if err := r.Reconfigure(ctx, rt.peering); err != nil {
		t.Errorf("Reconfigure with the same peering = %v", err)
	}
	if diff := cmp.Diff(map[netip.Prefix]policy.Attributes{vip6: attrs}, rt.announced(), cmpAttrs); diff != "" {
		t.Errorf("Reconfigure changed the RIB (-want +got):\n%s", diff)
	}

	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rt.announced(); len(got) != 0 {
		t.Errorf("after Stop the RIB holds %v", got)
	}
	if err := r.Set(ctx, map[netip.Prefix]policy.Attributes{vip4: attrs}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Set after Stop = %v, want ErrNotRunning", err)
	}
	if err := r.Stop(ctx); err != nil {
		t.Errorf("second Stop = %v", err)
	}
}

// cmpAttrs treats nil and empty lists alike: neither puts anything on the wire.
var cmpAttrs = cmp.Transformer("attrs", func(a policy.Attributes) policy.Attributes {
	if len(a.Communities) == 0 {
		a.Communities = nil
	}
	if len(a.LargeCommunities) == 0 {
		a.LargeCommunities = nil
	}
	return a
})

func TestRouterContractFake(t *testing.T) {
	testRouterContract(t, func(t *testing.T, vips []netip.Prefix) routerUnderTest {
		f := NewFake(vips, PeerStatus{Address: netip.MustParseAddr("192.0.2.1"), ASN: routerASN, State: StateIdle})
		p := Peering{Neighbors: []Neighbor{{Peer: Peer{Address: "192.0.2.1", ASN: routerASN}, Addr: netip.MustParseAddr("192.0.2.1")}}}
		return routerUnderTest{r: f, peering: p, announced: f.Announced}
	})
}

func TestRouterContractGoBGP(t *testing.T) {
	testRouterContract(t, func(t *testing.T, vips []netip.Prefix) routerUnderTest {
		rtr := bgptest.StartRouter(t, bgptest.RouterConfig{ASN: routerASN, PeerASN: localASN})
		cfg := Config{BGP: Global{ASN: localASN, RouterID: "192.0.2.11"}, Peers: []Peer{{
			Address: rtr.Address(), ASN: routerASN, Port: uint16(rtr.Port()), ConnectRetry: time.Second,
		}}}
		p := mustParse(t, cfg, policy.Default())
		g, err := NewGoBGP(p, vips, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = g.Stop(context.Background()) })
		return routerUnderTest{r: g, peering: p, announced: g.current}
	})
}
