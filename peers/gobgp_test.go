package peers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"

	"github.com/vipcast/vipcast/peers/bgptest"
	"github.com/vipcast/vipcast/peers/testutil"
	"github.com/vipcast/vipcast/policy"
)

// These tests run a real BGP session over loopback against an in-process
// GoBGP router (package bgptest). They are sequential on purpose: GoBGP v3
// writes package-level route selection settings in StartBgp, which the race
// detector flags when two servers start at once.

const (
	localASN  = 64512
	routerASN = 65000
	wait      = 10 * time.Second
)

var (
	vip4 = netip.MustParsePrefix("203.0.113.10/32")
	vip6 = netip.MustParsePrefix("2001:db8::10/128")
)

// startVipcast starts a GoBGP Router peering with r and stops it at cleanup.
func startVipcast(t *testing.T, r *bgptest.Router, peer Peer, vips ...netip.Prefix) (*GoBGP, *testutil.SyncBuffer) {
	t.Helper()
	return startVipcastPolicy(t, r, policy.Default(), peer, vips...)
}

// startVipcastPolicy is startVipcast with a global policy.
func startVipcastPolicy(t *testing.T, r *bgptest.Router, pol policy.Config, peer Peer, vips ...netip.Prefix) (*GoBGP, *testutil.SyncBuffer) {
	t.Helper()
	peer.Address = r.Address()
	peer.ASN = routerASN
	peer.Port = uint16(r.Port())
	peer.ConnectRetry = time.Second
	cfg := Config{BGP: Global{ASN: localASN, RouterID: "192.0.2.11"}, Peers: []Peer{peer}}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	logs := &testutil.SyncBuffer{}
	g, err := NewGoBGP(mustParse(t, cfg, pol), vips, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return g, logs
}

// waitPeer polls Peers until cond holds for the only peer.
func waitPeer(t *testing.T, g *GoBGP, what string, cond func(PeerStatus) bool) PeerStatus {
	t.Helper()
	var last PeerStatus
	testutil.Eventually(t, "peer "+what, func() bool {
		ps, err := g.Peers(context.Background())
		if err != nil {
			t.Fatalf("Peers: %v", err)
		}
		if len(ps) != 1 {
			t.Fatalf("Peers returned %d peers, want 1", len(ps))
		}
		last = ps[0]
		return cond(last)
	}, func() string { return fmt.Sprintf("last status %+v", last) })
	return last
}

func established(p PeerStatus) bool { return p.State == StateEstablished }

// waitRouterPath polls the router until it holds exactly one path and cond
// holds for it.
func waitRouterPath(t *testing.T, r *bgptest.Router, cond func(bgptest.Path) bool) bgptest.Path {
	t.Helper()
	var got []bgptest.Path
	testutil.Eventually(t, "one matching path on the router", func() bool {
		var err error
		if got, err = r.Paths(context.Background()); err != nil {
			t.Fatal(err)
		}
		return len(got) == 1 && cond(got[0])
	}, func() string { return fmt.Sprintf("router paths %+v", got) })
	return got[0]
}

func u32(v uint32) *uint32 { return &v }

func TestGoBGPAnnounceWithdrawStop(t *testing.T) {
	r := bgptest.StartRouter(t, bgptest.RouterConfig{ASN: routerASN, PeerASN: localASN})
	pol := policy.Default()
	pol.Prepend = 2
	g, _ := startVipcastPolicy(t, r, pol, Peer{}, vip4)
	ctx := context.Background()

	waitPeer(t, g, "established", established)
	attrs := policy.Attributes{
		Communities:      []policy.Community{64512<<16 | 100, policy.GracefulShutdown},
		LargeCommunities: []policy.LargeCommunity{{Global: 64512, Local1: 1, Local2: 2}},
		MED:              u32(50),
		LocalPref:        u32(200),
	}
	if err := g.announce(ctx, vip4, attrs); err != nil {
		t.Fatal(err)
	}
	got := waitRouterPath(t, r, func(bgptest.Path) bool { return true })
	want := bgptest.Path{
		Prefix:           vip4,
		NextHop:          netip.MustParseAddr("127.0.0.1"),
		Origin:           0, // IGP
		ASPath:           []uint32{localASN, localASN, localASN},
		MED:              u32(50),
		LocalPref:        nil, // not sent on eBGP
		Communities:      attrs.Communities,
		LargeCommunities: attrs.LargeCommunities,
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Prefix{}, netip.Addr{})); diff != "" {
		t.Errorf("router path (-want +got):\n%s", diff)
	}
	st := waitPeer(t, g, "reporting one prefix sent", func(p PeerStatus) bool { return p.PrefixesSent == 1 })
	if st.State != StateEstablished || st.ASN != routerASN || st.Address != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("status %+v, want established 127.0.0.1 AS%d", st, routerASN)
	}
	if st.Since.IsZero() || st.Since.After(time.Now()) {
		t.Errorf("Since = %v, want a past time", st.Since)
	}

	// Same prefix, new attributes: replaced, not added.
	attrs.MED = u32(70)
	if err := g.announce(ctx, vip4, attrs); err != nil {
		t.Fatal(err)
	}
	waitRouterPath(t, r, func(p bgptest.Path) bool { return p.MED != nil && *p.MED == 70 })

	if err := g.announce(ctx, netip.MustParsePrefix("203.0.113.11/32"), attrs); err == nil {
		t.Error("Announce of a prefix that is not a VIP succeeded")
	}
	if err := g.withdraw(ctx, vip4); err != nil {
		t.Fatal(err)
	}
	r.WaitPrefixes(t, nil, wait)
	if err := g.withdraw(ctx, vip4); err != nil {
		t.Errorf("second Withdraw: %v", err)
	}

	if err := g.announce(ctx, vip4, attrs); err != nil {
		t.Fatal(err)
	}
	r.WaitPrefixes(t, []netip.Prefix{vip4}, wait)
	if err := g.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	r.WaitEstablished(t, false, wait)
	r.WaitPrefixes(t, nil, wait)
	if err := g.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	ps, err := g.Peers(ctx)
	if err != nil || len(ps) != 1 || ps[0].State != StateIdle {
		t.Errorf("Peers after Stop = %+v, %v; want one idle peer", ps, err)
	}
	if err := g.announce(ctx, vip4, attrs); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Announce after Stop = %v, want ErrNotRunning", err)
	}
}

// TestGoBGPNothingImportedOnlyVIPsExported proves the two policies on the
// wire: the router's routes reach vipcast's adj-RIB-in but never its RIB,
// and local paths that are not exactly a VIP never reach the router.
func TestGoBGPNothingImportedOnlyVIPsExported(t *testing.T) {
	r := bgptest.StartRouter(t, bgptest.RouterConfig{ASN: routerASN, PeerASN: localASN})
	routerRoutes := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("0.0.0.0/0")}
	for _, p := range routerRoutes {
		r.Originate(t, p)
	}
	g, _ := startVipcast(t, r, Peer{}, vip4)
	ctx := context.Background()
	waitPeer(t, g, "established", established)
	if err := g.announce(ctx, vip4, policy.Attributes{}); err != nil {
		t.Fatal(err)
	}

	// Wait until vipcast has received both routes, then check each was
	// filtered by import policy and is absent from the RIB.
	ipv4 := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	list := func(tt api.TableType, name string) []*api.Path {
		var out []*api.Path
		err := g.srv.ListPath(ctx, &api.ListPathRequest{TableType: tt, Name: name, Family: ipv4, EnableFiltered: true},
			func(d *api.Destination) { out = append(out, d.Paths...) })
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	testutil.Eventually(t, fmt.Sprintf("vipcast to receive the router's %d routes", len(routerRoutes)), func() bool {
		return len(list(api.TableType_ADJ_IN, "127.0.0.1")) == len(routerRoutes)
	})
	for _, p := range list(api.TableType_ADJ_IN, "127.0.0.1") {
		if !p.Filtered {
			t.Errorf("received path %v was not rejected by the import policy", p.Nlri)
		}
	}
	var rib []string
	for _, p := range list(api.TableType_GLOBAL, "") {
		nlri, _ := p.Nlri.UnmarshalNew()
		rib = append(rib, nlri.(*api.IPAddressPrefix).Prefix)
		if p.NeighborIp != "<nil>" && p.NeighborIp != "" {
			t.Errorf("RIB holds a received path from %s: %v", p.NeighborIp, nlri)
		}
	}
	if want := []string{vip4.Addr().String()}; !slices.Equal(rib, want) {
		t.Errorf("vipcast RIB = %v, want only %v", rib, want)
	}

	// Export: bypass Announce's check and put non-VIP local paths in the
	// RIB: a covering prefix, a neighbour /32 and an unrelated prefix.
	for _, s := range []string{"203.0.113.0/24", "203.0.113.11/32", "192.0.2.0/24"} {
		p, err := apiPath(netip.MustParsePrefix(s), policy.Attributes{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: p}); err != nil {
			t.Fatal(err)
		}
	}
	// A later update of the VIP is a barrier: once the router has it, any
	// leaked path sent before it would have arrived too.
	if err := g.announce(ctx, vip4, policy.Attributes{MED: u32(9)}); err != nil {
		t.Fatal(err)
	}
	waitRouterPath(t, r, func(p bgptest.Path) bool { return p.MED != nil && *p.MED == 9 })
	r.WaitPrefixes(t, []netip.Prefix{vip4}, wait)
	st := waitPeer(t, g, "reporting one prefix sent", func(p PeerStatus) bool { return p.PrefixesSent == 1 })
	if st.PrefixesSent != 1 {
		t.Errorf("PrefixesSent = %d with non-VIP paths in the RIB, want 1", st.PrefixesSent)
	}
}

func TestGoBGPIPv6(t *testing.T) {
	if l, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		l.Close()
	}
	r := bgptest.StartRouter(t, bgptest.RouterConfig{ASN: routerASN, PeerASN: localASN, Address: "::1"})
	g, _ := startVipcast(t, r, Peer{}, vip4, vip6)
	ctx := context.Background()
	waitPeer(t, g, "established", established)
	for _, p := range []netip.Prefix{vip6, vip4} {
		if err := g.announce(ctx, p, policy.Attributes{Communities: []policy.Community{64512<<16 | 6}}); err != nil {
			t.Fatal(err)
		}
	}
	// The session negotiates ipv6 only (the default for an IPv6 peer), so
	// the IPv4 VIP stays home.
	p := waitRouterPath(t, r, func(p bgptest.Path) bool { return p.Prefix == vip6 })
	if p.NextHop != netip.MustParseAddr("::1") || !slices.Equal(p.ASPath, []uint32{localASN}) {
		t.Errorf("router path %+v, want next hop ::1 and AS path [%d]", p, localASN)
	}
	r.WaitPrefixes(t, []netip.Prefix{vip6}, wait)
	if err := g.withdraw(ctx, vip6); err != nil {
		t.Fatal(err)
	}
	r.WaitPrefixes(t, nil, wait)
}

func writePassword(t *testing.T, pw string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "md5")
	if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestGoBGPMD5(t *testing.T) {
	const secret = "s3cret-md5-key"
	t.Run("matching", func(t *testing.T) {
		r := bgptest.StartRouter(t, bgptest.RouterConfig{ASN: routerASN, PeerASN: localASN, Password: secret})
		g, logs := startVipcast(t, r, Peer{PasswordFile: writePassword(t, secret)}, vip4)
		waitPeer(t, g, "established", established)
		if err := g.announce(context.Background(), vip4, policy.Attributes{}); err != nil {
			t.Fatal(err)
		}
		r.WaitPrefixes(t, []netip.Prefix{vip4}, wait)
		if strings.Contains(logs.String(), secret) {
			t.Error("the MD5 key appears in the logs")
		}
	})
	t.Run("mismatch", func(t *testing.T) {
		r := bgptest.StartRouter(t, bgptest.RouterConfig{ASN: routerASN, PeerASN: localASN, Password: secret})
		g, logs := startVipcast(t, r, Peer{PasswordFile: writePassword(t, "wrong-key")}, vip4)
		// The router drops unsigned-by-its-key SYNs, so the dial times out
		// (after 1s with connectRetry 1s) and the hint is logged.
		st := waitPeer(t, g, "reporting a connect error", func(p PeerStatus) bool {
			if p.State == StateEstablished {
				t.Fatal("session established with a wrong MD5 key")
			}
			return strings.HasPrefix(p.LastError, "connect:")
		})
		t.Logf("LastError: %s", st.LastError)
		if !strings.Contains(st.LastError, "check that passwordFile matches the router's password") {
			t.Errorf("LastError %q lacks the passwordFile hint (status shows it)", st.LastError)
		}
		if !strings.Contains(logs.String(), "check that passwordFile matches the router's password") {
			t.Errorf("no password hint in the logs:\n%s", logs)
		}
		if up, _ := r.Established(context.Background()); up {
			t.Error("router reports the session established")
		}
		if strings.Contains(logs.String(), "wrong-key") || strings.Contains(logs.String(), secret) {
			t.Error("an MD5 key appears in the logs")
		}
	})
}

func TestNewGoBGPRejectsBadVIPs(t *testing.T) {
	cfg := Config{BGP: Global{ASN: localASN}, Peers: []Peer{{Address: "192.0.2.1", ASN: routerASN}}}
	for _, vips := range [][]netip.Prefix{
		nil,
		{netip.MustParsePrefix("203.0.113.10/24")}, // host bits set
		{netip.MustParsePrefix("::ffff:203.0.113.10/128")},
		{{}},
	} {
		if _, err := NewGoBGP(mustParse(t, cfg, policy.Default()), vips, nil); err == nil {
			t.Errorf("NewGoBGP(%v) succeeded", vips)
		}
	}
	g, err := NewGoBGP(mustParse(t, cfg, policy.Default()), []netip.Prefix{vip4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Before Start: nothing to withdraw, nothing to announce, peers idle.
	ctx := context.Background()
	if err := g.withdraw(ctx, vip4); err != nil {
		t.Errorf("Withdraw before Start: %v", err)
	}
	if err := g.announce(ctx, vip4, policy.Attributes{}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Announce before Start = %v, want ErrNotRunning", err)
	}
	ps, err := g.Peers(ctx)
	if err != nil || len(ps) != 1 || ps[0].State != StateIdle || ps[0].Address != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("Peers before Start = %+v, %v", ps, err)
	}
	if err := g.Stop(ctx); err != nil {
		t.Errorf("Stop before Start: %v", err)
	}
	if err := g.Start(ctx); err == nil {
		t.Error("Start after Stop succeeded")
	}
}

func TestResolveRouterID(t *testing.T) {
	if a, err := resolveRouterID("192.0.2.11"); err != nil || a != netip.MustParseAddr("192.0.2.11") {
		t.Errorf("resolveRouterID(192.0.2.11) = %v, %v", a, err)
	}
	if _, err := resolveRouterID("2001:db8::1"); err == nil {
		t.Error("an IPv6 router ID was accepted")
	}
	ifs := []net.Interface{
		{Name: "lo", Flags: net.FlagUp | net.FlagLoopback},
		{Name: "down0", Flags: 0},
		{Name: "eth0", Flags: net.FlagUp},
	}
	addrs := map[string][]net.Addr{
		"lo":    {&net.IPNet{IP: net.ParseIP("127.0.0.1"), Mask: net.CIDRMask(8, 32)}},
		"down0": {&net.IPNet{IP: net.ParseIP("10.9.9.9"), Mask: net.CIDRMask(8, 32)}},
		"eth0": {
			&net.IPNet{IP: net.ParseIP("fe80::1"), Mask: net.CIDRMask(64, 128)},
			&net.IPNet{IP: net.ParseIP("169.254.1.1"), Mask: net.CIDRMask(16, 32)},
			&net.IPNet{IP: net.ParseIP("10.0.0.5"), Mask: net.CIDRMask(24, 32)},
		},
	}
	get := func(i *net.Interface) ([]net.Addr, error) { return addrs[i.Name], nil }
	if a, ok := firstGlobalIPv4(ifs, get); !ok || a != netip.MustParseAddr("10.0.0.5") {
		t.Errorf("firstGlobalIPv4 = %v, %v; want 10.0.0.5", a, ok)
	}
	if _, ok := firstGlobalIPv4(ifs[:2], get); ok {
		t.Error("firstGlobalIPv4 found an address on loopback or a down interface")
	}
}

func TestSlogAdapter(t *testing.T) {
	var buf bytes.Buffer
	var seen []string
	a := &slogAdapter{
		log:     slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})),
		observe: func(_ slog.Level, msg string, _ gobgplog.Fields) { seen = append(seen, msg) },
	}
	a.Info("Add a peer configuration", gobgplog.Fields{"Topic": "Peer", "Key": "192.0.2.1"})
	a.Warn("hold timer expired", gobgplog.Fields{"Topic": "Peer", "Key": "192.0.2.1", "AuthPassword": "x", "Error": errors.New("boom")})
	out := buf.String()
	if strings.Contains(out, "Add a peer") {
		t.Errorf("GoBGP Info was not demoted to Debug: %s", out)
	}
	for _, want := range []string{"level=WARN", `msg="hold timer expired"`, "peer=192.0.2.1", "err=boom", "topic=Peer"} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
	if strings.Contains(strings.ToLower(out), "password") {
		t.Errorf("password field logged: %s", out)
	}
	if want := []string{"Add a peer configuration", "hold timer expired"}; !slices.Equal(seen, want) {
		t.Errorf("observed %v, want %v (observe must see records the handler drops)", seen, want)
	}
	if a.GetLevel() != gobgplog.DebugLevel {
		t.Error("GetLevel must report Debug so GoBGP emits connect errors")
	}
}

func TestPeerReason(t *testing.T) {
	for _, tc := range []struct {
		level slog.Level
		msg   string
		f     gobgplog.Fields
		want  string
	}{
		{slog.LevelDebug, "failed to connect", gobgplog.Fields{"Error": errors.New("i/o timeout")}, "connect: i/o timeout"},
		{slog.LevelDebug, "Peer Down", gobgplog.Fields{"Reason": "hold-timer-expired"}, "session down: hold-timer-expired"},
		{slog.LevelWarn, "received notification", gobgplog.Fields{"Code": uint8(6), "Subcode": uint8(2), "Communicated-Reason": "maintenance"},
			`received notification: code 6(cease) subcode 2(administrative shutdown) ("maintenance")`},
		{slog.LevelWarn, "hold timer expired", gobgplog.Fields{}, "hold timer expired"},
		{slog.LevelDebug, "sent update", gobgplog.Fields{}, ""},
	} {
		if got := peerReason(tc.level, tc.msg, tc.f); got != tc.want {
			t.Errorf("peerReason(%q) = %q, want %q", tc.msg, got, tc.want)
		}
	}
}

// TestGoBGPPrefixLimit: a router that sends routes (vipcast imports none)
// must not grow vipcast without bound. GoBGP keeps every received route in
// the Adj-RIB-In, so above peers[].maxPrefixes the session is closed, the
// routes are dropped and the status, log and counter say why.
func TestGoBGPPrefixLimit(t *testing.T) {
	r := bgptest.StartRouter(t, bgptest.RouterConfig{ASN: routerASN, PeerASN: localASN})
	const limit, offered = 50, 120
	for i := range offered {
		r.Originate(t, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24))
	}
	g, logs := startVipcast(t, r, Peer{MaxPrefixes: limit}, vip4)
	st := waitPeer(t, g, "closed by the prefix limit", func(p PeerStatus) bool { return p.PrefixLimitHits > 0 })
	if want := "prefix limit: the router sent more than 50 ipv4-unicast routes (peers[].maxPrefixes)"; !strings.HasPrefix(st.LastError, want) {
		t.Errorf("LastError = %q, want it to start with %q", st.LastError, want)
	}
	for _, want := range []string{`msg="BGP peer exceeded the prefix limit: closing the session, which stays down until vipcast restarts or the peer's configuration changes" peer=127.0.0.1 family=ipv4-unicast limit=50 hits=1`,
		`msg="BGP peer sends routes, which vipcast never imports: near the prefix limit"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
	// What is held ends up bounded by the limit. The hit is counted before
	// GoBGP tears the session down and drops its routes, so the count is
	// polled: a single read raced the teardown on a busy machine.
	ctx := context.Background()
	n := 0
	testutil.Eventually(t, fmt.Sprintf("Adj-RIB-In to hold at most %d routes after the limit", limit), func() bool {
		n = 0
		err := g.srv.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_ADJ_IN, Name: "127.0.0.1",
			Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, EnableFiltered: true},
			func(d *api.Destination) { n += len(d.Paths) })
		if err != nil {
			t.Fatal(err)
		}
		return n <= limit
	}, func() string { return fmt.Sprintf("Adj-RIB-In holds %d routes", n) })
}

func TestMaxPrefixesDefault(t *testing.T) {
	c := Config{BGP: Global{ASN: localASN}, Peers: []Peer{{Address: "192.0.2.1", ASN: routerASN}, {Address: "192.0.2.2", ASN: routerASN, MaxPrefixes: 5}}}.WithDefaults()
	if got := []uint32{c.Peers[0].MaxPrefixes, c.Peers[1].MaxPrefixes}; !slices.Equal(got, []uint32{DefaultMaxPrefixes, 5}) {
		t.Errorf("MaxPrefixes = %v, want [%d 5]", got, DefaultMaxPrefixes)
	}
	ap, err := apiPeer(mustParse(t, c, policy.Default()).Neighbors[0])
	if err != nil {
		t.Fatal(err)
	}
	if pl := ap.AfiSafis[0].GetPrefixLimits(); pl.GetMaxPrefixes() != DefaultMaxPrefixes || pl.GetShutdownThresholdPct() != prefixWarnPct {
		t.Errorf("GoBGP prefix limit = %v", pl)
	}
}

// startVipcastNextHop is startVipcast with an IPv4 session that carries
// both families, and the automatic IPv6 next hop replaced by global.
func startVipcastNextHop(t *testing.T, r *bgptest.Router, peer Peer, global globalIPv6Func, vips ...netip.Prefix) (*GoBGP, Config) {
	t.Helper()
	peer.Address, peer.ASN, peer.Port, peer.ConnectRetry = r.Address(), routerASN, uint16(r.Port()), time.Second
	peer.Families = []string{"ipv4", "ipv6"}
	cfg := Config{BGP: Global{ASN: localASN, RouterID: "192.0.2.11"}, Peers: []Peer{peer}}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	g, err := NewGoBGP(mustParse(t, cfg, policy.Default()), vips, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.globalIPv6, g.nextHopEvery = global, 50*time.Millisecond
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return g, cfg
}

// TestGoBGPIPv6OverIPv4: an IPv6 VIP sent over an IPv4 session carries a
// real IPv6 next hop (peers[].nextHopIPv6, else the node's global address
// towards the router), never GoBGP's IPv4-mapped ::ffff:a.b.c.d; with
// neither, it is not sent at all and the peer's status says why, until a
// reload finds an address.
func TestGoBGPIPv6OverIPv4(t *testing.T) {
	nodeV6 := netip.MustParseAddr("2001:db8:2::11")
	found := func(netip.Addr) (netip.Addr, string, error) { return nodeV6, "eth0", nil }
	none := func(netip.Addr) (netip.Addr, string, error) { return netip.Addr{}, "eth0", errNoGlobalIPv6 }
	ctx := context.Background()
	announce := func(t *testing.T, g *GoBGP) {
		t.Helper()
		for _, p := range []netip.Prefix{vip4, vip6} {
			if err := g.announce(ctx, p, policy.Attributes{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// waitPaths polls until the router holds exactly want (prefix -> next hop).
	waitPaths := func(t *testing.T, r *bgptest.Router, want map[netip.Prefix]netip.Addr) {
		t.Helper()
		var got map[netip.Prefix]netip.Addr
		testutil.Eventually(t, fmt.Sprintf("router paths (prefix: next hop) %v", want), func() bool {
			ps, err := r.Paths(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got = map[netip.Prefix]netip.Addr{}
			for _, p := range ps {
				got[p.Prefix] = p.NextHop
			}
			return cmp.Equal(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }))
		}, func() string { return fmt.Sprintf("router paths = %v", got) })
	}
	loop := netip.MustParseAddr("127.0.0.1")

	for _, tt := range []struct {
		name   string
		peer   Peer
		global globalIPv6Func
		want   netip.Addr
	}{
		{"configured", Peer{NextHopIPv6: "2001:db8:2::99"}, none, netip.MustParseAddr("2001:db8:2::99")},
		{"automatic", Peer{}, found, nodeV6},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := bgptest.StartRouter(t, bgptest.RouterConfig{ASN: routerASN, PeerASN: localASN})
			g, _ := startVipcastNextHop(t, r, tt.peer, tt.global, vip4, vip6)
			waitPeer(t, g, "established", established)
			announce(t, g)
			waitPaths(t, r, map[netip.Prefix]netip.Addr{vip4: loop, vip6: tt.want})
			if st := waitPeer(t, g, "sending both VIPs", func(p PeerStatus) bool { return p.PrefixesSent == 2 }); st.LastError != "" {
				t.Errorf("LastError = %q, want none", st.LastError)
			}
		})
	}

	t.Run("refused-until-an-address-appears", func(t *testing.T) {
		r := bgptest.StartRouter(t, bgptest.RouterConfig{ASN: routerASN, PeerASN: localASN})
		g, cfg := startVipcastNextHop(t, r, Peer{}, none, vip4, vip6)
		waitPeer(t, g, "established", established)
		announce(t, g)
		waitPaths(t, r, map[netip.Prefix]netip.Addr{vip4: loop})
		st := waitPeer(t, g, "sending the IPv4 VIP", func(p PeerStatus) bool { return p.PrefixesSent == 1 })
		for _, w := range []string{"IPv6 VIPs not sent", "no global IPv6 address on eth0", "peers[0].nextHopIPv6"} {
			if !strings.Contains(st.LastError, w) {
				t.Errorf("LastError = %q, want it to contain %q", st.LastError, w)
			}
		}
		// The node gains an address (its DAD ends): the next look finds
		// it and sends the IPv6 VIP on the same session.
		g.mu.Lock()
		g.globalIPv6 = found
		g.mu.Unlock()
		waitPaths(t, r, map[netip.Prefix]netip.Addr{vip4: loop, vip6: nodeV6})
		st = waitPeer(t, g, "sending both VIPs", func(p PeerStatus) bool { return p.PrefixesSent == 2 })
		if st.LastError != "" {
			t.Errorf("LastError with an address = %q, want none", st.LastError)
		}
		since := st.Since
		// A reload that sets nextHopIPv6 changes the next hop without
		// resetting the session.
		cfg.Peers[0].NextHopIPv6 = "2001:db8:2::99"
		if err := g.Reconfigure(ctx, mustParse(t, cfg, policy.Default())); err != nil {
			t.Fatal(err)
		}
		waitPaths(t, r, map[netip.Prefix]netip.Addr{vip4: loop, vip6: netip.MustParseAddr("2001:db8:2::99")})
		if st := waitPeer(t, g, "established", established); !st.Since.Equal(since) {
			t.Errorf("session up since %v after the reload, was %v: the next hop change reset it", st.Since, since)
		}
		// The node loses its address while the router has the IPv6 VIP:
		// it is withdrawn from this session (a soft reset alone would
		// leave it there), the IPv4 VIP and the session stay.
		g.mu.Lock()
		g.globalIPv6 = none
		g.mu.Unlock()
		cfg.Peers[0].NextHopIPv6 = ""
		if err := g.Reconfigure(ctx, mustParse(t, cfg, policy.Default())); err != nil {
			t.Fatal(err)
		}
		waitPaths(t, r, map[netip.Prefix]netip.Addr{vip4: loop})
		st = waitPeer(t, g, "refusing again", func(p PeerStatus) bool { return strings.Contains(p.LastError, "IPv6 VIPs not sent") })
		if !st.Since.Equal(since) {
			t.Errorf("session up since %v after the refusal, was %v: it was reset", st.Since, since)
		}
	})
}

func TestPickGlobalIPv6(t *testing.T) {
	a := netip.MustParseAddr
	for _, tt := range []struct {
		in   []netip.Addr
		want netip.Addr
	}{
		{nil, netip.Addr{}},
		{[]netip.Addr{a("fe80::1"), a("::1"), a("ff02::1"), a("::ffff:192.0.2.11"), a("192.0.2.11")}, netip.Addr{}},
		{[]netip.Addr{a("2001:db8:2::12"), a("fe80::1"), a("2001:db8:2::11")}, a("2001:db8:2::11")},
		{[]netip.Addr{a("fd00::11")}, a("fd00::11")},
	} {
		if got, ok := pickGlobalIPv6(tt.in); got != tt.want || ok != tt.want.IsValid() {
			t.Errorf("pickGlobalIPv6(%v) = %v, %v; want %v", tt.in, got, ok, tt.want)
		}
	}
}

// TestGoBGPSessionsChanged: the notices alone are enough to follow a
// session up and down, so the speaker can read Peers when told instead of
// polling it.
func TestGoBGPSessionsChanged(t *testing.T) {
	r := bgptest.StartRouter(t, bgptest.RouterConfig{ASN: routerASN, PeerASN: localASN})
	g, _ := startVipcast(t, r, Peer{}, vip4)
	ctx := context.Background()
	// follow reads Peers after each notice until want holds for the one
	// peer; it never reads without a notice.
	follow := func(what string, want func(PeerStatus) bool) {
		t.Helper()
		deadline := time.After(testutil.Timeout)
		var last []PeerStatus
		for {
			select {
			case <-g.SessionsChanged():
			case <-deadline:
				t.Fatalf("no notice of the session %s; Peers read after the last notice: %+v", what, last)
			}
			ps, err := g.Peers(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if last = ps; len(ps) == 1 && want(ps[0]) {
				return
			}
		}
	}
	follow("established", established)
	r.Close()
	follow("down", func(p PeerStatus) bool { return !established(p) })
}
