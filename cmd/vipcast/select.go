package main

import (
	"context"
	"log/slog"

	"github.com/vipcast/vipcast/peers"
)

// selectPeers keeps the peers that apply to this node (peers[].nodeCIDRs,
// peers[].nodeSelector), at start and at every reload. node supplies the
// node's addresses and, from the Kubernetes API, its labels; it is asked
// only when some peer has a nodeSelector, so a node without selectors never
// waits for the API. When the labels are unknown (API down at start), peers
// with a nodeSelector are skipped (see peers.Config.Select) and logged as
// errors, loudly, since a node missing a router is something the operator
// must see; the next reload or restart tries again.
func selectPeers(ctx context.Context, c peers.Peering, node func(context.Context) peers.NodeInfo, log *slog.Logger) peers.Peering {
	var ni peers.NodeInfo
	needLabels := false
	for _, p := range c.Neighbors {
		needLabels = needLabels || len(p.NodeSelector) > 0
	}
	if needLabels && node != nil {
		ni = node(ctx)
	} else {
		addrs, err := peers.LocalAddresses()
		if err != nil {
			log.Error("reading the node's addresses for peers[].nodeCIDRs; peers with nodeCIDRs are skipped", "err", err)
		}
		ni.Addresses = addrs
	}
	out, skipped := c.Select(ni)
	for _, s := range skipped {
		if s.Reason == peers.SkipLabelsUnknown {
			log.Error("peer not used on this node", "reason", s.String())
			continue
		}
		log.Warn("peer not used on this node", "reason", s.String())
	}
	if len(out.Neighbors) == 0 && len(c.Neighbors) > 0 {
		log.Error("no configured peer applies to this node: the VIPs will not be advertised from here", "skipped", len(skipped))
	}
	return out
}
