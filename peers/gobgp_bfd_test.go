package peers

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

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
		RemoteState: bfd.StateDown, RemoteDiag: bfd.DiagControlDetectionTimeExpired, At: now})
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
	if out := logs.String(); !strings.Contains(out, warning) || !strings.Contains(out, "detecttime=30s holdtime=9s") {
		t.Errorf("no %q warning naming both times:\n%s", warning, out)
	}
}

// bfdFailure is a BFD failure as the manager reports it: the router's
// detection time expired, so it signalled Down.
func bfdFailure(peer netip.Addr) bfd.StateChange {
	return bfd.StateChange{Peer: peer, Old: bfd.StateUp, New: bfd.StateDown, Diag: bfd.DiagNeighborSignaledDown,
		RemoteState: bfd.StateDown, RemoteDiag: bfd.DiagControlDetectionTimeExpired, At: time.Now()}
}

func bfdUp(peer netip.Addr) bfd.StateChange {
	return bfd.StateChange{Peer: peer, Old: bfd.StateInit, New: bfd.StateUp, At: time.Now()}
}

// adminState reads GoBGP's admin state of the peer.
func adminState(t *testing.T, g *GoBGP) api.PeerState_AdminState {
	t.Helper()
	var st api.PeerState_AdminState
	if err := g.srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) { st = p.GetState().GetAdminState() }); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestGoBGPBFDTeardownAndRecovery: a BFD failure tears the BGP session
// down at once; the session is back within recoverBound of BFD Up (GoBGP's
// 5 s idle hold skipped: EnablePeer took 6 s), and no Cease closes the new
// session. Non-strict
// (the default), the session redials without waiting for BFD; strict, it
// waits administratively down for BFD Up.
func TestGoBGPBFDTeardownAndRecovery(t *testing.T) {
	for _, strict := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "strict"}[strict], func(t *testing.T) {
			f := startRecovery(t)
			g := f.g
			peer := netip.MustParseAddr(f.r.Address())
			// Drive the glue as the BFD manager's notifier would, on a
			// peer configured with BFD.
			g.mu.Lock()
			g.cfg.Neighbors[0].BFD = BFDConfig{Enabled: true, Strict: strict}
			g.mu.Unlock()
			g.bfdRunning.Store(true)
			defer g.bfdRunning.Store(false)
			g.onBFD(bfdUp(peer))

			for round := range 2 {
				g.onBFD(bfdFailure(peer))
				f.r.WaitEstablished(t, false, wait)
				if strict {
					// Polled: the session drops before applyBFD has
					// added the new peer.
					var st api.PeerState_AdminState
					testutil.Eventually(t, fmt.Sprintf("round %d: strict peer administratively DOWN after the BFD failure", round),
						func() bool { st = adminState(t, g); return st == api.PeerState_DOWN },
						func() string { return fmt.Sprintf("admin state %v", st) })
				}
				if st := waitPeer(t, g, "the BFD reason", func(p PeerStatus) bool { return p.LastError != "" }); !strings.Contains(st.LastError, "BFD down") {
					t.Errorf("round %d: last error %q, want the BFD failure", round, st.LastError)
				}
				// The router is restarted while BFD is down: a GoBGP
				// router would otherwise hold its side in Idle for 5 s.
				f.restartRouter()
				start := time.Now()
				g.onBFD(bfdUp(peer))
				f.checkRecovered(round, start, "after BFD Up")
			}
		})
	}
}

// TestGoBGPBFDPeerRestartKeepsSession: the router replacing its BFD
// session (FRR 8.4 does once BGP is up: a Down with diag 3, then a new
// session) and its AdminDown leave the BGP session alone.
func TestGoBGPBFDPeerRestartKeepsSession(t *testing.T) {
	r := bgptest.StartRouter(t, bgptest.RouterConfig{ASN: routerASN, PeerASN: localASN})
	g, logs := startVipcast(t, r, Peer{}, vip4)
	waitPeer(t, g, "established", established)
	peer := netip.MustParseAddr(r.Address())
	g.bfdRunning.Store(true)
	defer g.bfdRunning.Store(false)
	g.onBFD(bfdUp(peer))
	restart := bfd.StateChange{Peer: peer, Old: bfd.StateUp, New: bfd.StateDown, Diag: bfd.DiagNeighborSignaledDown,
		RemoteState: bfd.StateDown, RemoteDiag: bfd.DiagNeighborSignaledDown, At: time.Now()}
	adminDown := bfd.StateChange{Peer: peer, Old: bfd.StateUp, New: bfd.StateDown, Diag: bfd.DiagNeighborSignaledDown,
		RemoteState: bfd.StateAdminDown, RemoteDiag: bfd.DiagAdministrativelyDown, At: time.Now()}
	for _, c := range []bfd.StateChange{restart, bfdUp(peer), adminDown, bfdUp(peer)} {
		g.onBFD(c)
	}
	// applyBFD runs on recoverLoop, coalescing what is queued.
	testutil.Eventually(t, "the BFD changes to be handled", func() bool {
		g.pmu.Lock()
		defer g.pmu.Unlock()
		return !g.peers[peer].bfd.queued
	})
	g.mu.Lock() // applyBFD holds it from before it clears queued until it is done
	running := g.phase == phaseRunning
	g.mu.Unlock()
	if !running {
		t.Fatal("BGP stopped")
	}
	if up, err := r.Established(context.Background()); err != nil || !up {
		t.Fatalf("router session established = %v (err %v) after a BFD restart and AdminDown, want true\n%s", up, err, logs)
	}
	if out := logs.String(); strings.Contains(out, "BGP peer recreated") || strings.Contains(out, "tearing the BGP session down") {
		t.Errorf("the BGP session was torn down:\n%s", out)
	}
	if !strings.Contains(logs.String(), "BFD session restarted by the router, not a path failure") {
		t.Errorf("no log line for the restart:\n%s", logs)
	}
}
