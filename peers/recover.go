package peers

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// recoverQueue bounds the peers waiting to be recreated; a peer that does
// not fit falls back to GoBGP's own 5 s idle hold.
const recoverQueue = 64

// queueRecover asks recoverLoop to recreate addr's peer. Called from the
// peer watch, which must not block.
func (g *GoBGP) queueRecover(addr netip.Addr) {
	select {
	case g.recoverCh <- addr:
	default:
	}
}

// recoverLoop recreates peers whose session fell to Idle after it was up or
// had exchanged an OPEN, at most once per connectRetry.
// GoBGP v3 holds a dropped session in Idle for a fixed 5 s (holdtimeIdle in
// its fsm.go, not configurable) before it dials or accepts again, so a router
// restart or a link flap kept the VIPs away for about 6.5 s. A new peer
// starts with no idle hold. ResetPeer is no substitute: on an Idle peer it
// queues a Cease that the next session sends as soon as it is up, killing
// it. DeletePeer's Cease goes to the old FSM, which is discarded with it.
// It closes done when ctx ends.
func (g *GoBGP) recoverLoop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case <-ctx.Done():
			return
		case addr := <-g.recoverCh:
			if err := g.recreatePeer(ctx, addr); err != nil && ctx.Err() == nil {
				g.log.Warn("recreating BGP peer after session loss; GoBGP retries on its own after 5 s", "peer", addr, "err", err)
			}
		case addr := <-g.bfdCh:
			if err := g.applyBFD(ctx, addr); err != nil && ctx.Err() == nil {
				g.log.Error("applying a BFD change to the BGP session", "peer", addr, "err", err)
			}
		}
	}
}

// recreatePeer replaces addr's GoBGP peer with an identical one, unless the
// session is no longer Idle or is down on purpose: administratively (BFD
// down, or the prefix limit, which must keep it down).
func (g *GoBGP) recreatePeer(ctx context.Context, addr netip.Addr) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.phase != phaseRunning {
		return nil
	}
	var cfg *Peer
	for i := range g.cfg.Peers {
		if a, err := netip.ParseAddr(g.cfg.Peers[i].Address); err == nil && a == addr {
			cfg = &g.cfg.Peers[i]
		}
	}
	if cfg == nil {
		return nil // removed by a reload meanwhile
	}
	g.pmu.Lock()
	t := g.peers[addr]
	limited := t == nil || t.prefixLimited
	var wait time.Duration
	if !limited {
		wait = cfg.ConnectRetry - time.Since(t.recreated)
	}
	g.pmu.Unlock()
	if limited {
		return nil
	}
	if wait > 0 {
		// The timer only queues; recoverLoop checks again then.
		time.AfterFunc(wait, func() { g.queueRecover(addr) })
		return nil
	}
	var cur *api.Peer
	if err := g.srv.ListPeer(ctx, &api.ListPeerRequest{Address: addr.String()}, func(p *api.Peer) { cur = p }); err != nil {
		return fmt.Errorf("listing peer: %w", err)
	}
	if cur == nil || cur.GetState().GetAdminState() != api.PeerState_UP || cur.GetState().GetSessionState() != api.PeerState_IDLE {
		return nil
	}
	ap, err := apiPeer(*cfg)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := g.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
		return fmt.Errorf("deleting peer: %w", err)
	}
	// A strict BFD peer is enabled only while BFD is Up; it was (the
	// admin state was up), unless BFD failed in the last moments.
	g.pmu.Lock()
	ap.Conf.AdminDown = cfg.BFD.Strict && !t.bfd.up
	t.recreated = time.Now()
	g.pmu.Unlock()
	if err := g.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: ap}); err != nil {
		return fmt.Errorf("adding peer: %w", err)
	}
	g.log.Debug("BGP peer recreated to skip GoBGP's idle hold", "peer", addr, "took", time.Since(start))
	return nil
}

// bfdTrack is a peer's BFD as onBFD was told it; guarded by pmu.
type bfdTrack struct {
	// waitBGP: a non-strict session starts AdminDown and waits for the
	// first BGP establishment (bgpUp sets start). FRR 8.4 replaces each
	// neighbor's BFD session when BGP comes up (it registers it again with
	// the local address); if that session was Up, FRR's bgpd takes the
	// replacement for a BFD failure and closes the new BGP session (Cease,
	// BFD Down), so every vipcast start flapped the route once. Non-strict
	// BGP does not need BFD before it is up, so BFD starts then.
	waitBGP  bool
	start    bool   // BGP is up: take the session out of AdminDown
	up       bool   // the last notification was Up (a damped Up is not one)
	teardown bool   // a failure was notified: tear the BGP session down
	reason   string // of the last failure, the peer's error once torn down
	redial   bool   // BFD tore BGP down: the next Up dials at once
	queued   bool   // in bfdCh, not yet handled by applyBFD
}

// bgpUp notes a BGP establishment and reports whether the BFD session
// must be started. Called with pmu held.
func (b *bfdTrack) bgpUp() bool {
	if !b.waitBGP {
		return false
	}
	b.waitBGP, b.start = false, true
	return true
}

// queue marks the peer queued and reports whether it was not already.
// Called with pmu held.
func (b *bfdTrack) queue() bool {
	q := !b.queued
	b.queued = true
	return q
}

// queueBFD asks recoverLoop to run applyBFD for addr, once however many
// changes arrive meanwhile (applyBFD reads the latest). It never blocks.
func (g *GoBGP) queueBFD(addr netip.Addr) {
	g.pmu.Lock()
	t := g.peers[addr]
	q := t != nil && t.bfd.queue()
	g.pmu.Unlock()
	if q {
		select {
		case g.bfdCh <- addr:
		default: // cannot happen: one slot per peer
		}
	}
}

// applyBFD brings addr's BGP session in line with its BFD session, by
// recreating the GoBGP peer rather than DisablePeer/EnablePeer: an enabled
// peer first waits GoBGP's 5 s idle hold (its fsm.go), and a disabled one
// may keep a Cease for its next session (see recoverLoop). DeletePeer's
// Cease goes to the session BFD found dead, and the new peer starts clean.
//   - After a BFD failure: the session is torn down now. A strict peer
//     comes back administratively down, waiting for BFD Up; any other
//     connects again at once, as the router may create BFD only once BGP
//     is up again (dynamic neighbors).
//   - BFD Up: a strict peer waiting for it, or a peer torn down by BFD and
//     not yet re-established, is recreated enabled, so it connects now
//     (GoBGP's first try after 1-2 s) instead of at its next connect-retry
//     tick, up to 2 x connectRetry away on a link that was dead.
func (g *GoBGP) applyBFD(ctx context.Context, addr netip.Addr) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pmu.Lock()
	t := g.peers[addr]
	if t == nil {
		g.pmu.Unlock()
		return nil
	}
	st := t.bfd
	t.bfd.queued, t.bfd.teardown, t.bfd.start = false, false, false
	if st.teardown {
		t.bfd.redial = !st.up // Up again already: the new peer dials now
	} else if st.up {
		t.bfd.redial = false // used below, if at all
	}
	g.pmu.Unlock()
	if g.phase != phaseRunning {
		return nil
	}
	if st.start && g.bfd != nil && g.bfdRunning.Load() {
		if err := g.bfd.SetAdminDown(ctx, addr, false); err != nil {
			return fmt.Errorf("starting BFD: %w", err)
		}
		g.log.Debug("BGP up: BFD session started", "peer", addr)
	}
	var cfg *Peer
	for i := range g.cfg.Peers {
		if a, err := netip.ParseAddr(g.cfg.Peers[i].Address); err == nil && a == addr {
			cfg = &g.cfg.Peers[i]
		}
	}
	if cfg == nil {
		return nil
	}
	var cur *api.Peer
	if err := g.srv.ListPeer(ctx, &api.ListPeerRequest{Address: addr.String()}, func(p *api.Peer) { cur = p }); err != nil {
		return fmt.Errorf("listing peer: %w", err)
	}
	if cur == nil || cur.GetState().GetAdminState() == api.PeerState_PFX_CT {
		return nil // the prefix limit keeps it down, whatever BFD does
	}
	adminUp := cur.GetState().GetAdminState() == api.PeerState_UP
	switch s := cur.GetState().GetSessionState(); {
	case st.teardown:
		// Whatever its state: Established over a dead path, or on its
		// way there. Also when BFD is already Up again (a Down and an Up
		// back to back): the failure happened.
	case !st.up:
		return nil // Down without a failure: nothing to tear down
	case !adminUp:
		// Strict, and BFD is Up: enable it.
	case st.redial && s != api.PeerState_ESTABLISHED && s != api.PeerState_OPENSENT && s != api.PeerState_OPENCONFIRM:
		// Torn down by BFD and still not back: the path is, so dial now.
	default:
		return nil
	}
	ap, err := apiPeer(*cfg)
	if err != nil {
		return err
	}
	ap.Conf.AdminDown = cfg.BFD.Strict && !st.up
	if err := g.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
		return fmt.Errorf("deleting peer: %w", err)
	}
	g.pmu.Lock()
	t.recreated = time.Now()
	g.pmu.Unlock()
	if err := g.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: ap}); err != nil {
		return fmt.Errorf("adding peer: %w", err)
	}
	g.log.Debug("BGP peer recreated for BFD", "peer", addr, "bfdUp", st.up, "adminDown", ap.Conf.AdminDown)
	return nil
}
