package peers

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/vipcast/vipcast/peers/bfd"
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
	cfg := g.neighbor(addr)
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
	// A BFD peer is enabled only while BFD is Up; it was (the admin state
	// was up), unless BFD failed in the last moments.
	if cfg.BFD.Enabled {
		ap.Conf.AdminDown = !g.bfdUp(addr)
	}
	g.pmu.Lock()
	t.recreated = time.Now()
	g.pmu.Unlock()
	if err := g.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: ap}); err != nil {
		return fmt.Errorf("adding peer: %w", err)
	}
	g.log.Debug("BGP peer recreated to skip GoBGP's idle hold", "peer", addr, "took", time.Since(start))
	return nil
}

func (g *GoBGP) bfdUp(addr netip.Addr) bool {
	if g.bfd == nil || !g.bfdRunning.Load() {
		return false
	}
	for _, s := range g.bfd.Sessions() {
		if s.Peer == addr {
			return s.State == bfd.StateUp
		}
	}
	return false
}
