package peers

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// errNoGlobalIPv6 is what the automatic IPv6 next hop fails with when the
// interface towards the peer has no usable global IPv6 address.
var errNoGlobalIPv6 = errors.New("no global IPv6 address")

// nextHop6 is the IPv6 next hop one session's export policy sets on the
// IPv6 VIPs. Zero addr and empty refused: GoBGP's own choice, the session's
// local address, which is right on an IPv6 session. refused: the IPv6 VIPs
// are not sent on the session at all, and this is why.
type nextHop6 struct {
	addr    netip.Addr
	refused string
}

// globalIPv6Func finds the node's global IPv6 address on the interface
// that routes to peer, and names that interface.
type globalIPv6Func func(peer netip.Addr) (addr netip.Addr, ifname string, err error)

// ipv6NextHop decides the IPv6 next hop of n. An IPv6 VIP sent over an
// IPv4 session would otherwise carry the IPv4-mapped ::ffff:a.b.c.d, which
// most routers cannot resolve, while vipcast reports the VIP advertised: a
// black hole. So such a session gets peers[].nextHopIPv6, or the node's
// global IPv6 address towards the router, or no IPv6 VIPs at all.
func (g *GoBGP) ipv6NextHop(n Neighbor) nextHop6 {
	if !g.hasFamily("v6") || !slices.Contains(n.Families, familyV6) {
		return nextHop6{}
	}
	if n.NextHop.IsValid() {
		return nextHop6{addr: n.NextHop}
	}
	peer := n.Addr
	if peer.Is6() && !peer.Is4In6() {
		return nextHop6{}
	}
	peer = peer.Unmap()
	a, ifname, err := g.globalIPv6(peer)
	if err != nil {
		where := "the interface towards " + peer.String()
		if ifname != "" {
			where = ifname + ", " + where
		}
		return nextHop6{refused: fmt.Sprintf("IPv6 VIPs not sent over this IPv4 session: %v on %s for their next hop (an IPv4-mapped next hop does not resolve on routers); add a global IPv6 address there (vipcast looks again every %v) or set %s.nextHopIPv6", err, where, g.nextHopEvery, n.Field)}
	}
	return nextHop6{addr: a}
}

// pickGlobalIPv6 returns the smallest global unicast IPv6 address among
// candidates, so the choice does not depend on the order the kernel lists
// them in.
func pickGlobalIPv6(candidates []netip.Addr) (netip.Addr, bool) {
	var best netip.Addr
	for _, a := range candidates {
		if !a.Is6() || a.Is4In6() || !a.IsGlobalUnicast() || a.IsLinkLocalUnicast() {
			continue
		}
		if !best.IsValid() || a.Less(best) {
			best = a
		}
	}
	return best, best.IsValid()
}

// nextHopRefresh is how often the automatic IPv6 next hops are looked up
// again: a node whose IPv6 address was still tentative when vipcast started
// gets its IPv6 VIPs sent within this time, with no restart.
const nextHopRefresh = 10 * time.Second

// refreshNextHops re-decides every session's IPv6 next hop every
// g.nextHopEvery until ctx ends, then closes done. A session whose next hop
// changed gets its export policy replaced and its paths resent (a soft
// reset: the session stays up).
func (g *GoBGP) refreshNextHops(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(g.nextHopEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		g.mu.Lock()
		if g.phase == phaseRunning {
			g.applyNextHops(ctx)
		}
		g.mu.Unlock()
	}
}

// applyNextHops needs g.mu.
func (g *GoBGP) applyNextHops(ctx context.Context) {
	for _, n := range g.cfg.Neighbors {
		addr := n.Addr
		cur, ok := g.nextHops[addr]
		nh := g.ipv6NextHop(n)
		if !ok || cur == nh {
			continue
		}
		if err := g.replaceExport(ctx, n, nh); err != nil {
			g.log.Error("IPv6 next hop changed but the export policy was not replaced", "peer", addr, "err", err)
		}
	}
}

// replaceExport installs a session's new export policy and makes the
// router see the result: a soft reset out resends the paths, and, when the
// IPv6 VIPs must leave a session that carried them, they are withdrawn and
// originated again around the change, because GoBGP's soft reset never
// withdraws what a new export policy rejects. That costs the other sessions
// a withdraw and re-announce of the IPv6 VIPs, only when a node loses its
// IPv6 next hop. Callers hold mu.
func (g *GoBGP) replaceExport(ctx context.Context, n Neighbor, nh nextHop6) error {
	addr := n.Addr
	if cur, ok := g.nextHops[addr]; ok && cur.refused == "" && nh.refused != "" {
		var v6 []netip.Prefix
		for pfx := range g.paths {
			if pfx.Addr().Is6() {
				v6 = append(v6, pfx)
			}
		}
		for _, pfx := range v6 {
			if err := g.srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Uuid: g.paths[pfx].uuid}); err != nil {
				return fmt.Errorf("withdrawing %s: %w", pfx, err)
			}
		}
		err := g.setExport(ctx, n, nh)
		for _, pfx := range v6 {
			cur := g.paths[pfx]
			path, perr := apiPath(pfx, cur.attrs)
			if perr == nil {
				var resp *api.AddPathResponse
				if resp, perr = g.srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path}); perr == nil {
					cur.uuid = resp.Uuid
					g.paths[pfx] = cur
					continue
				}
			}
			delete(g.paths, pfx) // the next reconcile announces it again
			err = errors.Join(err, fmt.Errorf("announcing %s again: %w", pfx, perr))
		}
		return err
	}
	if err := g.setExport(ctx, n, nh); err != nil {
		return err
	}
	if err := g.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: addr.String(), Soft: true, Direction: api.ResetPeerRequest_OUT}); err != nil {
		return fmt.Errorf("resending the paths: %w", err)
	}
	return nil
}
