package peers

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

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
			AdminDown: !p.BFD.Strict, // until BGP is up: see bfdTrack.waitBGP
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

// onBFD ties each BGP session to its BFD session: a BFD failure after Up
// tears BGP down at once, and a strict peer's BGP runs only while BFD is
// Up. It must not take mu (Stop holds it while BFD stops), so the BGP side
// is left to recoverLoop (applyBFD), in order per peer.
func (g *GoBGP) onBFD(c bfd.StateChange) {
	if !g.bfdRunning.Load() {
		return
	}
	switch {
	case c.New == bfd.StateUp:
		g.log.Info("BFD up", "peer", c.Peer, "detecttime", c.DetectTime)
		if hold := g.bfdHold[c.Peer]; hold > 0 && c.DetectTime > hold {
			g.log.Warn("BFD detection time exceeds the BGP hold time: the router's BFD timers make BFD slower than BGP's own failure detection; lower its minimum intervals or multiplier",
				"peer", c.Peer, "detecttime", c.DetectTime, "holdtime", hold)
		}
	case c.Failed():
		g.log.Warn("BFD failed: tearing the BGP session down", "peer", c.Peer, "diag", c.Diag.String(), "remotediag", c.RemoteDiag.String())
	case c.PeerRestarted():
		// The router deleted and recreated its BFD session (FRR does it
		// once after BGP first comes up): its path to us works, so the BGP
		// session stays; BFD comes Up again in about a second.
		g.log.Info("BFD session restarted by the router, not a path failure: keeping the BGP session", "peer", c.Peer, "remotediag", c.RemoteDiag.String())
	case c.Old == bfd.StateUp:
		// The router set BFD administratively down (maintenance, or a
		// session it is replacing): not a failure (RFC 5882 3.2), so the
		// BGP session stays.
		g.log.Info("BFD administratively down by the router: keeping the BGP session", "peer", c.Peer, "diag", c.Diag.String())
	}
	g.pmu.Lock()
	t := g.peers[c.Peer]
	if t == nil {
		g.pmu.Unlock()
		return
	}
	t.bfd.up = c.New == bfd.StateUp
	if c.Failed() {
		t.bfd.teardown = true
		t.bfd.reason = fmt.Sprintf("BFD down: %s (router: %s)", c.Diag, c.RemoteDiag)
		t.lastError = t.bfd.reason
	}
	g.pmu.Unlock()
	g.queueBFD(c.Peer)
}
