package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vipcast/vipcast/peers"
	"github.com/vipcast/vipcast/policy"
)

// Label names hold dots and slashes; viper must not split or drop them.
func TestParseConfigNodeSelection(t *testing.T) {
	in := `vips: [203.0.113.10/32]
bgp: {asn: 64512, routerID: 192.0.2.10}
peers:
  - {address: 192.0.2.1, asn: 65000, nodeCIDRs: [192.0.2.0/26], nodeSelector: {topology.kubernetes.io/zone: zone-a, node-role.kubernetes.io/control-plane: ""}}
policy: {priority: 2, priorityMode: med, gracefulShutdown: {wait: 5s, localPref: 0}}
`
	cfg, err := parseConfig(strings.NewReader(in), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Peering.Peers[0]
	want := map[string]string{"topology.kubernetes.io/zone": "zone-a", "node-role.kubernetes.io/control-plane": ""}
	if diff := cmp.Diff(want, p.NodeSelector); diff != "" {
		t.Errorf("nodeSelector (-want +got):\n%s", diff)
	}
	if !cmp.Equal(p.NodeCIDRs, []string{"192.0.2.0/26"}) {
		t.Errorf("nodeCIDRs = %v", p.NodeCIDRs)
	}
	g := cfg.Policy.GracefulShutdown
	if !g.Enabled || g.Wait.String() != "5s" || g.LocalPref == nil || *g.LocalPref != 0 || g.MED != nil {
		t.Errorf("gracefulShutdown = %+v", g)
	}
	if cfg.Policy.Priority != 2 {
		t.Errorf("priority = %d", cfg.Policy.Priority)
	}
}

func TestParseConfigPriorityFromEnv(t *testing.T) {
	in := "vips: [203.0.113.10/32]\nbgp: {asn: 64512, routerID: 192.0.2.10}\npeers: [{address: 192.0.2.1, asn: 65000}]\n"
	cfg, err := parseConfig(strings.NewReader(in), []string{"VIPCAST_POLICY_PRIORITY=3", "VIPCAST_POLICY_GRACEFULSHUTDOWN_WAIT=1s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := cfg.Policy.Attributes()
	if a.MED == nil || *a.MED != 30 || cfg.Policy.GracefulShutdown.Wait.String() != "1s" {
		t.Errorf("MED %v, wait %v", a.MED, cfg.Policy.GracefulShutdown.Wait)
	}
}

// A peer skipped for want of the node's labels is an error, one that does
// not match a warning: the level follows the typed reason, not its text.
func TestSelectPeersLogLevels(t *testing.T) {
	c := peers.Config{BGP: peers.Global{ASN: 64512}, Peers: []peers.Peer{
		{Address: "192.0.2.1", ASN: 65000, NodeCIDRs: []string{"198.51.100.0/24"}},
		{Address: "192.0.2.2", ASN: 65000, NodeSelector: map[string]string{"zone": "a"}},
		{Address: "192.0.2.3", ASN: 65000},
	}}
	p, err := c.Parse(policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	node := func(context.Context) peers.NodeInfo {
		return peers.NodeInfo{Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.11")}}
	}
	got := selectPeers(context.Background(), p, node, slog.New(slog.NewTextHandler(&logs, nil)))
	if len(got.Neighbors) != 1 || got.Neighbors[0].Field != "peers[2]" {
		t.Errorf("kept %+v, want peers[2] only", got.Neighbors)
	}
	var levels []string
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		level, _, _ := strings.Cut(strings.TrimPrefix(line[strings.Index(line, "level="):], "level="), " ")
		levels = append(levels, level)
	}
	if diff := cmp.Diff([]string{"WARN", "ERROR"}, levels); diff != "" {
		t.Errorf("log levels (-want +got):\n%s\nlogs:\n%s", diff, logs.String())
	}
}
