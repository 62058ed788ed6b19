package peers

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vipcast/vipcast/peers/bgptest"
	"github.com/vipcast/vipcast/policy"
)

// A reload that adds a peer leaves the existing session alone; one that
// changes or removes a peer resets only that one.
func TestGoBGPReconfigure(t *testing.T) {
	r1 := bgptest.StartRouter(t, bgptest.RouterConfig{ASN: routerASN, PeerASN: localASN})
	g, logs := startVipcast(t, r1, Peer{HoldTime: 9 * time.Second}, vip4, vip6)
	since := waitPeer(t, g, "established", established).Since
	if err := g.announce(context.Background(), vip4, policy.Attributes{}); err != nil {
		t.Fatal(err)
	}
	r1.WaitPrefixes(t, []netip.Prefix{vip4}, wait)

	r2 := bgptest.StartRouter(t, bgptest.RouterConfig{ASN: routerASN, PeerASN: localASN, Address: "127.0.0.2", PeerAddress: "127.0.0.1"})
	cfg := Config{BGP: g.cfg.BGP} // the running, defaulted config
	for _, n := range g.cfg.Neighbors {
		cfg.Peers = append(cfg.Peers, n.Peer)
	}
	p2 := Peer{Address: r2.Address(), ASN: routerASN, Port: uint16(r2.Port()), ConnectRetry: time.Second}
	next := Config{BGP: cfg.BGP, Peers: append(append([]Peer(nil), cfg.Peers...), p2)}
	if err := g.Reconfigure(context.Background(), mustParse(t, next, policy.Default())); err != nil {
		t.Fatal(err)
	}
	r2.WaitEstablished(t, true, wait)
	r2.WaitPrefixes(t, []netip.Prefix{vip4}, wait)
	ps, err := g.Peers(context.Background())
	if err != nil || len(ps) != 2 {
		t.Fatalf("Peers = %+v, %v", ps, err)
	}
	if ps[0].State != StateEstablished || !ps[0].Since.Equal(since) {
		t.Errorf("existing session after the reload: %+v, want established since %v (no reset)", ps[0], since)
	}
	if strings.Contains(logs.String(), "peer changed") {
		t.Errorf("an unchanged peer was reset:\n%s", logs)
	}

	// Remove the first router: only its session goes.
	if err := g.Reconfigure(context.Background(), mustParse(t, Config{BGP: cfg.BGP, Peers: []Peer{p2}}, policy.Default())); err != nil {
		t.Fatal(err)
	}
	r1.WaitEstablished(t, false, wait)
	if ok, _ := r2.Established(context.Background()); !ok {
		t.Error("removing one peer reset the other")
	}

	// Global changes and BFD peers need a restart and change nothing.
	bad := Config{BGP: cfg.BGP, Peers: []Peer{p2}}
	bad.BGP.ASN++
	if err := g.Reconfigure(context.Background(), mustParse(t, bad, policy.Default())); !errors.Is(err, ErrRestartRequired) {
		t.Errorf("bgp.asn change: %v, want ErrRestartRequired", err)
	}
	withBFD := Config{BGP: cfg.BGP, Peers: []Peer{p2, {Address: "192.0.2.77", ASN: routerASN, BFD: BFDConfig{Enabled: true}}}}
	if err := g.Reconfigure(context.Background(), mustParse(t, withBFD, policy.Default())); !errors.Is(err, ErrRestartRequired) {
		t.Errorf("BFD peer: %v, want ErrRestartRequired", err)
	}
	if ps, _ := g.Peers(context.Background()); len(ps) != 1 {
		t.Errorf("after refused reloads: %d peers, want 1", len(ps))
	}
}
