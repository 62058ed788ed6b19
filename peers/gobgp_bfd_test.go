package peers

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vipcast/vipcast/peers/bfd"
	"github.com/vipcast/vipcast/peers/bgptest"
	"github.com/vipcast/vipcast/peers/testutil"
)

// A BFD Down and Up delivered back to back (as when vipcast resumes after
// SIGSTOP and reads its backlog of BFD packets) must leave the BGP session
// enabled: GoBGP drops an admin-state request made while the previous one is
// still queued, so onBFD has to wait for each to be taken.
func TestGoBGPBFDDownUpBackToBack(t *testing.T) {
	r := bgptest.StartRouter(t, bgptest.RouterConfig{ASN: routerASN, PeerASN: localASN})
	g, logs := startVipcast(t, r, Peer{}, vip4)
	waitPeer(t, g, "established", established)
	peer := netip.MustParseAddr(r.Address())
	// Drive the glue directly, as the BFD manager's notifier would.
	g.bfdRunning.Store(true)
	defer g.bfdRunning.Store(false)
	now := time.Now()
	g.onBFD(bfd.StateChange{Peer: peer, Old: bfd.StateUp, New: bfd.StateDown, Diag: bfd.DiagNeighborSignaledDown,
		RemoteState: bfd.StateDown, At: now})
	g.onBFD(bfd.StateChange{Peer: peer, Old: bfd.StateDown, New: bfd.StateInit, RemoteState: bfd.StateDown, At: now})
	g.onBFD(bfd.StateChange{Peer: peer, Old: bfd.StateInit, New: bfd.StateUp, RemoteState: bfd.StateInit, At: now})
	// GoBGP waits its 5s idle hold time before connecting again.
	sawDown := false
	var last PeerStatus
	testutil.Eventually(t, "the BGP session to go down and be re-established after BFD Down+Up back to back", func() bool {
		ps, err := g.Peers(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		last = ps[0]
		if last.State != StateEstablished {
			sawDown = true
			return false
		}
		return sawDown
	}, func() string { return fmt.Sprintf("last status %+v\n%s", last, logs.String()) })
	if strings.Contains(logs.String(), "previous setting admin state request is still remaining") {
		t.Errorf("an admin-state request was dropped by GoBGP:\n%s", logs.String())
	}
}

// A BFD session whose detection time (set by the router's timers) is longer
// than the BGP hold time protects nothing: vipcast says so when it comes Up.
func TestGoBGPBFDDetectTimeAboveHoldTimeWarns(t *testing.T) {
	r := bgptest.StartRouter(t, bgptest.RouterConfig{ASN: routerASN, PeerASN: localASN})
	g, logs := startVipcast(t, r, Peer{}, vip4)
	waitPeer(t, g, "established", established)
	peer := netip.MustParseAddr(r.Address())
	g.bfdHold = map[netip.Addr]time.Duration{peer: DefaultHoldTime}
	g.bfdRunning.Store(true)
	defer g.bfdRunning.Store(false)
	const warning = "BFD detection time exceeds the BGP hold time"
	g.onBFD(bfd.StateChange{Peer: peer, Old: bfd.StateInit, New: bfd.StateUp, DetectTime: 900 * time.Millisecond})
	if strings.Contains(logs.String(), warning) {
		t.Fatalf("warned for a 900ms detection time:\n%s", logs.String())
	}
	g.onBFD(bfd.StateChange{Peer: peer, Old: bfd.StateInit, New: bfd.StateUp, DetectTime: bfd.MaxDetectTime})
	if out := logs.String(); !strings.Contains(out, warning) || !strings.Contains(out, "detectTime=30s holdTime=9s") {
		t.Errorf("no %q warning naming both times:\n%s", warning, out)
	}
}
