package peers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// Names of the GoBGP policy objects vipcast installs.
const (
	importPolicy = "vipcast-import"
	exportPolicy = "vipcast-export-" // + peer address and a generation: one per peer
	vipSetPrefix = "vipcast-vips-"   // + "v4" / "v6": GoBGP prefix sets hold one family
	peerSetName  = "vipcast-peer-"   // + peer address: a neighbor set of one
	gshutSet     = "vipcast-gshut"   // a community set holding 65535:0
)

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
	cfg  Config
	pol  policy.Config
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

// peerTrack is what GoBGP's API does not report: the failure reason, taken
// from its log records, and whether the operator was already told.
type peerTrack struct {
	password  bool
	state     SessionState
	lastError string
	warned    bool // a connect failure was logged at Warn during this outage

	maxPrefixes     uint32
	prefixLimitHits uint64
	prefixLimited   bool // LastError is the prefix limit: keep it over the Cease that follows
	// recreated is when recoverLoop last replaced the peer: a router that
	// keeps failing the session is retried every connectRetry, no faster.
	recreated time.Time
	// nextHopErr says why the IPv6 VIPs are not sent on this session; it
	// stays until a reload finds a next hop, whatever the session does.
	nextHopErr string

	bfd bfdTrack // BFD as told by its notifications (damping included)
}

var _ Router = (*GoBGP)(nil)

// NewGoBGP returns a stopped router for a validated cfg. vips are the only
// prefixes Announce accepts and the only ones the export policy lets out;
// pol gives each session its attributes. A nil log discards.
func NewGoBGP(cfg Config, pol policy.Config, vips []netip.Prefix, log *slog.Logger) (*GoBGP, error) {
	if len(vips) == 0 {
		return nil, errors.New("no VIPs: vipcast needs at least one prefix to advertise")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &GoBGP{
		cfg:          cfg.WithDefaults(),
		pol:          pol,
		vips:         make(map[netip.Prefix]bool, len(vips)),
		log:          log,
		paths:        map[netip.Prefix]announced{},
		peers:        map[netip.Addr]*peerTrack{},
		exports:      map[netip.Addr]string{},
		nextHops:     map[netip.Addr]nextHop6{},
		globalIPv6:   globalIPv6Towards,
		nextHopEvery: nextHopRefresh,
		recoverCh:    make(chan netip.Addr, recoverQueue),
	}
	g.bfdCh = make(chan netip.Addr, len(g.cfg.Peers)) // each peer at most once
	if _, err := g.sessionExports(g.cfg.Peers); err != nil {
		return nil, err
	}
	for _, p := range vips {
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			return nil, fmt.Errorf("VIP %s is not a canonical IPv4 or IPv6 prefix; use e.g. 192.0.2.10/32", p)
		}
		g.vips[p] = true
	}
	for _, p := range g.cfg.Peers {
		a, err := netip.ParseAddr(p.Address)
		if err != nil {
			return nil, fmt.Errorf("peer address %q: %w", p.Address, err)
		}
		g.peers[a] = &peerTrack{password: p.PasswordFile != "", state: StateIdle, maxPrefixes: p.MaxPrefixes,
			bfd: bfdTrack{waitBGP: p.BFD.Enabled && !p.BFD.Strict}}
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
	exports, err := g.sessionExports(g.cfg.Peers)
	if err != nil {
		return err
	}
	for i, p := range g.cfg.Peers {
		ap, err := apiPeer(p)
		if err != nil {
			return fmt.Errorf("peer %s: %w", p.Address, err)
		}
		if err := g.setExport(ctx, p, exports[i], g.ipv6NextHop(i, p)); err != nil {
			return fmt.Errorf("peer %s: export policy: %w", p.Address, err)
		}
		if err := s.AddPeer(ctx, &api.AddPeerRequest{Peer: ap}); err != nil {
			return fmt.Errorf("peer %s: %w", p.Address, err)
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
	g.log.Info("BGP started", "asn", g.cfg.BGP.ASN, "routerID", rid, "peers", len(g.cfg.Peers), "listenPort", g.cfg.BGP.ListenPort)
	return nil
}

func (g *GoBGP) installPolicies(ctx context.Context) error {
	s := g.srv
	local := api.Conditions_ROUTE_TYPE_LOCAL
	imp := &api.Policy{Name: importPolicy, Statements: []*api.Statement{{
		Name: importPolicy + "-local", Conditions: &api.Conditions{RouteType: local},
		Actions: &api.Actions{RouteAction: api.RouteAction_ACCEPT},
	}}}
	sets := map[string][]*api.Prefix{}
	for p := range g.vips {
		fam := vipFamily(p)
		bits := uint32(p.Bits()) // exact match: a covering or longer prefix never passes
		sets[fam] = append(sets[fam], &api.Prefix{IpPrefix: p.String(), MaskLengthMin: bits, MaskLengthMax: bits})
	}
	for _, fam := range []string{"v4", "v6"} {
		if len(sets[fam]) == 0 {
			continue
		}
		if err := s.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
			DefinedType: api.DefinedType_PREFIX, Name: vipSetPrefix + fam, Prefixes: sets[fam],
		}}); err != nil {
			return err
		}
	}
	if err := s.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
		DefinedType: api.DefinedType_COMMUNITY, Name: gshutSet, List: []string{policy.GracefulShutdown.String()},
	}}); err != nil {
		return err
	}
	if err := s.AddPolicy(ctx, &api.AddPolicyRequest{Policy: imp}); err != nil {
		return err
	}
	for _, a := range []struct {
		policies []*api.Policy
		dir      api.PolicyDirection
	}{{[]*api.Policy{{Name: importPolicy}}, api.PolicyDirection_IMPORT}, {nil, api.PolicyDirection_EXPORT}} {
		if err := s.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
			Name: "global", Direction: a.dir, Policies: a.policies, DefaultAction: api.RouteAction_REJECT,
		}}); err != nil {
			return err
		}
	}
	return nil
}

func (g *GoBGP) hasFamily(fam string) bool {
	for p := range g.vips {
		if vipFamily(p) == fam {
			return true
		}
	}
	return false
}

func vipFamily(p netip.Prefix) string {
	if p.Addr().Is6() {
		return "v6"
	}
	return "v4"
}

// sessionExports computes every peer's policy.Export, in order.
func (g *GoBGP) sessionExports(peers []Peer) ([]policy.Export, error) {
	out := make([]policy.Export, len(peers))
	var errs []error
	for i, p := range peers {
		var err error
		if out[i], err = g.pol.Export(fmt.Sprintf("peers[%d].policy", i), p.Policy); err != nil {
			errs = append(errs, fmt.Errorf("peer %s: %w", p.Address, err))
		}
	}
	return out, errors.Join(errs...)
}

// setExport installs p's export policy, replacing the one it had. The new
// one goes in before the old one leaves, so no path is evaluated without a
// policy for p (which would withdraw it). nh is the IPv6 VIPs' next hop on
// this session; a refused one leaves them out of the policy, so they are
// not sent. Callers hold mu or own g.srv.
func (g *GoBGP) setExport(ctx context.Context, p Peer, e policy.Export, nh nextHop6) error {
	s := g.srv
	addr, err := netip.ParseAddr(p.Address)
	if err != nil {
		return err
	}
	old, had := g.exports[addr]
	nset := peerSetName + addr.String()
	if !had {
		if err := s.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
			DefinedType: api.DefinedType_NEIGHBOR, Name: nset, List: []string{netip.PrefixFrom(addr, addr.BitLen()).String()},
		}}); err != nil {
			return err
		}
	}
	g.exportGen++
	name := fmt.Sprintf("%s%s-%d", exportPolicy, addr, g.exportGen)
	pol := &api.Policy{Name: name}
	for _, fam := range []string{"v4", "v6"} {
		if !g.hasFamily(fam) || (fam == "v6" && nh.refused != "") {
			continue
		}
		actions := func(s policy.Session) *api.Actions {
			a := sessionActions(s, p.LocalASN)
			if fam == "v6" && nh.addr.IsValid() {
				a.Nexthop = &api.NexthopAction{Address: nh.addr.String()}
			}
			return a
		}
		cond := func(gshut bool) *api.Conditions {
			c := &api.Conditions{
				PrefixSet:   &api.MatchSet{Type: api.MatchSet_ANY, Name: vipSetPrefix + fam},
				NeighborSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: nset},
				RouteType:   api.Conditions_ROUTE_TYPE_LOCAL,
			}
			if gshut {
				c.CommunitySet = &api.MatchSet{Type: api.MatchSet_ANY, Name: gshutSet}
			}
			return c
		}
		pol.Statements = append(pol.Statements,
			&api.Statement{Name: name + "-" + fam + "-gshut", Conditions: cond(true), Actions: actions(e.Shutdown)},
			&api.Statement{Name: name + "-" + fam, Conditions: cond(false), Actions: actions(e.Normal)},
		)
	}
	if err := s.AddPolicy(ctx, &api.AddPolicyRequest{Policy: pol}); err != nil {
		return err
	}
	if err := s.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_EXPORT, Policies: []*api.Policy{{Name: name}}, DefaultAction: api.RouteAction_REJECT,
	}}); err != nil {
		return err
	}
	g.exports[addr] = name
	g.noteNextHop(addr, nh)
	if had {
		return g.dropPolicy(ctx, old)
	}
	return nil
}

// noteNextHop records the IPv6 next hop installed for addr, and tells the
// operator when it changed: a refusal is an error in the log and the
// peer's status until a reload finds a next hop.
func (g *GoBGP) noteNextHop(addr netip.Addr, nh nextHop6) {
	old, had := g.nextHops[addr]
	g.nextHops[addr] = nh
	g.pmu.Lock()
	if t := g.peers[addr]; t != nil {
		t.nextHopErr = nh.refused
	}
	g.pmu.Unlock()
	switch {
	case had && old == nh:
	case nh.refused != "":
		g.log.Error("IPv6 VIPs not sent to this peer: no IPv6 next hop", "peer", addr, "err", nh.refused)
	case nh.addr.IsValid():
		g.log.Info("IPv6 VIPs sent with next hop", "peer", addr, "nexthop", nh.addr)
	}
}

// removeExport deletes p's export policy and its neighbor set.
func (g *GoBGP) removeExport(ctx context.Context, addr netip.Addr) error {
	name, ok := g.exports[addr]
	if !ok {
		return nil
	}
	if err := g.dropPolicy(ctx, name); err != nil {
		return err
	}
	delete(g.exports, addr)
	delete(g.nextHops, addr)
	return g.srv.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{
		DefinedSet: &api.DefinedSet{DefinedType: api.DefinedType_NEIGHBOR, Name: peerSetName + addr.String()}, All: true,
	})
}

func (g *GoBGP) dropPolicy(ctx context.Context, name string) error {
	if err := g.srv.DeletePolicyAssignment(ctx, &api.DeletePolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_EXPORT, Policies: []*api.Policy{{Name: name}},
	}}); err != nil {
		return err
	}
	return g.srv.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: &api.Policy{Name: name}, All: true})
}

// sessionActions turns a policy.Session into GoBGP actions ending in accept.
// asn is the session's local ASN, which is what a prepend repeats.
func sessionActions(s policy.Session, asn uint32) *api.Actions {
	a := &api.Actions{RouteAction: api.RouteAction_ACCEPT}
	if len(s.AddCommunities) > 0 {
		cs := make([]string, len(s.AddCommunities))
		for i, c := range s.AddCommunities {
			cs[i] = c.String()
		}
		a.Community = &api.CommunityAction{Type: api.CommunityAction_ADD, Communities: cs}
	}
	if len(s.AddLargeCommunities) > 0 {
		cs := make([]string, len(s.AddLargeCommunities))
		for i, c := range s.AddLargeCommunities {
			cs[i] = c.String()
		}
		a.LargeCommunity = &api.CommunityAction{Type: api.CommunityAction_ADD, Communities: cs}
	}
	if s.MED != nil {
		a.Med = &api.MedAction{Type: api.MedAction_REPLACE, Value: int64(*s.MED)}
	}
	if s.LocalPref != nil {
		a.LocalPref = &api.LocalPrefAction{Value: *s.LocalPref}
	}
	if s.Prepend > 0 {
		a.AsPrepend = &api.AsPrependAction{Asn: asn, Repeat: uint32(s.Prepend)}
	}
	return a
}

func apiPeer(p Peer) (*api.Peer, error) {
	var pw string
	if p.PasswordFile != "" {
		var err error
		if pw, err = ReadPassword(p.PasswordFile); err != nil {
			return nil, err
		}
	}
	ap := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Address, PeerAsn: p.ASN, LocalAsn: p.LocalASN, AuthPassword: pw},
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

// Announce adds or replaces the path for a configured VIP. Announcing the
// same attributes again is a no-op, so a reconcile loop does not make GoBGP
// resend UPDATEs.
func (g *GoBGP) Announce(ctx context.Context, prefix netip.Prefix, attrs policy.Attributes) error {
	if !g.vips[prefix] {
		return fmt.Errorf("announce %s: not a configured VIP; vipcast only advertises its VIPs", prefix)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.phase != phaseRunning {
		return fmt.Errorf("announce %s: %w", prefix, ErrNotRunning)
	}
	if cur, ok := g.paths[prefix]; ok && reflect.DeepEqual(cur.attrs, attrs) {
		return nil
	}
	path, err := apiPath(prefix, attrs)
	if err != nil {
		return fmt.Errorf("announce %s: %w", prefix, err)
	}
	resp, err := g.srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path})
	if err != nil {
		return fmt.Errorf("announce %s: %w", prefix, err)
	}
	g.paths[prefix] = announced{uuid: resp.Uuid, attrs: cloneAttrs(attrs)}
	g.log.Debug("prefix announced", "prefix", prefix)
	return nil
}

// Withdraw removes the path for prefix by the UUID GoBGP gave it.
func (g *GoBGP) Withdraw(ctx context.Context, prefix netip.Prefix) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	cur, ok := g.paths[prefix]
	if !ok || g.phase != phaseRunning {
		return nil
	}
	if err := g.srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Uuid: cur.uuid}); err != nil {
		return fmt.Errorf("withdraw %s: %w", prefix, err)
	}
	delete(g.paths, prefix)
	g.log.Debug("prefix withdrawn", "prefix", prefix)
	return nil
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

// Peers reports the configured peers in configuration order. Outside
// Start..Stop every peer is idle.
func (g *GoBGP) Peers(ctx context.Context) ([]PeerStatus, error) {
	g.mu.Lock()
	s, running := g.srv, g.phase == phaseRunning
	cfgPeers := g.cfg.Peers // Reconfigure replaces the slice under g.mu
	g.mu.Unlock()
	got := map[netip.Addr]*api.Peer{}
	if running {
		err := s.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
			if a, err := netip.ParseAddr(p.GetConf().GetNeighborAddress()); err == nil {
				got[a] = p
			}
		})
		if err == nil {
			err = ctx.Err() // ListPeer returns nil when ctx ends mid-listing
		}
		if err != nil {
			return nil, fmt.Errorf("listing peers: %w", err)
		}
	}
	bfdByPeer := map[netip.Addr]*BFDStatus{}
	if running && g.bfdRunning.Load() {
		g.mu.Lock()
		m := g.bfd
		g.mu.Unlock()
		if m != nil {
			for _, ss := range m.Sessions() {
				bfdByPeer[ss.Peer] = &BFDStatus{
					State: ss.State.String(), RemoteState: ss.RemoteState.String(), Diag: ss.LocalDiag.String(),
					Since: ss.Since, TxInterval: ss.TxInterval, DetectTime: ss.DetectTime,
					RxPackets: ss.Counters.RxPackets, TxPackets: ss.Counters.TxPackets, Flaps: ss.Counters.Down,
				}
			}
		}
	}
	out := make([]PeerStatus, 0, len(cfgPeers))
	for _, p := range cfgPeers {
		addr, _ := netip.ParseAddr(p.Address)
		st := PeerStatus{Address: addr, ASN: p.ASN, State: StateIdle, BFD: bfdByPeer[addr]}
		if !running {
			st.LastError = ErrNotRunning.Error()
		}
		if ap, ok := got[addr]; ok {
			st.State = sessionState(ap.GetState().GetSessionState())
			ts := ap.GetTimers().GetState().GetDowntime()
			if st.State == StateEstablished {
				ts = ap.GetTimers().GetState().GetUptime()
				for _, af := range ap.GetAfiSafis() {
					st.PrefixesSent += int(af.GetState().GetAdvertised())
				}
			}
			if ts != nil {
				st.Since = ts.AsTime()
			}
		}
		if running {
			g.pmu.Lock()
			if t := g.peers[addr]; t != nil {
				st.LastError = t.lastError
				st.PrefixLimitHits = t.prefixLimitHits
				if t.nextHopErr != "" && t.lastError != "" {
					st.LastError = t.nextHopErr + "; last session error: " + t.lastError
				} else if t.nextHopErr != "" {
					st.LastError = t.nextHopErr
				}
			}
			g.pmu.Unlock()
		}
		out = append(out, st)
	}
	return out, nil
}

func sessionState(s api.PeerState_SessionState) SessionState {
	switch s {
	case api.PeerState_IDLE:
		return StateIdle
	case api.PeerState_CONNECT:
		return StateConnect
	case api.PeerState_ACTIVE:
		return StateActive
	case api.PeerState_OPENSENT:
		return StateOpenSent
	case api.PeerState_OPENCONFIRM:
		return StateOpenConfirm
	case api.PeerState_ESTABLISHED:
		return StateEstablished
	}
	return StateUnknown
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

func (g *GoBGP) startBFD(ctx context.Context) error {
	var sessions []bfd.SessionConfig
	multihop := false
	for _, p := range g.cfg.Peers {
		if !p.BFD.Enabled {
			continue
		}
		addr, _ := netip.ParseAddr(p.Address)
		local, _ := netip.ParseAddr(p.SourceAddress) // zero when unset
		sc := bfd.SessionConfig{
			Peer: addr, Local: local, Multihop: p.EBGPMultihop > 1, MaxHops: p.EBGPMultihop,
			DesiredMinTx: p.BFD.MinTx, RequiredMinRx: p.BFD.MinRx, DetectMult: p.BFD.Multiplier,
			AdminDown: !p.BFD.Strict, // until BGP is up: see bfdTrack.waitBGP
		}
		multihop = multihop || sc.Multihop
		sessions = append(sessions, sc)
		if g.bfdHold == nil {
			g.bfdHold = map[netip.Addr]time.Duration{}
		}
		g.bfdHold[addr] = p.HoldTime
	}
	if len(sessions) == 0 {
		return nil
	}
	m, err := bfd.New(bfd.Config{Logger: g.log.With("component", "bfd"), Multihop: multihop, OnStateChange: g.onBFD})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(context.Background())
	g.bfd, g.bfdStop, g.bfdDone = m, stop, make(chan struct{})
	g.bfdRunning.Store(true)
	go func() {
		defer close(g.bfdDone)
		if err := m.Run(runCtx); err != nil && runCtx.Err() == nil {
			g.log.Error("BFD stopped", "err", err)
		}
	}()
	for _, sc := range sessions {
		if _, err := m.Add(ctx, sc); err != nil {
			return fmt.Errorf("peer %s: %w", sc.Peer, err)
		}
	}
	return nil
}

func (g *GoBGP) stopBFD() {
	if g.bfd == nil {
		return
	}
	g.bfdRunning.Store(false)
	g.bfdStop()
	<-g.bfdDone
	g.bfd.Close()
	g.bfd = nil
}

// onBFD ties each BGP session to its BFD session: a BFD failure after Up
// tears BGP down at once, and a strict peer's BGP runs only while BFD is
// Up. It must not take mu (Stop holds it while BFD stops), so the BGP side
// is left to recoverLoop (applyBFD), in order per peer.
func (g *GoBGP) onBFD(c bfd.StateChange) {
	if !g.bfdRunning.Load() {
		return
	}
	switch {
	case c.New == bfd.StateUp:
		g.log.Info("BFD up", "peer", c.Peer, "detectTime", c.DetectTime)
		if hold := g.bfdHold[c.Peer]; hold > 0 && c.DetectTime > hold {
			g.log.Warn("BFD detection time exceeds the BGP hold time: the router's BFD timers make BFD slower than BGP's own failure detection; lower its minimum intervals or multiplier",
				"peer", c.Peer, "detectTime", c.DetectTime, "holdTime", hold)
		}
	case c.Failed():
		g.log.Warn("BFD failed: tearing the BGP session down", "peer", c.Peer, "diag", c.Diag.String(), "remoteDiag", c.RemoteDiag.String())
	case c.PeerRestarted():
		// The router deleted and recreated its BFD session (FRR does it
		// once after BGP first comes up): its path to us works, so the BGP
		// session stays; BFD comes Up again in about a second.
		g.log.Info("BFD session restarted by the router, not a path failure: keeping the BGP session", "peer", c.Peer, "remoteDiag", c.RemoteDiag.String())
	case c.Old == bfd.StateUp:
		// The router set BFD administratively down (maintenance, or a
		// session it is replacing): not a failure (RFC 5882 3.2), so the
		// BGP session stays.
		g.log.Info("BFD administratively down by the router: keeping the BGP session", "peer", c.Peer, "diag", c.Diag.String())
	}
	g.pmu.Lock()
	t := g.peers[c.Peer]
	if t == nil {
		g.pmu.Unlock()
		return
	}
	t.bfd.up = c.New == bfd.StateUp
	if c.Failed() {
		t.bfd.teardown = true
		t.bfd.reason = fmt.Sprintf("BFD down: %s (router: %s)", c.Diag, c.RemoteDiag)
		t.lastError = t.bfd.reason
	}
	g.pmu.Unlock()
	g.queueBFD(c.Peer)
}

// onEvent logs session changes from GoBGP's peer watch.
func (g *GoBGP) onEvent(r *api.WatchEventResponse) {
	pe := r.GetPeer()
	if pe == nil || pe.GetType() != api.WatchEventResponse_PeerEvent_STATE {
		return
	}
	addr, err := netip.ParseAddr(pe.GetPeer().GetState().GetNeighborAddress())
	if err != nil {
		return
	}
	state := sessionState(pe.GetPeer().GetState().GetSessionState())
	g.pmu.Lock()
	t, ok := g.peers[addr]
	if !ok {
		g.pmu.Unlock()
		return
	}
	prev, lastErr := t.state, t.lastError
	t.state = state
	if state == StateEstablished {
		t.warned = false
		t.prefixLimited = false
	}
	// Any session that got as far as an OPEN and then failed lands in
	// GoBGP's 5 s idle hold; so does one that was up. A router restarting
	// refuses the first tries while its configuration loads.
	recreate := state == StateIdle && !t.prefixLimited &&
		(prev == StateEstablished || prev == StateOpenSent || prev == StateOpenConfirm)
	startBFD := state == StateEstablished && t.bfd.bgpUp()
	g.pmu.Unlock()
	if recreate {
		g.queueRecover(addr)
	}
	if startBFD {
		g.queueBFD(addr)
	}
	switch {
	case prev == state:
	case state == StateEstablished:
		g.log.Info("BGP session established", "peer", addr)
	case prev == StateEstablished:
		g.log.Warn("BGP session down", "peer", addr, "state", state, "err", lastErr)
	default:
		g.log.Debug("BGP session state changed", "peer", addr, "state", state)
	}
}
