package peers

import (
	"context"
	"fmt"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/vipcast/vipcast/peers/bgptest"
	"github.com/vipcast/vipcast/peers/testutil"
)

// GTSM (RFC 5082) on both ends: the session comes up. On vipcast's end
// only: the router's packets arrive with TTL < 255 and the kernel drops
// them (IP_MINTTL), so the session never establishes.
func TestGoBGPTTLSecurity(t *testing.T) {
	t.Run("both ends", func(t *testing.T) {
		r := bgptest.StartRouter(t, bgptest.RouterConfig{ASN: routerASN, PeerASN: localASN, TTLSecurity: true})
		g, _ := startVipcast(t, r, Peer{TTLSecurityHops: 1}, vip4)
		waitPeer(t, g, "established", established)
		r.WaitEstablished(t, true, wait)
	})
	t.Run("router without GTSM", func(t *testing.T) {
		r := bgptest.StartRouter(t, bgptest.RouterConfig{ASN: routerASN, PeerASN: localASN})
		g, _ := startVipcast(t, r, Peer{TTLSecurityHops: 1}, vip4)
		// Several connect attempts (connect retry 1s) must all fail. The
		// sleep samples a negative check's observation window, not
		// synchronisation: a slow machine sees fewer attempts, never a
		// wrong failure.
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			ps, err := g.Peers(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if ps[0].State == StateEstablished {
				t.Fatal("established although the router sends with TTL < 255")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// Graceful restart (RFC 4724): the capability with the configured restart
// time reaches the router; without it the router sees none.
func TestGoBGPGracefulRestartCapability(t *testing.T) {
	for _, tt := range []struct {
		name string
		gr   GracefulRestartConfig
		want uint32
	}{
		{"default restart time", GracefulRestartConfig{Enabled: true}, 30},
		{"configured restart time", GracefulRestartConfig{Enabled: true, RestartTime: 90 * time.Second}, 90},
		{"off", GracefulRestartConfig{}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := bgptest.StartRouter(t, bgptest.RouterConfig{ASN: routerASN, PeerASN: localASN, GracefulRestart: true})
			g, _ := startVipcast(t, r, Peer{GracefulRestart: tt.gr}, vip4)
			waitPeer(t, g, "established", established)
			r.WaitEstablished(t, true, wait)
			got, err := r.PeerRestartTime(context.Background())
			if err != nil || got != tt.want {
				t.Errorf("router sees restart time %d (%v), want %d", got, err, tt.want)
			}
			waitEndOfRIB(t, g)
		})
	}
}

// waitEndOfRIB waits until g has taken in the End-of-RIB the router sends
// for every family where both ends negotiated graceful restart, the last
// UPDATEs of a router that originates nothing. Stopping before then races
// inside GoBGP v3.37: StopBgp zeroes its global config while the session's
// receive goroutine reads it to validate an UPDATE (fsm.go,
// IsConfederationMember), which -race reported about once in 32 runs. The
// fix belongs in the test, not in Stop: no public GoBGP call waits for that
// goroutine (DeletePeer only cancels it), and a DisablePeer first would
// change the Cease vipcast sends. For vipcast the race is benign: the read
// is the confederation member list, which vipcast never sets (nil before
// and after), and the server is discarded after StopBgp.
// The received-UPDATE counter is no use here: GoBGP counts a message
// before it validates it. EndOfRibReceived is set by the server goroutine,
// after the receive goroutine is done with the message.
func waitEndOfRIB(t *testing.T, g *GoBGP) {
	t.Helper()
	var pending []string
	testutil.Eventually(t, "the router's End-of-RIB for every graceful-restart family", func() bool {
		pending = nil
		err := g.srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
			for _, a := range p.GetAfiSafis() {
				if s := a.GetMpGracefulRestart().GetState(); s.GetEnabled() && s.GetReceived() && !s.GetEndOfRibReceived() {
					pending = append(pending, a.GetConfig().GetFamily().String())
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return len(pending) == 0
	}, func() string { return fmt.Sprintf("no End-of-RIB yet for %v", pending) })
}
