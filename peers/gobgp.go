package peers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/vipcast/vipcast/peers/bfd"
	"github.com/vipcast/vipcast/policy"
)

// The GoBGP Router's lifecycle and RIB: construction, Start, Set, Stop.
// Its other jobs are gobgp_policy.go (policy objects), gobgp_bfd.go (BFD
// glue) and gobgp_status.go (status); reconfigure.go, recover.go and
// nexthop.go hold reloads, session recovery and IPv6 next hops.

// ErrNotRunning is returned by RIB operations outside Start..Stop.
var ErrNotRunning = errors.New("BGP is not running")

// GoBGP is the Router backed by an embedded GoBGP v3 server. It originates
// only the VIPs it was built with and never installs a received route:
//
//   - import: GoBGP v3 applies neighbor policies only to route-server
//     clients; for ordinary peers the import policy is the global one, and it
//     also filters paths added with AddPath. So the global import policy
//     accepts route-type local (vipcast's own paths) and rejects the rest.
//   - export: the global export policy accepts a local path only if its
//     prefix is in the "vipcast-vips-*" prefix sets with its exact mask
//     length; everything else is rejected. GoBGP evaluates it once per
//     destination peer, so it holds one policy per peer (matched by a
//     neighbor set) that also applies that peer's attributes
//     (policy.Session): the path carries the global ones, and a second
//     statement, matching GRACEFUL_SHUTDOWN on the path, keeps a drain's
//     values from being overwritten.
type GoBGP struct {
	cfg  Peering
	vips map[netip.Prefix]bool
	log  *slog.Logger

	mu        sync.Mutex // serialises Start, Stop and RIB changes
	phase     int        // phaseNew, phaseRunning, phaseStopped
	srv       *server.BgpServer
	stopWatch context.CancelFunc
	paths     map[netip.Prefix]announced
	exports   map[netip.Addr]string   // peer -> its installed export policy
	nextHops  map[netip.Addr]nextHop6 // peer -> the IPv6 next hop in that policy
	exportGen int                     // makes each installed policy's name new
	// globalIPv6 finds the automatic IPv6 next hop (see ipv6NextHop);
	// tests replace it. Every nextHopEvery it is asked again (an address
	// still in DAD at boot, a renumbered node) by the goroutine that
	// closes nextHopDone when watchCtx ends.
	globalIPv6   globalIPv6Func
	nextHopEvery time.Duration
	nextHopDone  chan struct{}

	// recoverCh feeds recoverLoop the peers whose session dropped, bfdCh
	// those whose BFD changed (each queued once until handled); it closes
	// recoverDone when watchCtx ends.
	recoverCh   chan netip.Addr
	bfdCh       chan netip.Addr
	recoverDone chan struct{}

	pmu   sync.Mutex // guards peers; never held while calling GoBGP
	peers map[netip.Addr]*peerTrack
	// changed holds one notice of a session state change (SessionsChanged).
	changed chan struct{}

	// BFD, when any peer has it. bfdRunning gates the BFD callback, which
	// must not take mu: Stop holds mu while it waits for BFD to finish.
	bfd        *bfd.Manager
	bfdStop    context.CancelFunc
	bfdDone    chan struct{}
	bfdRunning atomic.Bool
	bfdHold    map[netip.Addr]time.Duration // BGP hold time per BFD peer; set before BFD runs, then read-only
}

const (
	phaseNew = iota
	phaseRunning
	phaseStopped
)

type announced struct {
	uuid  []byte
	attrs policy.Attributes
}

var (
	_ Router          = (*GoBGP)(nil)
	_ SessionNotifier = (*GoBGP)(nil)
)

// neighbor returns the running configuration of the peer at addr, nil if
// there is none (a reload removed it). Callers hold mu.
func (g *GoBGP) neighbor(addr netip.Addr) *Neighbor {
	for i := range g.cfg.Neighbors {
		if g.cfg.Neighbors[i].Addr == addr {
			return &g.cfg.Neighbors[i]
		}
	}
	return nil
}

// NewGoBGP returns a stopped router for the peering cfg (see Config.Parse).
// vips are the only prefixes Set accepts and the only ones the export
// policy lets out. A nil log discards.
func NewGoBGP(cfg Peering, vips []netip.Prefix, log *slog.Logger) (*GoBGP, error) {
	if len(vips) == 0 {
		return nil, errors.New("no VIPs: vipcast needs at least one prefix to advertise")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &GoBGP{
		cfg:          cfg,
		vips:         make(map[netip.Prefix]bool, len(vips)),
		log:          log,
		paths:        map[netip.Prefix]announced{},
		peers:        map[netip.Addr]*peerTrack{},
		exports:      map[netip.Addr]string{},
		nextHops:     map[netip.Addr]nextHop6{},
		globalIPv6:   globalIPv6Towards,
		nextHopEvery: nextHopRefresh,
		recoverCh:    make(chan netip.Addr, recoverQueue),
		changed:      make(chan struct{}, 1),
	}
	g.bfdCh = make(chan netip.Addr, len(g.cfg.Neighbors)) // each peer at most once
	for _, p := range vips {
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			return nil, fmt.Errorf("VIP %s is not a canonical IPv4 or IPv6 prefix; use e.g. 192.0.2.10/32", p)
		}
		g.vips[p] = true
	}
	for _, n := range g.cfg.Neighbors {
		g.peers[n.Addr] = newPeerTrack(n)
	}
	return g, nil
}

// Start brings up GoBGP with the policies in place before any peer exists,
// so no session ever runs without them.
func (g *GoBGP) Start(ctx context.Context) (err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.phase != phaseNew {
		return errors.New("start BGP: already started")
	}
	rid, err := resolveRouterID(g.cfg.BGP.RouterID)
	if err != nil {
		return fmt.Errorf("start BGP: %w", err)
	}
	s := server.NewBgpServer(server.LoggerOption(&slogAdapter{log: g.log.With("component", "gobgp"), observe: g.observe}))
	// GoBGP v3's Serve loop has no exit: after StopBgp it stays parked on
	// its channels. There is one per process, so this is accepted.
	go s.Serve()
	watchCtx, stopWatch := context.WithCancel(context.Background())
	g.srv, g.stopWatch, g.phase = s, stopWatch, phaseRunning
	defer func() {
		if err != nil {
			g.shutdown(ctx)
			err = fmt.Errorf("start BGP: %w", err)
		}
	}()

	global := &api.Global{Asn: g.cfg.BGP.ASN, RouterId: rid.String(), ListenPort: -1}
	if g.cfg.BGP.ListenPort != 0 {
		global.ListenPort = int32(g.cfg.BGP.ListenPort)
		global.ListenAddresses = g.cfg.BGP.ListenAddresses
	}
	if err := s.StartBgp(ctx, &api.StartBgpRequest{Global: global}); err != nil {
		return err
	}
	if err := g.installPolicies(ctx); err != nil {
		return fmt.Errorf("installing policies: %w", err)
	}
	// GoBGP stops the watch goroutine when watchCtx is cancelled in Stop.
	if err := s.WatchEvent(watchCtx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, g.onEvent); err != nil {
		return fmt.Errorf("watching peers: %w", err)
	}
	for _, n := range g.cfg.Neighbors {
		ap, err := apiPeer(n)
		if err != nil {
			return fmt.Errorf("peer %s: %w", n.Addr, err)
		}
		if err := g.setExport(ctx, n, g.ipv6NextHop(n)); err != nil {
			return fmt.Errorf("peer %s: export policy: %w", n.Addr, err)
		}
		if err := s.AddPeer(ctx, &api.AddPeerRequest{Peer: ap}); err != nil {
			return fmt.Errorf("peer %s: %w", n.Addr, err)
		}
	}
	// BFD only once every peer exists in GoBGP (a BFD peer waits there
	// administratively down): a router already sending BFD brings a session
	// Up within milliseconds, and enabling a peer GoBGP does not have yet
	// fails once and is never retried, leaving the BGP session down for good
	// while BFD stays Up.
	if err := g.startBFD(ctx); err != nil {
		return fmt.Errorf("BFD: %w", err)
	}
	g.nextHopDone = make(chan struct{})
	go g.refreshNextHops(watchCtx, g.nextHopDone)
	g.recoverDone = make(chan struct{})
	go g.recoverLoop(watchCtx, g.recoverDone)
	g.log.Info("BGP started", "asn", g.cfg.BGP.ASN, "routerid", rid, "peers", len(g.cfg.Neighbors), "listenport", g.cfg.BGP.ListenPort)
	return nil
}

func apiPeer(p Neighbor) (*api.Peer, error) {
	var pw string
	if p.PasswordFile != "" {
		var err error
		if pw, err = ReadPassword(p.PasswordFile); err != nil {
			return nil, err
		}
	}
	ap := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Addr.String(), PeerAsn: p.ASN, LocalAsn: p.LocalASN, AuthPassword: pw},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          uint64(p.HoldTime / time.Second),
			KeepaliveInterval: uint64(p.KeepaliveTime / time.Second),
			ConnectRetry:      uint64(p.ConnectRetry / time.Second),
		}},
		Transport: &api.Transport{RemotePort: uint32(p.Port), LocalAddress: p.SourceAddress, PassiveMode: p.Passive},
	}
	// Strict BFD: the session waits, administratively down, until BFD is
	// Up. Otherwise it starts at once, as routers that create BFD only for
	// an established BGP session (dynamic neighbors) need.
	ap.Conf.AdminDown = p.BFD.Enabled && p.BFD.Strict
	if p.EBGPMultihop > 0 {
		ap.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.EBGPMultihop)}
	}
	if p.TTLSecurityHops > 0 {
		// GoBGP then sends with TTL 255 and sets IP_MINTTL on the socket.
		ap.TtlSecurity = &api.TtlSecurity{Enabled: true, TtlMin: 256 - uint32(p.TTLSecurityHops)}
	}
	gr := p.GracefulRestart.Enabled
	if gr {
		ap.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: uint32(p.GracefulRestart.RestartTime / time.Second)}
	}
	for _, f := range p.Families {
		afi := api.Family_AFI_IP
		if f == familyV6 {
			afi = api.Family_AFI_IP6
		}
		as := &api.AfiSafi{Config: &api.AfiSafiConfig{
			Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}, Enabled: true,
		}}
		if gr {
			as.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		// GoBGP keeps every received route in the Adj-RIB-In, rejected or
		// not: only a limit bounds the memory a router can make it use.
		maxPrefixes := p.MaxPrefixes
		if maxPrefixes == 0 {
			maxPrefixes = DefaultMaxPrefixes
		}
		as.PrefixLimits = &api.PrefixLimit{Family: as.Config.Family, MaxPrefixes: maxPrefixes, ShutdownThresholdPct: prefixWarnPct}
		ap.AfiSafis = append(ap.AfiSafis, as)
	}
	return ap, nil
}

// Set makes vipcast's paths in GoBGP's RIB exactly want, diffing against
// the paths it added: withdrawn first (by the UUID GoBGP gave each path),
// then added or replaced. A path already there with the same attributes is
// left alone, so a reconcile loop does not make GoBGP resend UPDATEs. A
// prefix that is not a configured VIP fails the call before anything
// changes; a failed prefix does not stop the others, and the next Set with
// the same want retries it.
func (g *GoBGP) Set(ctx context.Context, want map[netip.Prefix]policy.Attributes) error {
	wanted := slices.SortedFunc(maps.Keys(want), netip.Prefix.Compare)
	for _, p := range wanted {
		if !g.vips[p] {
			return fmt.Errorf("announce %s: not a configured VIP; vipcast only advertises its VIPs", p)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.phase != phaseRunning {
		if len(want) == 0 {
			return nil // nothing is announced outside Start..Stop
		}
		return fmt.Errorf("announce %s: %w", wanted[0], ErrNotRunning)
	}
	var errs []error
	for _, p := range slices.SortedFunc(maps.Keys(g.paths), netip.Prefix.Compare) {
		if _, keep := want[p]; keep {
			continue
		}
		if err := g.srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Uuid: g.paths[p].uuid}); err != nil {
			errs = append(errs, fmt.Errorf("withdraw %s: %w", p, err))
			continue
		}
		delete(g.paths, p)
		g.log.Debug("prefix withdrawn", "prefix", p)
	}
	for _, p := range wanted {
		attrs := want[p]
		if cur, ok := g.paths[p]; ok && reflect.DeepEqual(cur.attrs, attrs) {
			continue
		}
		path, err := apiPath(p, attrs)
		if err != nil {
			errs = append(errs, fmt.Errorf("announce %s: %w", p, err))
			continue
		}
		resp, err := g.srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path})
		if err != nil {
			errs = append(errs, fmt.Errorf("announce %s: %w", p, err))
			continue
		}
		g.paths[p] = announced{uuid: resp.Uuid, attrs: cloneAttrs(attrs)}
		g.log.Debug("prefix announced", "prefix", p)
	}
	return errors.Join(errs...)
}

// apiPath builds the locally originated path. The unspecified next hop
// tells GoBGP to use each session's local address.
func apiPath(prefix netip.Prefix, a policy.Attributes) (*api.Path, error) {
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	var nlri bgp.AddrPrefixInterface
	if prefix.Addr().Is4() {
		nlri = bgp.NewIPAddrPrefix(uint8(prefix.Bits()), prefix.Addr().String())
		attrs = append(attrs, bgp.NewPathAttributeNextHop("0.0.0.0"))
	} else {
		nlri = bgp.NewIPv6AddrPrefix(uint8(prefix.Bits()), prefix.Addr().String())
		attrs = append(attrs, bgp.NewPathAttributeMpReachNLRI("::", []bgp.AddrPrefixInterface{nlri}))
	}
	// GoBGP adds the session's local ASN on eBGP sessions, and the export
	// policy prepends per session.
	attrs = append(attrs, bgp.NewPathAttributeAsPath(nil))
	if a.MED != nil {
		attrs = append(attrs, bgp.NewPathAttributeMultiExitDisc(*a.MED))
	}
	if a.LocalPref != nil {
		attrs = append(attrs, bgp.NewPathAttributeLocalPref(*a.LocalPref))
	}
	if len(a.Communities) > 0 {
		cs := make([]uint32, len(a.Communities))
		for i, c := range a.Communities {
			cs[i] = uint32(c)
		}
		attrs = append(attrs, bgp.NewPathAttributeCommunities(cs))
	}
	if len(a.LargeCommunities) > 0 {
		ls := make([]*bgp.LargeCommunity, len(a.LargeCommunities))
		for i, c := range a.LargeCommunities {
			ls[i] = bgp.NewLargeCommunity(c.Global, c.Local1, c.Local2)
		}
		attrs = append(attrs, bgp.NewPathAttributeLargeCommunities(ls))
	}
	return apiutil.NewPath(nlri, false, attrs, time.Now())
}

func cloneAttrs(a policy.Attributes) policy.Attributes {
	a.Communities = slices.Clone(a.Communities)
	a.LargeCommunities = slices.Clone(a.LargeCommunities)
	if a.MED != nil {
		v := *a.MED
		a.MED = &v
	}
	if a.LocalPref != nil {
		v := *a.LocalPref
		a.LocalPref = &v
	}
	return a
}

// Stop sends Cease to every peer (GoBGP's StopBgp deconfigures them) and
// waits for the sessions to close. GoBGP ignores ctx here.
func (g *GoBGP) Stop(ctx context.Context) error {
	g.mu.Lock()
	if g.phase != phaseRunning {
		g.phase = phaseStopped
		g.mu.Unlock()
		return nil
	}
	err := g.shutdown(ctx)
	done, recovered := g.nextHopDone, g.recoverDone
	g.mu.Unlock()
	if done != nil {
		<-done // it takes mu, so only now
	}
	if recovered != nil {
		<-recovered // likewise
	}
	if err != nil {
		return fmt.Errorf("stop BGP: %w", err)
	}
	g.log.Info("BGP stopped")
	return nil
}

// shutdown needs g.mu. Peer watching ends first: sessions closing on
// purpose are not worth a warning each.
func (g *GoBGP) shutdown(ctx context.Context) error {
	g.phase = phaseStopped
	g.stopWatch()
	g.paths = map[netip.Prefix]announced{}
	// BGP first: its Cease is the clean goodbye. BFD then sends AdminDown,
	// which routers do not take for a failure (RFC 5882 3.2).
	err := g.srv.StopBgp(ctx, &api.StopBgpRequest{})
	g.stopBFD()
	return err
}
