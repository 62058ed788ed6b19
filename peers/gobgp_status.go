package peers

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// What an operator sees of the sessions: PeerStatus from GoBGP's peer list
// and what vipcast tracks besides (the last error, the prefix limit).

// peerTrack is what GoBGP's API does not report: the failure reason, taken
// from its log records, and whether the operator was already told.
type peerTrack struct {
	password  bool
	state     SessionState
	lastError string
	warned    bool // a connect failure was logged at Warn during this outage

	maxPrefixes     uint32
	prefixLimitHits uint64
	prefixLimited   bool // LastError is the prefix limit: keep it over the Cease that follows
	// recreated is when recoverLoop last replaced the peer: a router that
	// keeps failing the session is retried every connectRetry, no faster.
	recreated time.Time
	// nextHopErr says why the IPv6 VIPs are not sent on this session; it
	// stays until a reload finds a next hop, whatever the session does.
	nextHopErr string

	bfd bfdTrack // BFD as told by its notifications (damping included)
}

func newPeerTrack(n Neighbor) *peerTrack {
	return &peerTrack{password: n.PasswordFile != "", state: StateIdle, maxPrefixes: n.MaxPrefixes,
		bfd: bfdTrack{waitBGP: n.BFD.Enabled && !n.BFD.Strict}}
}

// Peers reports the configured peers in configuration order. Outside
// Start..Stop every peer is idle.
func (g *GoBGP) Peers(ctx context.Context) ([]PeerStatus, error) {
	g.mu.Lock()
	s, running := g.srv, g.phase == phaseRunning
	cfgPeers := g.cfg.Neighbors // Reconfigure replaces the slice under g.mu
	g.mu.Unlock()
	got := map[netip.Addr]*api.Peer{}
	if running {
		err := s.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
			if a, err := netip.ParseAddr(p.GetConf().GetNeighborAddress()); err == nil {
				got[a] = p
			}
		})
		if err == nil {
			err = ctx.Err() // ListPeer returns nil when ctx ends mid-listing
		}
		if err != nil {
			return nil, fmt.Errorf("listing peers: %w", err)
		}
	}
	bfdByPeer := map[netip.Addr]*BFDStatus{}
	if running && g.bfdRunning.Load() {
		g.mu.Lock()
		m := g.bfd
		g.mu.Unlock()
		if m != nil {
			for _, ss := range m.Sessions() {
				bfdByPeer[ss.Peer] = &BFDStatus{
					State: bfdState(ss.State), RemoteState: bfdState(ss.RemoteState), Diag: ss.LocalDiag.String(),
					Since: ss.Since, TxInterval: ss.TxInterval, DetectTime: ss.DetectTime,
					RxPackets: ss.Counters.RxPackets, TxPackets: ss.Counters.TxPackets, Flaps: ss.Counters.Down,
				}
			}
		}
	}
	out := make([]PeerStatus, 0, len(cfgPeers))
	for _, p := range cfgPeers {
		addr := p.Addr
		st := PeerStatus{Address: addr, ASN: p.ASN, State: StateIdle, BFD: bfdByPeer[addr]}
		if !running {
			st.LastError = ErrNotRunning.Error()
		}
		if ap, ok := got[addr]; ok {
			st.State = sessionState(ap.GetState().GetSessionState())
			ts := ap.GetTimers().GetState().GetDowntime()
			if st.State == StateEstablished {
				ts = ap.GetTimers().GetState().GetUptime()
				for _, af := range ap.GetAfiSafis() {
					st.PrefixesSent += int(af.GetState().GetAdvertised())
				}
			}
			if ts != nil {
				st.Since = ts.AsTime()
			}
		}
		if running {
			g.pmu.Lock()
			if t := g.peers[addr]; t != nil {
				st.LastError = t.lastError
				st.PrefixLimitHits = t.prefixLimitHits
				if t.nextHopErr != "" && t.lastError != "" {
					st.LastError = t.nextHopErr + "; last session error: " + t.lastError
				} else if t.nextHopErr != "" {
					st.LastError = t.nextHopErr
				}
			}
			g.pmu.Unlock()
		}
		out = append(out, st)
	}
	return out, nil
}

func sessionState(s api.PeerState_SessionState) SessionState {
	switch s {
	case api.PeerState_IDLE:
		return StateIdle
	case api.PeerState_CONNECT:
		return StateConnect
	case api.PeerState_ACTIVE:
		return StateActive
	case api.PeerState_OPENSENT:
		return StateOpenSent
	case api.PeerState_OPENCONFIRM:
		return StateOpenConfirm
	case api.PeerState_ESTABLISHED:
		return StateEstablished
	}
	return StateUnknown
}

// SessionsChanged receives after a session changed state.
func (g *GoBGP) SessionsChanged() <-chan struct{} { return g.changed }

func (g *GoBGP) notifyChanged() {
	select {
	case g.changed <- struct{}{}:
	default: // one pending notice says it all
	}
}

// onEvent logs session changes from GoBGP's peer watch.
func (g *GoBGP) onEvent(r *api.WatchEventResponse) {
	pe := r.GetPeer()
	if pe == nil || pe.GetType() != api.WatchEventResponse_PeerEvent_STATE {
		return
	}
	addr, err := netip.ParseAddr(pe.GetPeer().GetState().GetNeighborAddress())
	if err != nil {
		return
	}
	state := sessionState(pe.GetPeer().GetState().GetSessionState())
	g.pmu.Lock()
	t, ok := g.peers[addr]
	if !ok {
		g.pmu.Unlock()
		return
	}
	prev, lastErr := t.state, t.lastError
	t.state = state
	if state == StateEstablished {
		t.warned = false
		t.prefixLimited = false
	}
	// Any session that got as far as an OPEN and then failed lands in
	// GoBGP's 5 s idle hold; so does one that was up. A router restarting
	// refuses the first tries while its configuration loads.
	recreate := state == StateIdle && !t.prefixLimited &&
		(prev == StateEstablished || prev == StateOpenSent || prev == StateOpenConfirm)
	startBFD := state == StateEstablished && t.bfd.bgpUp()
	g.pmu.Unlock()
	if prev != state {
		g.notifyChanged()
	}
	if recreate {
		g.queueRecover(addr)
	}
	if startBFD {
		g.queueBFD(addr)
	}
	switch {
	case prev == state:
	case state == StateEstablished:
		g.log.Info("BGP session established", "peer", addr)
	case prev == StateEstablished:
		g.log.Warn("BGP session down", "peer", addr, "state", state, "err", lastErr)
	default:
		g.log.Debug("BGP session state changed", "peer", addr, "state", state)
	}
}
