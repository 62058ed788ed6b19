package peers

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/vipcast/vipcast/peers/bgptest"
	"github.com/vipcast/vipcast/peers/testutil"
	"github.com/vipcast/vipcast/policy"
)

// Two routers, one VIP path: each session gets its own attributes from the
// export policy, a drain's GRACEFUL_SHUTDOWN reaches both with the peer's
// own values kept, and a reload that changes only a peer's policy resends
// the path without resetting the session.
func TestGoBGPPerPeerAttributes(t *testing.T) {
	ctx := context.Background()
	r1 := bgptest.StartRouter(t, bgptest.RouterConfig{ASN: routerASN, PeerASN: localASN})
	r2 := bgptest.StartRouter(t, bgptest.RouterConfig{ASN: routerASN, PeerASN: localASN, Address: "127.0.0.2", PeerAddress: "127.0.0.1"})
	pol := policy.Default()
	pol.Communities = []string{"64512:100"}
	pol.MED = u32(5)
	pol.Prepend = 1
	pol.LastResort = policy.LastResortConfig{Enabled: true, Prepend: 2, Communities: []string{"64512:666"}}
	p1 := Peer{Address: r1.Address(), ASN: routerASN, Port: uint16(r1.Port()), ConnectRetry: time.Second}
	p2 := Peer{Address: r2.Address(), ASN: routerASN, Port: uint16(r2.Port()), ConnectRetry: time.Second,
		Policy: policy.PeerConfig{Communities: []string{"64512:201"}, MED: u32(50), Prepend: new(uint8)}}
	cfg := Config{BGP: Global{ASN: localASN, RouterID: "192.0.2.11"}, Peers: []Peer{p1, p2}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &testutil.SyncBuffer{}
	g, err := NewGoBGP(mustParse(t, cfg, pol), []netip.Prefix{vip4}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Stop(context.Background()) })
	attrs, err := pol.Attributes()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.announce(ctx, vip4, attrs); err != nil {
		t.Fatal(err)
	}

	c := func(v uint32) policy.Community { return policy.Community(64512<<16 | v) }
	check := func(what string, r *bgptest.Router, want bgptest.Path) {
		t.Helper()
		want.Prefix, want.NextHop = vip4, netip.MustParseAddr("127.0.0.1")
		var got bgptest.Path
		diff := func() string { return cmp.Diff(want, got, cmpopts.EquateComparable(netip.Prefix{}, netip.Addr{})) }
		testutil.Eventually(t, what+": router "+r.Address()+" path", func() bool {
			ps, err := r.Paths(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(ps) != 1 {
				return false
			}
			got = ps[0]
			return diff() == ""
		}, func() string { return "(-want +got):\n" + diff() })
	}
	check("global policy", r1, bgptest.Path{ASPath: []uint32{localASN, localASN}, MED: u32(5), Communities: []policy.Community{c(100)}})
	check("peer policy", r2, bgptest.Path{ASPath: []uint32{localASN}, MED: u32(50), Communities: []policy.Community{c(100), c(201)}})

	// A drain: GRACEFUL_SHUTDOWN on both sessions, each keeping its own MED.
	if err := g.announce(ctx, vip4, attrs.WithGracefulShutdown(pol.GracefulShutdown)); err != nil {
		t.Fatal(err)
	}
	check("drain, global policy", r1, bgptest.Path{ASPath: []uint32{localASN, localASN}, MED: u32(5), Communities: []policy.Community{c(100), policy.GracefulShutdown}})
	check("drain, peer policy", r2, bgptest.Path{ASPath: []uint32{localASN}, MED: u32(50), Communities: []policy.Community{c(100), policy.GracefulShutdown, c(201)}})
	if err := g.announce(ctx, vip4, attrs); err != nil {
		t.Fatal(err)
	}
	check("undrain", r2, bgptest.Path{ASPath: []uint32{localASN}, MED: u32(50), Communities: []policy.Community{c(100), c(201)}})

	// A last resort: the session's prepend plus two, the last resort's
	// community, each peer's own MED, and never the internal marker.
	if err := g.announce(ctx, vip4, attrs.WithLastResort(pol.LastResort)); err != nil {
		t.Fatal(err)
	}
	check("last resort, global policy", r1, bgptest.Path{ASPath: []uint32{localASN, localASN, localASN, localASN}, MED: u32(5), Communities: []policy.Community{c(100), c(666)}})
	check("last resort, peer policy", r2, bgptest.Path{ASPath: []uint32{localASN, localASN, localASN}, MED: u32(50), Communities: []policy.Community{c(100), c(666), c(201)}})
	if err := g.announce(ctx, vip4, attrs); err != nil {
		t.Fatal(err)
	}
	check("healthy again", r1, bgptest.Path{ASPath: []uint32{localASN, localASN}, MED: u32(5), Communities: []policy.Community{c(100)}})

	// Reload with only p2's policy changed: new attributes, same session.
	before, err := g.Peers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := Config{BGP: cfg.BGP, Peers: []Peer{p1, p2}}
	next.Peers[1].Policy = policy.PeerConfig{MED: u32(60), LargeCommunities: []string{"64512:2:1"}}
	if err := g.Reconfigure(ctx, mustParse(t, next, pol)); err != nil {
		t.Fatal(err)
	}
	check("reloaded peer policy", r2, bgptest.Path{ASPath: []uint32{localASN, localASN}, MED: u32(60), Communities: []policy.Community{c(100)},
		LargeCommunities: []policy.LargeCommunity{{Global: 64512, Local1: 2, Local2: 1}}})
	check("other peer after the reload", r1, bgptest.Path{ASPath: []uint32{localASN, localASN}, MED: u32(5), Communities: []policy.Community{c(100)}})
	after, err := g.Peers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range after {
		if after[i].State != StateEstablished || !after[i].Since.Equal(before[i].Since) {
			t.Errorf("peer %s after a policy-only reload: %s since %v, want established since %v (no reset)", after[i].Address, after[i].State, after[i].Since, before[i].Since)
		}
	}
	if !strings.Contains(logs.String(), "peer policy changed") || strings.Contains(logs.String(), "session reset") {
		t.Errorf("log does not show a policy-only change:\n%s", logs)
	}

	// Removing p2 removes its export policy too; adding it back works.
	if err := g.Reconfigure(ctx, mustParse(t, Config{BGP: cfg.BGP, Peers: []Peer{p1}}, pol)); err != nil {
		t.Fatal(err)
	}
	r2.WaitEstablished(t, false, wait)
	if err := g.Reconfigure(ctx, mustParse(t, cfg, pol)); err != nil {
		t.Fatal(err)
	}
	check("re-added peer", r2, bgptest.Path{ASPath: []uint32{localASN}, MED: u32(50), Communities: []policy.Community{c(100), c(201)}})
	g.mu.Lock()
	names := slices.Sorted(func(yield func(string) bool) {
		for _, n := range g.exports {
			if !yield(n) {
				return
			}
		}
	})
	g.mu.Unlock()
	if len(names) != 2 {
		t.Errorf("installed export policies %v, want one per peer", names)
	}
}
