package peers

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
)

// NodeInfo is what per-node peer selection knows about this node.
type NodeInfo struct {
	// Addresses are the node's addresses (LocalAddresses at start).
	Addresses []netip.Addr
	// Labels are the Kubernetes node's labels, supplied by the caller.
	Labels map[string]string
	// LabelsKnown is false when the labels could not be read (the
	// Kubernetes API is down at start, or not wired in).
	LabelsKnown bool
}

// Select returns c with only the peers that apply to node n, and one
// reason per peer skipped. A peer applies when it has no nodeCIDRs or one of
// n's addresses is in them, and it has no nodeSelector or every one of its
// labels matches n's (matchLabels semantics).
//
// Unknown labels: a peer with a nodeSelector is skipped, and its reason
// says so. Skipping is the safe side: a node that should not talk to a
// router never does, and a node that should is only late (the caller logs
// the reason loudly and selection runs again on reload). Peering with
// every selector-guarded router instead would announce the VIP from a
// node the network team excluded.
func (c Config) Select(n NodeInfo) (Config, []string) {
	out := c
	out.Peers = nil
	var skipped []string
	for i, p := range c.Peers {
		if why := p.skipReason(n); why != "" {
			skipped = append(skipped, fmt.Sprintf("peers[%d] (%s): %s", i, p.Address, why))
			continue
		}
		out.Peers = append(out.Peers, p)
	}
	return out, skipped
}

func (p Peer) skipReason(n NodeInfo) string {
	if len(p.NodeCIDRs) > 0 {
		in := false
		for _, s := range p.NodeCIDRs {
			pfx, err := netip.ParsePrefix(s)
			if err != nil {
				continue // Validate reports it
			}
			for _, a := range n.Addresses {
				if pfx.Contains(a.Unmap()) || pfx.Contains(a) {
					in = true
				}
			}
		}
		if !in {
			return fmt.Sprintf("no address of this node is in nodeCIDRs %v", p.NodeCIDRs)
		}
	}
	if len(p.NodeSelector) > 0 {
		if !n.LabelsKnown {
			return fmt.Sprintf("nodeSelector %s cannot be evaluated: the node's labels are unknown (Kubernetes API unavailable); skipped until a reload sees them", fmtLabels(p.NodeSelector))
		}
		for k, v := range p.NodeSelector {
			if got, ok := n.Labels[k]; !ok || got != v {
				return fmt.Sprintf("nodeSelector %s does not match the node's labels (%s=%q)", fmtLabels(p.NodeSelector), k, got)
			}
		}
	}
	return ""
}

func fmtLabels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// LocalAddresses lists the addresses of every interface that is up, for
// NodeInfo.Addresses.
func LocalAddresses() ([]netip.Addr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if ad, ok := netip.AddrFromSlice(ipn.IP); ok {
					out = append(out, ad.Unmap())
				}
			}
		}
	}
	return out, nil
}

// validateSelection checks nodeCIDRs and nodeSelector of peer f.
func (p Peer) validateSelection(f string, add func(string, ...any)) {
	for j, s := range p.NodeCIDRs {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			add("%s.nodeCIDRs[%d]: %q is not a CIDR; write it like 192.0.2.0/26 or 2001:db8::/64", f, j, s)
			continue
		}
		if pfx.Masked() != pfx {
			add("%s.nodeCIDRs[%d]: %q has host bits set; write %s", f, j, s, pfx.Masked())
		}
	}
	for k := range p.NodeSelector {
		if k == "" {
			add("%s.nodeSelector: empty label name; write it like {topology.kubernetes.io/zone: a}", f)
		}
	}
}
