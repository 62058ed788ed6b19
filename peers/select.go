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

// SkipReason is why a peer does not apply to a node.
type SkipReason int

const (
	// SkipNodeCIDRs: no address of the node is in the peer's nodeCIDRs.
	SkipNodeCIDRs SkipReason = iota + 1
	// SkipNodeSelector: the node's labels do not match the nodeSelector.
	SkipNodeSelector
	// SkipLabelsUnknown: the peer has a nodeSelector and the node's labels
	// could not be read, so it is skipped until a reload sees them.
	SkipLabelsUnknown
)

// Skipped is one peer that does not apply to the node.
type Skipped struct {
	// Field and Addr name the peer (Neighbor.Field, Neighbor.Addr).
	Field  string
	Addr   netip.Addr
	Reason SkipReason
	// Detail says it for an operator.
	Detail string
}

func (s Skipped) String() string { return fmt.Sprintf("%s (%s): %s", s.Field, s.Addr, s.Detail) }

// Select returns p with only the neighbors that apply to node n, and the
// ones skipped. A peer applies when it has no nodeCIDRs or one of n's
// addresses is in them, and it has no nodeSelector or every one of its
// labels matches n's (matchLabels semantics).
//
// Unknown labels: a peer with a nodeSelector is skipped, with reason
// SkipLabelsUnknown. Skipping is the safe side: a node that should not
// talk to a router never does, and a node that should is only late (the
// caller logs it loudly and selection runs again on reload). Peering with
// every selector-guarded router instead would announce the VIP from a
// node the network team excluded.
func (p Peering) Select(n NodeInfo) (Peering, []Skipped) {
	out := p
	out.Neighbors = nil
	var skipped []Skipped
	for _, nb := range p.Neighbors {
		if why, detail := nb.skipReason(n); why != 0 {
			skipped = append(skipped, Skipped{Field: nb.Field, Addr: nb.Addr, Reason: why, Detail: detail})
			continue
		}
		out.Neighbors = append(out.Neighbors, nb)
	}
	return out, skipped
}

func (nb Neighbor) skipReason(n NodeInfo) (SkipReason, string) {
	if len(nb.Nodes) > 0 {
		in := false
		for _, pfx := range nb.Nodes {
			for _, a := range n.Addresses {
				if pfx.Contains(a.Unmap()) || pfx.Contains(a) {
					in = true
				}
			}
		}
		if !in {
			return SkipNodeCIDRs, fmt.Sprintf("no address of this node is in nodeCIDRs %v", nb.NodeCIDRs)
		}
	}
	if len(nb.NodeSelector) > 0 {
		if !n.LabelsKnown {
			return SkipLabelsUnknown, fmt.Sprintf("nodeSelector %s cannot be evaluated: the node's labels are unknown (Kubernetes API unavailable); skipped until a reload sees them", fmtLabels(nb.NodeSelector))
		}
		for k, v := range nb.NodeSelector {
			if got, ok := n.Labels[k]; !ok || got != v {
				return SkipNodeSelector, fmt.Sprintf("nodeSelector %s does not match the node's labels (%s=%q)", fmtLabels(nb.NodeSelector), k, got)
			}
		}
	}
	return 0, ""
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
