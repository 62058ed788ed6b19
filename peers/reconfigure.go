package peers

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/vipcast/vipcast/policy"
)

// ErrRestartRequired is returned by Reconfigure for changes it cannot make
// to a running instance; nothing was changed.
var ErrRestartRequired = errors.New("restart required")

// Reconfigure applies a new, validated peering configuration to the running
// instance. Only the peers that changed are touched: a removed peer is
// deleted (Cease), an added one is added, a changed one (any session
// setting) is deleted and added again; a peer whose policy or IPv6 next hop
// alone changed keeps its session and gets the new attributes by a soft
// reset (a fresh UPDATE). Every other session stays up, its uptime unchanged. Announced
// paths stay and go to new peers.
//
// Changes to bgp.* or to the session of a peer with BFD on either side
// return ErrRestartRequired and change nothing.
func (g *GoBGP) Reconfigure(ctx context.Context, next Peering) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.phase != phaseRunning {
		return fmt.Errorf("reconfigure: %w", ErrNotRunning)
	}
	if !reflect.DeepEqual(g.cfg.BGP, next.BGP) {
		return fmt.Errorf("reconfigure: bgp settings changed: %w", ErrRestartRequired)
	}
	type change struct {
		addr       netip.Addr
		old, new   *Neighbor
		nh         nextHop6
		policyOnly bool
	}
	oldBy := map[netip.Addr]*Neighbor{}
	for i := range g.cfg.Neighbors {
		oldBy[g.cfg.Neighbors[i].Addr] = &g.cfg.Neighbors[i]
	}
	var changes []change
	seen := map[netip.Addr]bool{}
	for i := range next.Neighbors {
		p := &next.Neighbors[i]
		a := p.Addr
		seen[a] = true
		o := oldBy[a]
		// Looked up again on every reload: an address added since is
		// taken, and a peer refused for want of one gets its IPv6 VIPs.
		nh := g.ipv6NextHop(*p)
		switch {
		case o == nil || !sameSession(o.Peer, p.Peer):
			changes = append(changes, change{addr: a, old: o, new: p, nh: nh})
		case !reflect.DeepEqual(o.Policy, p.Policy) || !reflect.DeepEqual(o.Export, p.Export) || g.nextHops[a] != nh:
			changes = append(changes, change{addr: a, old: o, new: p, nh: nh, policyOnly: true})
		}
	}
	for a, o := range oldBy {
		if !seen[a] {
			changes = append(changes, change{addr: a, old: o})
		}
	}
	// Check everything before touching anything.
	adds := map[netip.Addr]*api.Peer{}
	for _, c := range changes {
		if c.policyOnly {
			continue
		}
		if (c.old != nil && c.old.BFD.Enabled) || (c.new != nil && c.new.BFD.Enabled) {
			return fmt.Errorf("reconfigure: peer %s has BFD: %w", c.addr, ErrRestartRequired)
		}
		if c.new != nil {
			ap, err := apiPeer(*c.new)
			if err != nil {
				return fmt.Errorf("reconfigure: peer %s: %w", c.addr, err)
			}
			adds[c.addr] = ap
		}
	}
	for _, c := range changes {
		if c.policyOnly {
			// Soft reset out: the session stays, the router gets the path
			// again with the new attributes.
			if err := g.replaceExport(ctx, *c.new, c.nh); err != nil {
				return fmt.Errorf("reconfigure: peer %s: export policy: %w", c.addr, err)
			}
			g.log.Info("peer policy changed: paths resent, session kept", "peer", c.addr)
			continue
		}
		if c.old != nil {
			if err := g.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: c.addr.String()}); err != nil {
				return fmt.Errorf("reconfigure: removing peer %s: %w", c.addr, err)
			}
			g.pmu.Lock()
			delete(g.peers, c.addr)
			g.pmu.Unlock()
		}
		if c.new == nil {
			if err := g.removeExport(ctx, c.addr); err != nil {
				return fmt.Errorf("reconfigure: peer %s: export policy: %w", c.addr, err)
			}
		} else {
			g.pmu.Lock()
			g.peers[c.addr] = newPeerTrack(*c.new)
			g.pmu.Unlock()
			if err := g.setExport(ctx, *c.new, c.nh); err != nil {
				return fmt.Errorf("reconfigure: peer %s: export policy: %w", c.addr, err)
			}
			if err := g.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: adds[c.addr]}); err != nil {
				return fmt.Errorf("reconfigure: adding peer %s: %w", c.addr, err)
			}
		}
		switch {
		case c.old == nil:
			g.log.Info("peer added", "peer", c.addr)
		case c.new == nil:
			g.log.Info("peer removed", "peer", c.addr)
		default:
			g.log.Info("peer changed: session reset", "peer", c.addr)
		}
	}
	// Peers reads the slice under g.mu; a fresh one keeps old snapshots valid.
	g.cfg = next
	return nil
}

// sameSession compares two peers' session settings (everything but the
// policy and the IPv6 next hop, which only the export policy carries). A
// new key written to the same password file is not seen here: change the
// file's path, or restart.
func sameSession(a, b Peer) bool {
	a.Policy, b.Policy = policy.PeerConfig{}, policy.PeerConfig{}
	a.NextHopIPv6, b.NextHopIPv6 = "", ""
	return reflect.DeepEqual(a, b)
}
