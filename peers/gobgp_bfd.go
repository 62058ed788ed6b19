package peers

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/vipcast/vipcast/peers/bfd"
)

// BFD glue: one BFD session per peer with bfd.enabled, tied to its BGP
// session.

func (g *GoBGP) startBFD(ctx context.Context) error {
	var sessions []bfd.SessionConfig
	multihop := false
	for _, p := range g.cfg.Neighbors {
		if !p.BFD.Enabled {
			continue
		}
		addr, local := p.Addr, p.Source
		sc := bfd.SessionConfig{
			Peer: addr, Local: local, Multihop: p.EBGPMultihop > 1, MaxHops: p.EBGPMultihop,
			DesiredMinTx: p.BFD.MinTx, RequiredMinRx: p.BFD.MinRx, DetectMult: p.BFD.Multiplier,
		}
		multihop = multihop || sc.Multihop
		sessions = append(sessions, sc)
		if g.bfdHold == nil {
			g.bfdHold = map[netip.Addr]time.Duration{}
		}
		g.bfdHold[addr] = p.HoldTime
	}
	if len(sessions) == 0 {
		return nil
	}
	m, err := bfd.New(bfd.Config{Logger: g.log.With("component", "bfd"), Multihop: multihop, OnStateChange: g.onBFD})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(context.Background())
	g.bfd, g.bfdStop, g.bfdDone = m, stop, make(chan struct{})
	g.bfdRunning.Store(true)
	go func() {
		defer close(g.bfdDone)
		if err := m.Run(runCtx); err != nil && runCtx.Err() == nil {
			g.log.Error("BFD stopped", "err", err)
		}
	}()
	for _, sc := range sessions {
		if _, err := m.Add(ctx, sc); err != nil {
			return fmt.Errorf("peer %s: %w", sc.Peer, err)
		}
	}
	return nil
}

// bfdState is a BFD state in BFDStatus's lower-case form.
func bfdState(s bfd.State) string { return strings.ToLower(s.String()) }

func (g *GoBGP) stopBFD() {
	if g.bfd == nil {
		return
	}
	g.bfdRunning.Store(false)
	g.bfdStop()
	<-g.bfdDone
	g.bfd.Close()
	g.bfd = nil
}

// onBFD ties each BGP session to its BFD session: BGP comes up only once
// BFD is Up and goes down the moment BFD fails.
func (g *GoBGP) onBFD(c bfd.StateChange) {
	if !g.bfdRunning.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	switch {
	case c.New == bfd.StateUp:
		g.log.Info("BFD up: enabling the BGP session", "peer", c.Peer, "detecttime", c.DetectTime)
		if hold := g.bfdHold[c.Peer]; hold > 0 && c.DetectTime > hold {
			g.log.Warn("BFD detection time exceeds the BGP hold time: the router's BFD timers make BFD slower than BGP's own failure detection; lower its minimum intervals or multiplier",
				"peer", c.Peer, "detecttime", c.DetectTime, "holdtime", hold)
		}
		if err := g.setAdmin(ctx, c.Peer, true, ""); err != nil {
			g.log.Error("enabling BGP session after BFD up", "peer", c.Peer, "err", err)
		}
	case c.Failed():
		reason := "BFD down: " + c.Diag.String()
		g.log.Warn("BFD failed: tearing the BGP session down", "peer", c.Peer, "diag", c.Diag.String())
		g.pmu.Lock()
		if t := g.peers[c.Peer]; t != nil {
			t.lastError = reason
		}
		g.pmu.Unlock()
		if err := g.setAdmin(ctx, c.Peer, false, reason); err != nil {
			g.log.Error("disabling BGP session after BFD down", "peer", c.Peer, "err", err)
		}
	case c.Old == bfd.StateUp:
		// The router set BFD administratively down (maintenance, or a
		// session it is replacing): not a failure (RFC 5882 3.2), so the
		// BGP session stays.
		g.log.Info("BFD administratively down by the router: keeping the BGP session", "peer", c.Peer, "diag", c.Diag.String())
	}
}

// setAdmin enables or disables the BGP session with peer and returns once
// GoBGP's FSM has taken the change. GoBGP queues admin-state requests in a
// one-slot channel and drops a request made while the previous one is still
// queued, logging a warning but returning nil; a BFD Down then Up within a
// millisecond (a process resumed after SIGSTOP reads its backlog of
// packets) would leave the session disabled with BFD Up, for good. Waiting
// for each change keeps the slot free; a request that was dropped anyway is
// sent again.
func (g *GoBGP) setAdmin(ctx context.Context, peer netip.Addr, up bool, reason string) error {
	want := api.PeerState_DOWN
	if up {
		want = api.PeerState_UP
	}
	for g.bfdRunning.Load() {
		var err error
		if up {
			err = g.srv.EnablePeer(ctx, &api.EnablePeerRequest{Address: peer.String()})
		} else {
			err = g.srv.DisablePeer(ctx, &api.DisablePeerRequest{Address: peer.String(), Communication: reason})
		}
		if err != nil {
			return err
		}
		for range 40 { // 200ms, then ask again
			var state api.PeerState_AdminState
			found := false
			err := g.srv.ListPeer(ctx, &api.ListPeerRequest{Address: peer.String()}, func(p *api.Peer) {
				state, found = p.GetState().GetAdminState(), true
			})
			switch {
			case err != nil:
				return err
			case !found:
				return nil // deleted: BGP is stopping
			case state == want:
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("admin state still %v: %w", state, ctx.Err())
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return nil
}
