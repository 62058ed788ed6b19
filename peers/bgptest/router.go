// Package bgptest runs an in-process BGP router for tests: a GoBGP server
// that listens on loopback, accepts one passive session from vipcast, keeps
// what it receives, and can originate routes of its own. No root needed.
//
// Typical use, with vipcast's peer at 127.0.0.1 and Port r.Port():
//
//	r := bgptest.StartRouter(t, bgptest.RouterConfig{PeerASN: 64512})
//	... start vipcast with peers: [{address: 127.0.0.1, asn: 65000, port: r.Port(), connectRetry: 1s}]
//	r.WaitEstablished(t, 10*time.Second)
//	r.WaitPrefixes(t, []netip.Prefix{vip}, 5*time.Second)
package bgptest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/vipcast/vipcast/peers/testutil"
	"github.com/vipcast/vipcast/policy"
)

// RouterConfig describes the router. Zero values pick loopback defaults.
type RouterConfig struct {
	// ASN is the router's ASN; 65000 if zero.
	ASN uint32
	// RouterID is the router's BGP identifier; 192.0.2.254 if empty.
	RouterID string
	// Address the router listens on; 127.0.0.1 if empty. Use ::1 for an
	// IPv6 session.
	Address string
	// Port to listen on; a free one if zero.
	Port int
	// PeerAddress is the address vipcast connects from; Address if empty.
	PeerAddress string
	// PeerASN is vipcast's ASN; 64512 if zero.
	PeerASN uint32
	// Password is the TCP MD5 key the router expects.
	Password string
	// TTLSecurity turns on GTSM (TTL 255 out, minimum TTL 255 in).
	TTLSecurity bool
	// GracefulRestart advertises the RFC 4724 capability (helper).
	GracefulRestart bool
}

// Router is a running test router. Its methods are safe for concurrent use.
type Router struct {
	cfg  RouterConfig
	srv  *server.BgpServer
	port int

	mu     sync.Mutex
	closed bool
}

// StartRouter starts a router and stops it when the test ends.
func StartRouter(t testing.TB, cfg RouterConfig) *Router {
	t.Helper()
	if cfg.ASN == 0 {
		cfg.ASN = 65000
	}
	if cfg.RouterID == "" {
		cfg.RouterID = "192.0.2.254"
	}
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1"
	}
	if cfg.PeerAddress == "" {
		cfg.PeerAddress = cfg.Address
	}
	if cfg.PeerASN == 0 {
		cfg.PeerASN = 64512
	}
	ctx := context.Background()
	var lastErr error
	// A port picked by listening and closing can be taken again before
	// GoBGP binds it, so retry a few times.
	for range 5 {
		port := cfg.Port
		if port == 0 {
			var err error
			if port, err = freePort(cfg.Address); err != nil {
				t.Fatalf("bgptest: %v", err)
			}
		}
		s := server.NewBgpServer(server.LoggerOption(nopLogger{}))
		// GoBGP v3's Serve never returns; the goroutine idles after Close.
		go s.Serve()
		err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
			Asn: cfg.ASN, RouterId: cfg.RouterID, ListenPort: int32(port), ListenAddresses: []string{cfg.Address},
		}})
		if err != nil {
			lastErr = err
			s.StopBgp(ctx, &api.StopBgpRequest{})
			if cfg.Port != 0 {
				break
			}
			continue
		}
		r := &Router{cfg: cfg, srv: s, port: port}
		t.Cleanup(r.Close)
		if err := s.AddPeer(ctx, &api.AddPeerRequest{Peer: r.peer()}); err != nil {
			t.Fatalf("bgptest: adding peer: %v", err)
		}
		return r
	}
	t.Fatalf("bgptest: starting router on %s: %v", cfg.Address, lastErr)
	return nil
}

func (r *Router) peer() *api.Peer {
	fam := func(afi api.Family_Afi) *api.AfiSafi {
		return &api.AfiSafi{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}, Enabled: true}}
	}
	p := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: r.cfg.PeerAddress, PeerAsn: r.cfg.PeerASN, AuthPassword: r.cfg.Password},
		// Passive: the router never dials; IdleHoldTimeAfterReset 1s lets a
		// restarted vipcast reconnect without GoBGP's 30s default pause.
		Transport: &api.Transport{PassiveMode: true},
		Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 9, KeepaliveInterval: 3, ConnectRetry: 1, IdleHoldTimeAfterReset: 1}},
		AfiSafis:  []*api.AfiSafi{fam(api.Family_AFI_IP), fam(api.Family_AFI_IP6)},
	}
	if r.cfg.TTLSecurity {
		p.TtlSecurity = &api.TtlSecurity{Enabled: true, TtlMin: 255}
	}
	if r.cfg.GracefulRestart {
		p.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: 120, HelperOnly: true}
		for _, a := range p.AfiSafis {
			a.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
	}
	return p
}

// PeerRestartTime is the graceful-restart time vipcast advertised in its
// OPEN, as the router saw it; 0 without the capability or a session.
func (r *Router) PeerRestartTime(ctx context.Context) (uint32, error) {
	var t uint32
	err := r.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if gr := p.GetGracefulRestart(); gr != nil {
			t = gr.GetPeerRestartTime()
		}
	})
	return t, err
}

func freePort(addr string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		return 0, fmt.Errorf("picking a port on %s: %w", addr, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Port is the TCP port the router listens on.
func (r *Router) Port() int { return r.port }

// Address is the address the router listens on.
func (r *Router) Address() string { return r.cfg.Address }

// Server is the underlying GoBGP server, for assertions this package does
// not cover.
func (r *Router) Server() *server.BgpServer { return r.srv }

// Path is a route as the router holds it.
type Path struct {
	Prefix           netip.Prefix
	NextHop          netip.Addr
	Origin           uint8
	ASPath           []uint32
	MED              *uint32
	LocalPref        *uint32
	Communities      []policy.Community
	LargeCommunities []policy.LargeCommunity
}

// Paths returns the routes in the router's RIB that it learned from
// vipcast (its own originated routes are left out), IPv4 then IPv6.
func (r *Router) Paths(ctx context.Context) ([]Path, error) {
	var out []Path
	for _, afi := range []api.Family_Afi{api.Family_AFI_IP, api.Family_AFI_IP6} {
		var apiPaths []*api.Path
		err := r.srv.ListPath(ctx, &api.ListPathRequest{
			TableType: api.TableType_GLOBAL,
			Family:    &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST},
		}, func(d *api.Destination) { apiPaths = append(apiPaths, d.Paths...) })
		if err != nil {
			return nil, fmt.Errorf("listing RIB: %w", err)
		}
		for _, ap := range apiPaths {
			if _, err := netip.ParseAddr(ap.NeighborIp); err != nil {
				continue // originated by the router itself
			}
			p, err := toPath(ap)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// Prefixes returns the prefixes of Paths, sorted.
func (r *Router) Prefixes(ctx context.Context) ([]netip.Prefix, error) {
	ps, err := r.Paths(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Prefix)
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out), nil
}

// WaitPrefixes polls until Prefixes equals want (in any order) or fails the
// test after timeout, reporting what the router had.
func (r *Router) WaitPrefixes(t testing.TB, want []netip.Prefix, timeout time.Duration) {
	t.Helper()
	want = slices.Clone(want)
	slices.SortFunc(want, comparePrefix)
	var got []netip.Prefix
	var err error
	ok := testutil.Poll(timeout, func() bool {
		got, err = r.Prefixes(context.Background())
		return err == nil && slices.Equal(got, want)
	})
	if !ok {
		t.Fatalf("bgptest: router prefixes = %v (err %v), want %v after %v", got, err, want, timeout)
	}
}

// Established reports whether the session with vipcast is established.
func (r *Router) Established(ctx context.Context) (bool, error) {
	var up bool
	err := r.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		up = p.GetState().GetSessionState() == api.PeerState_ESTABLISHED
	})
	return up, err
}

// WaitEstablished polls until the session is (want true) or is not (want
// false) established, failing the test after timeout.
func (r *Router) WaitEstablished(t testing.TB, want bool, timeout time.Duration) {
	t.Helper()
	if !testutil.Poll(timeout, func() bool {
		up, err := r.Established(context.Background())
		return err == nil && up == want
	}) {
		t.Fatalf("bgptest: session established = %v not reached within %v", want, timeout)
	}
}

// Originate adds a route of the router's own, sent to vipcast.
func (r *Router) Originate(t testing.TB, prefix netip.Prefix) {
	t.Helper()
	var nlri bgp.AddrPrefixInterface
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	if prefix.Addr().Is4() {
		nlri = bgp.NewIPAddrPrefix(uint8(prefix.Bits()), prefix.Addr().String())
		attrs = append(attrs, bgp.NewPathAttributeNextHop("0.0.0.0"))
	} else {
		nlri = bgp.NewIPv6AddrPrefix(uint8(prefix.Bits()), prefix.Addr().String())
		attrs = append(attrs, bgp.NewPathAttributeMpReachNLRI("::", []bgp.AddrPrefixInterface{nlri}))
	}
	p, err := apiutil.NewPath(nlri, false, attrs, time.Now())
	if err == nil {
		_, err = r.srv.AddPath(context.Background(), &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: p})
	}
	if err != nil {
		t.Fatalf("bgptest: originating %s: %v", prefix, err)
	}
}

// Close stops the router, closing the session with a Cease. It is
// idempotent and also run by the test's cleanup.
func (r *Router) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	r.srv.StopBgp(context.Background(), &api.StopBgpRequest{})
}

func toPath(ap *api.Path) (Path, error) {
	nlri, err := apiutil.GetNativeNlri(ap)
	if err != nil {
		return Path{}, fmt.Errorf("decoding NLRI: %w", err)
	}
	var p Path
	if p.Prefix, err = netip.ParsePrefix(nlri.String()); err != nil {
		return Path{}, fmt.Errorf("decoding NLRI %s: %w", nlri, err)
	}
	attrs, err := apiutil.GetNativePathAttributes(ap)
	if err != nil {
		return Path{}, fmt.Errorf("decoding attributes of %s: %w", p.Prefix, err)
	}
	for _, a := range attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeOrigin:
			p.Origin = a.Value
		case *bgp.PathAttributeNextHop:
			p.NextHop, _ = netip.AddrFromSlice(a.Value)
		case *bgp.PathAttributeMpReachNLRI:
			p.NextHop, _ = netip.AddrFromSlice(a.Nexthop)
		case *bgp.PathAttributeAsPath:
			for _, seg := range a.Value {
				p.ASPath = append(p.ASPath, seg.GetAS()...)
			}
		case *bgp.PathAttributeMultiExitDisc:
			p.MED = &a.Value
		case *bgp.PathAttributeLocalPref:
			p.LocalPref = &a.Value
		case *bgp.PathAttributeCommunities:
			for _, c := range a.Value {
				p.Communities = append(p.Communities, policy.Community(c))
			}
		case *bgp.PathAttributeLargeCommunities:
			for _, c := range a.Values {
				p.LargeCommunities = append(p.LargeCommunities, policy.LargeCommunity{Global: c.ASN, Local1: c.LocalData1, Local2: c.LocalData2})
			}
		}
	}
	p.NextHop = p.NextHop.Unmap()
	return p, nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// nopLogger silences the router's GoBGP: its logs are noise in test output
// and may arrive after the test has finished.
type nopLogger struct{}

func (nopLogger) Panic(msg string, _ gobgplog.Fields) { panic(msg) }
func (nopLogger) Fatal(msg string, _ gobgplog.Fields) { panic(msg) }
func (nopLogger) Error(string, gobgplog.Fields)       {}
func (nopLogger) Warn(string, gobgplog.Fields)        {}
func (nopLogger) Info(string, gobgplog.Fields)        {}
func (nopLogger) Debug(string, gobgplog.Fields)       {}
func (nopLogger) SetLevel(gobgplog.LogLevel)          {}
func (nopLogger) GetLevel() gobgplog.LogLevel         { return gobgplog.PanicLevel }
