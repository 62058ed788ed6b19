package e2e

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// TestPerPeerPolicy: peers[].policy puts different attributes on two
// sessions of one node (the IPv4 and the IPv6 peering with FRR), and a
// reload that changes only one peer's policy reaches FRR without a session
// flap.
func TestPerPeerPolicy(t *testing.T) {
	lab.Require(t, lab.FRR)
	l := lab.New(t, lab.Options{Router: lab.FRR, Nodes: 1, IPv6: true})
	l.DumpOnFailure(t)
	n := l.Node(1)
	v4peer, v6peer := lab.RouterAddr4.String(), fmt.Sprintf("%q", lab.RouterAddr6.String())
	var plain string
	restartVipcast(t, n, func(c string) string {
		plain = c
		c = withPeerField(t, v4peer, `policy: {communities: ["64512:201"], med: 50, prepend: 2}`)(c)
		return withPeerField(t, v6peer, `policy: {communities: ["64512:206"]}`)(c)
	})
	t.Cleanup(func() { _ = os.WriteFile(n.ConfigFile(), []byte(plain), 0o644) })
	asn := fmt.Sprint(lab.NodeASN)
	want := func(what string, vip4 bool, asPath string, med int, communities ...string) {
		t.Helper()
		p, peer := lab.VIP6, n.Addr6
		if vip4 {
			p, peer = lab.VIP4, n.Addr4
		}
		var last lab.Path
		lab.WaitFor(t, what, 20*time.Second, func() bool {
			pa, ok := pathFrom(t, l, p, peer)
			last = pa
			return ok && pa.ASPath == asPath && pa.HasMED && pa.MED == med && slices.Equal(pa.Communities, communities)
		})
		t.Logf("%s: %+v", what, last)
	}
	want("IPv4 session: its own community, MED and prepend", true, strings.Repeat(asn+" ", 2)+asn, 50, "64512:100", "64512:201")
	want("IPv6 session: its own community, the global MED", false, asn, l.Opts.MED, "64512:100", "64512:206")

	// Reload (file watch) with only the IPv4 peer's policy changed.
	est0, drop0 := frrConnections(t, l, n.Addr4.String())
	c := withPeerField(t, v4peer, `policy: {med: 70}`)(plain)
	c = withPeerField(t, v6peer, `policy: {communities: ["64512:206"]}`)(c)
	if err := os.WriteFile(n.ConfigFile(), []byte(c), 0o644); err != nil {
		t.Fatal(err)
	}
	want("IPv4 session after the reload", true, asn, 70, "64512:100")
	want("IPv6 session after the reload (unchanged)", false, asn, l.Opts.MED, "64512:100", "64512:206")
	if est, drop := frrConnections(t, l, n.Addr4.String()); est != est0 || drop != drop0 || !l.Established(n.Addr4) {
		t.Errorf("IPv4 session reset by a policy-only reload: established %d->%d, dropped %d->%d", est0, est, drop0, drop)
	}
	found := false
	for _, r := range n.LogRecords() {
		if r["msg"] == "peer policy changed: paths resent, session kept" {
			found = true
		}
	}
	if !found {
		t.Error("vipcast's log does not say the peer's policy changed")
	}
}
