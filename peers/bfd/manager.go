package bfd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Well-known ports.
const (
	PortSingleHop uint16 = 3784 // RFC 5881
	PortMultihop  uint16 = 4784 // RFC 5883
)

// DefaultMaxHops is the multihop hop budget when SessionConfig.MaxHops is
// zero: packets must arrive with TTL >= 254, as FRR's default minimum-ttl.
const DefaultMaxHops = 1

// Errors returned by Manager.
var (
	ErrClosed      = errors.New("bfd: manager closed")
	ErrExists      = errors.New("bfd: session for peer already exists")
	ErrNoSession   = errors.New("bfd: no session for peer")
	ErrNoMultihop  = errors.New("bfd: multihop session but Config.Multihop is off")
	ErrNoFamily    = errors.New("bfd: no socket for the peer's address family")
	ErrInvalidPeer = errors.New("bfd: invalid peer address")
)

// Config configures a Manager.
type Config struct {
	Logger *slog.Logger // nil: slog.Default()

	// Port is the single-hop listen port (default 3784) and MultihopPort
	// the multihop one (default 4784, only opened when Multihop is set).
	// Only tests should change them.
	Port         uint16
	MultihopPort uint16
	Multihop     bool

	// DisableIPv4/DisableIPv6 skip an address family. An IPv6 socket
	// that cannot be opened (IPv6 disabled in the kernel) is logged and
	// skipped unless IPv4 is disabled too.
	DisableIPv4 bool
	DisableIPv6 bool

	// OnStateChange is called for every session state change, in order,
	// from a goroutine owned by Run, never from the protocol goroutine: a
	// slow callback delays later notifications but not BFD itself, and
	// it may call the Manager. Run waits for it to return before exiting.
	OnStateChange func(StateChange)

	// DampHold overrides DampHold (tests only).
	DampHold time.Duration
}

// SessionConfig configures one session. Zero timers mean the defaults
// (300 ms x 3).
type SessionConfig struct {
	Peer netip.Addr
	// Local is the source address to use (optional; the kernel picks it
	// from the route otherwise). Demultiplexing does not use it.
	Local netip.Addr
	// Interface pins a single-hop session to an interface: packets are
	// sent through it and received packets must arrive on it. A zone in
	// Peer (fe80::1%eth0) sets it too. Resolved when Add is called.
	Interface string
	// RemotePort overrides the destination port (tests only).
	RemotePort uint16
	Multihop   bool
	// MaxHops (multihop only): received packets need TTL >= 255-MaxHops.
	MaxHops uint8

	DesiredMinTx  time.Duration
	RequiredMinRx time.Duration
	DetectMult    uint8
	// AdminDown creates the session administratively down.
	AdminDown bool
}

// StateChange is a session state change as delivered to OnStateChange.
type StateChange struct {
	Peer     netip.Addr
	Local    netip.Addr
	Multihop bool
	Old, New State
	Diag     Diag // local diagnostic: why we changed state
	// RemoteState and RemoteDiag are from the last packet received.
	// RFC 5882 3.2: a session that went Down because the peer is
	// AdminDown (Diag NeighborSignaledDown, RemoteState AdminDown) is not
	// a forwarding failure; see Failed.
	RemoteState State
	RemoteDiag  Diag
	At          time.Time
	// DetectTime is the session's detection time at the change.
	DetectTime time.Duration
}

// Failed reports whether the change means the forwarding path is to be
// considered failed, so clients (BGP) should tear down: Up -> Down, except
// when the peer signalled AdminDown (RFC 5882 3.2) or restarted its session
// (see PeerRestarted). A local AdminDown (session removed or disabled) is
// not a failure either. What is left is our own detection time expiring
// (diag 1) or the peer reporting a failure it detected (its diag 1, 2, 4,
// 5, 6 or 8).
func (c StateChange) Failed() bool {
	if c.Old != StateUp || c.New != StateDown {
		return false
	}
	return !(c.Diag == DiagNeighborSignaledDown && c.RemoteState == StateAdminDown) && !c.PeerRestarted()
}

// PeerRestarted reports an Up -> Down caused by a Down from the peer whose
// own diagnostic names no failure: None, NeighborSignaledDown (we never
// signalled Down while Up) or AdministrativelyDown. RFC 5880 6.8.1 makes
// bfd.LocalDiag the reason for the last change of the sender's state, and
// a session that detected a failure says so (diag 1 and up); one that was
// deleted and recreated by its control plane does not. FRR 8.4 does this
// to every BGP neighbor's session once BGP is up (bgpd registers it again
// with its local address): the old session's last packet is Down with
// diag 3, then a new session with a new discriminator comes Up within a
// second. Taking that for a path failure (RFC 5882 3.2 reserves teardown
// for a failed path) would drop BGP for nothing, and, with routers that
// recreate BFD with each BGP session (dynamic neighbors), in a loop. The
// packet proves the path from the peer works; a failure in our direction
// makes the peer's detection time expire, which it reports with diag 1.
func (c StateChange) PeerRestarted() bool {
	if c.Old != StateUp || c.New != StateDown || c.Diag != DiagNeighborSignaledDown || c.RemoteState != StateDown {
		return false
	}
	switch c.RemoteDiag {
	case DiagNone, DiagNeighborSignaledDown, DiagAdministrativelyDown:
		return true
	}
	return false
}

// SessionCounters count the traffic of one session.
type SessionCounters struct {
	RxPackets    uint64
	TxPackets    uint64
	TxErrors     uint64
	StateChanges uint64
	Up           uint64 // transitions to Up
	Down         uint64 // transitions from Up to Down/AdminDown
	Damped       uint64 // failures that started or extended a flap-damping hold
}

// DropCounters count packets dropped before reaching a session.
type DropCounters struct {
	Malformed            uint64
	TTL                  uint64
	UnknownDiscriminator uint64 // also: no session for the source, wrong port or interface
	Auth                 uint64
}

// Counters are the totals of a Manager.
type Counters struct {
	RxPackets    uint64
	TxPackets    uint64
	TxErrors     uint64
	Dropped      DropCounters
	StateChanges uint64
	Up           uint64
	Down         uint64
}

// SessionStatus is a snapshot of a session.
type SessionStatus struct {
	Peer      netip.Addr
	Local     netip.Addr
	Interface string
	Multihop  bool
	SessionInfo
	Counters SessionCounters
}

// Handle refers to a session created by Add.
type Handle struct {
	m    *Manager
	peer netip.Addr
}

// Peer returns the session's peer address.
func (h *Handle) Peer() netip.Addr { return h.peer }

// Status returns the session's status.
func (h *Handle) Status(ctx context.Context) (SessionStatus, error) {
	var st SessionStatus
	var found bool
	err := h.m.do(ctx, func() {
		if ms := h.m.byPeer[h.peer]; ms != nil {
			st, found = ms.status(), true
		}
	})
	if err == nil && !found {
		err = ErrNoSession
	}
	return st, err
}

// Remove deletes the session (see Manager.Remove).
func (h *Handle) Remove(ctx context.Context) error { return h.m.Remove(ctx, h.peer) }

type msession struct {
	cfg      SessionConfig
	peer     netip.Addr // unmapped, no zone
	dst      netip.AddrPort
	ifindex  int
	minTTL   int
	tx       *net.UDPConn
	oob      []byte
	s        *Session
	counters SessionCounters
	damp     damper
	logs     *logLimiter
}

func (ms *msession) status() SessionStatus {
	return SessionStatus{
		Peer:        ms.peer,
		Local:       ms.cfg.Local,
		Interface:   ms.cfg.Interface,
		Multihop:    ms.cfg.Multihop,
		SessionInfo: ms.s.Info(),
		Counters:    ms.counters,
	}
}

type rxPacket struct {
	pkt      Packet
	src      netip.AddrPort
	meta     rxMeta
	multihop bool
}

type counters struct {
	rx, tx, txErr                 atomic.Uint64
	malformed, ttl, unknown, auth atomic.Uint64
	stateChanges, up, down        atomic.Uint64
}

// Manager runs BFD sessions. One goroutine (Run) owns every session; the
// readers only decode and hand packets over. Create it with New, start Run,
// then Add sessions.
type Manager struct {
	cfg Config
	log *slog.Logger

	listeners []listener
	tx4, tx6  *net.UDPConn

	rxCh  chan rxPacket
	cmdCh chan func()
	stop  chan struct{} // closed by Close
	quit  chan struct{} // closed when Run's loop exits
	done  chan struct{} // closed when Run returns

	stopOnce, closeOnce sync.Once
	started             atomic.Bool

	cnt   counters
	notes notifier

	// Owned by the Run goroutine.
	byPeer  map[netip.Addr]*msession
	byDiscr map[uint32]*msession
	outPkts []Packet
	txBuf   []byte
}

type listener struct {
	c        *net.UDPConn
	multihop bool
}

// New opens the sockets: listeners on the single-hop port (and the
// multihop one) for each address family, and one transmit socket per
// family. Sockets belong to the network namespace of the calling thread,
// which lets a caller create a Manager inside another namespace.
func New(cfg Config) (*Manager, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Port == 0 {
		cfg.Port = PortSingleHop
	}
	if cfg.MultihopPort == 0 {
		cfg.MultihopPort = PortMultihop
	}
	m := &Manager{
		cfg:     cfg,
		log:     cfg.Logger,
		rxCh:    make(chan rxPacket, 256),
		cmdCh:   make(chan func()),
		stop:    make(chan struct{}),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		byPeer:  make(map[netip.Addr]*msession),
		byDiscr: make(map[uint32]*msession),
		outPkts: make([]Packet, 0, 4),
		txBuf:   make([]byte, 0, HeaderLen),
	}
	m.notes.wake = make(chan struct{}, 1)
	open := func(v6 bool) error {
		tx, err := listenTx(v6)
		if err != nil {
			return fmt.Errorf("bfd transmit socket: %w", err)
		}
		if v6 {
			m.tx6 = tx
		} else {
			m.tx4 = tx
		}
		ports := []uint16{cfg.Port}
		if cfg.Multihop {
			ports = append(ports, cfg.MultihopPort)
		}
		for i, p := range ports {
			c, err := listenUDP(v6, p, true)
			if err != nil {
				return fmt.Errorf("bfd listen port %d: %w", p, err)
			}
			m.listeners = append(m.listeners, listener{c: c, multihop: i == 1})
		}
		return nil
	}
	if !cfg.DisableIPv4 {
		if err := open(false); err != nil {
			m.closeSockets()
			return nil, err
		}
	}
	if !cfg.DisableIPv6 {
		if err := open(true); err != nil {
			if cfg.DisableIPv4 {
				m.closeSockets()
				return nil, err
			}
			m.log.Warn("bfd: IPv6 disabled", "err", err)
		}
	}
	return m, nil
}

func (m *Manager) closeSockets() {
	m.closeOnce.Do(func() {
		for _, l := range m.listeners {
			l.c.Close()
		}
		if m.tx4 != nil {
			m.tx4.Close()
		}
		if m.tx6 != nil {
			m.tx6.Close()
		}
	})
}

// Close stops Run (if running) and releases the sockets. It waits for Run
// to return.
func (m *Manager) Close() error {
	m.stopOnce.Do(func() { close(m.stop) })
	if m.started.Load() {
		<-m.done
	} else {
		m.closeSockets()
	}
	return nil
}

// Counters returns the totals; safe to call at any time.
func (m *Manager) Counters() Counters {
	c := &m.cnt
	return Counters{
		RxPackets: c.rx.Load(),
		TxPackets: c.tx.Load(),
		TxErrors:  c.txErr.Load(),
		Dropped: DropCounters{
			Malformed:            c.malformed.Load(),
			TTL:                  c.ttl.Load(),
			UnknownDiscriminator: c.unknown.Load(),
			Auth:                 c.auth.Load(),
		},
		StateChanges: c.stateChanges.Load(),
		Up:           c.up.Load(),
		Down:         c.down.Load(),
	}
}

// do runs f on the owning goroutine and waits for it.
func (m *Manager) do(ctx context.Context, f func()) error {
	ran := make(chan struct{})
	select {
	case m.cmdCh <- func() { f(); close(ran) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-m.stop:
		return ErrClosed
	case <-m.quit:
		return ErrClosed
	}
	<-ran
	return nil
}

// Add creates a session. Run must be running (or about to be): Add waits
// for it, bounded by ctx.
func (m *Manager) Add(ctx context.Context, sc SessionConfig) (*Handle, error) {
	if !sc.Peer.IsValid() || sc.Peer.IsUnspecified() {
		return nil, ErrInvalidPeer
	}
	peer := sc.Peer.Unmap()
	if z := peer.Zone(); z != "" && sc.Interface == "" {
		sc.Interface = z
	}
	ms := &msession{cfg: sc, peer: peer.WithZone(""), logs: newLogLimiter()}
	if sc.Interface != "" {
		ifi, err := net.InterfaceByName(sc.Interface)
		if err != nil {
			return nil, fmt.Errorf("bfd: interface %q: %w", sc.Interface, err)
		}
		ms.ifindex = ifi.Index
	}
	port := sc.RemotePort
	if port == 0 {
		port = PortSingleHop
		if sc.Multihop {
			port = PortMultihop
		}
	}
	if sc.Multihop && !m.cfg.Multihop {
		return nil, ErrNoMultihop
	}
	v6 := peer.Is6()
	ms.tx = m.tx4
	if v6 {
		ms.tx = m.tx6
	}
	if ms.tx == nil {
		return nil, ErrNoFamily
	}
	dstAddr := ms.peer
	if v6 && sc.Interface != "" && dstAddr.IsLinkLocalUnicast() {
		dstAddr = dstAddr.WithZone(sc.Interface)
	}
	ms.dst = netip.AddrPortFrom(dstAddr, port)
	local := sc.Local
	if local.IsValid() {
		local = local.Unmap()
		if local.Is6() != v6 {
			return nil, fmt.Errorf("bfd: local %s and peer %s differ in family", local, peer)
		}
	}
	oifindex := 0
	if !sc.Multihop {
		oifindex = ms.ifindex
	}
	ms.oob = pktinfoOOB(local, oifindex, v6)
	if sc.Multihop {
		hops := sc.MaxHops
		if hops == 0 {
			hops = DefaultMaxHops
		}
		ms.minTTL = 255 - int(hops)
	}
	timers := Timers{DesiredMinTx: sc.DesiredMinTx, RequiredMinRx: sc.RequiredMinRx, DetectMult: sc.DetectMult}

	var err error
	if derr := m.do(ctx, func() {
		if m.byPeer[ms.peer] != nil {
			err = ErrExists
			return
		}
		now := time.Now()
		ms.s = NewSession(m.newDiscr(), timers, now, nil)
		if sc.AdminDown {
			ms.s.SetAdminDown(true, now)
		}
		m.byPeer[ms.peer] = ms
		m.byDiscr[ms.s.LocalDiscriminator()] = ms
		m.log.Info("bfd session added", "peer", ms.peer, "local", sc.Local, "multihop", sc.Multihop,
			"discr", ms.s.LocalDiscriminator())
	}); derr != nil {
		return nil, derr
	}
	if err != nil {
		return nil, err
	}
	return &Handle{m: m, peer: ms.peer}, nil
}

func (m *Manager) newDiscr() uint32 {
	for {
		d := rand.Uint32()
		if d != 0 && m.byDiscr[d] == nil {
			return d
		}
	}
}

// Remove deletes the session for peer. It first sends one AdminDown packet
// (diag 7) so the peer goes Down without waiting for its detection time
// and knows it is not a failure (RFC 5880 6.8.16, RFC 5882 3.2).
// OnStateChange sees the change to AdminDown.
func (m *Manager) Remove(ctx context.Context, peer netip.Addr) error {
	peer = peer.Unmap().WithZone("")
	var found bool
	err := m.do(ctx, func() {
		ms := m.byPeer[peer]
		if ms == nil {
			return
		}
		found = true
		now := time.Now()
		m.report(ms, ms.s.SetAdminDown(true, now), now)
		m.service(ms, now)
		delete(m.byPeer, peer)
		delete(m.byDiscr, ms.s.LocalDiscriminator())
		m.log.Info("bfd session removed", "peer", peer)
	})
	if err == nil && !found {
		err = ErrNoSession
	}
	return err
}

// SetAdminDown sets or clears AdminDown on the session for peer.
func (m *Manager) SetAdminDown(ctx context.Context, peer netip.Addr, down bool) error {
	peer = peer.Unmap().WithZone("")
	var found bool
	err := m.do(ctx, func() {
		if ms := m.byPeer[peer]; ms != nil {
			found = true
			now := time.Now()
			m.report(ms, ms.s.SetAdminDown(down, now), now)
		}
	})
	if err == nil && !found {
		err = ErrNoSession
	}
	return err
}

// Sessions returns a snapshot of every session, sorted by nothing in
// particular. It returns nil when Run is not running.
func (m *Manager) Sessions() []SessionStatus {
	if !m.started.Load() {
		return nil
	}
	var out []SessionStatus
	_ = m.do(context.Background(), func() {
		out = make([]SessionStatus, 0, len(m.byPeer))
		for _, ms := range m.byPeer {
			out = append(out, ms.status())
		}
	})
	return out
}

// Run runs the protocol until ctx is done or Close is called, then sends
// AdminDown to every peer and closes the sockets. It returns nil on a
// requested stop. Run may be called only once.
func (m *Manager) Run(ctx context.Context) error {
	if !m.started.CompareAndSwap(false, true) {
		return errors.New("bfd: Run called twice")
	}
	defer close(m.done)
	select {
	case <-m.stop:
		m.closeSockets()
		return nil
	default:
	}

	var wg sync.WaitGroup
	for _, l := range m.listeners {
		wg.Go(func() { m.readLoop(l) })
	}
	notesDone := make(chan struct{})
	notesStop := make(chan struct{})
	go func() {
		defer close(notesDone)
		m.notes.run(notesStop, m.cfg.OnStateChange)
	}()
	defer func() {
		close(m.quit)
		m.closeSockets()
		wg.Wait()
		close(notesStop)
		<-notesDone
	}()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			m.shutdown()
			return nil
		case <-m.stop:
			m.shutdown()
			return nil
		case rx := <-m.rxCh:
			m.receive(&rx, time.Now())
		case f := <-m.cmdCh:
			f()
		case <-timer.C:
		}
		now := time.Now()
		var next time.Time
		for _, ms := range m.byPeer {
			if d := ms.damp.deadline(); !d.IsZero() {
				if !d.After(now) {
					m.releaseDamped(ms, now)
				} else if next.IsZero() || d.Before(next) {
					next = d
				}
			}
			d := ms.s.NextDeadline()
			if d.IsZero() {
				continue
			}
			if !d.After(now) {
				m.service(ms, now)
				d = ms.s.NextDeadline()
			}
			if !d.IsZero() && (next.IsZero() || d.Before(next)) {
				next = d
			}
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(now), 0)
		}
		timer.Reset(wait)
	}
}

// shutdown tells every peer we are going AdminDown, without notifying.
func (m *Manager) shutdown() {
	now := time.Now()
	for _, ms := range m.byPeer {
		if ms.s.State() == StateAdminDown {
			continue
		}
		ms.s.SetAdminDown(true, now)
		m.service(ms, now)
	}
}

// service runs the session's timers and sends what is due.
func (m *Manager) service(ms *msession, now time.Time) {
	var tr Transition
	m.outPkts, tr = ms.s.Tick(now, m.outPkts[:0])
	m.report(ms, tr, now)
	for i := range m.outPkts {
		m.txBuf = m.outPkts[i].AppendEncode(m.txBuf[:0])
		if _, _, err := ms.tx.WriteMsgUDPAddrPort(m.txBuf, ms.oob, ms.dst); err != nil {
			ms.counters.TxErrors++
			m.cnt.txErr.Add(1)
			if ms.counters.TxErrors == 1 || ms.counters.TxErrors%100 == 0 {
				m.log.Debug("bfd send failed", "peer", ms.peer, "err", err, "errors", ms.counters.TxErrors)
			}
			continue
		}
		ms.counters.TxPackets++
		m.cnt.tx.Add(1)
	}
}

func (m *Manager) report(ms *msession, tr Transition, now time.Time) {
	if !tr.Changed() {
		return
	}
	ms.counters.StateChanges++
	m.cnt.stateChanges.Add(1)
	if tr.New == StateUp {
		ms.counters.Up++
		m.cnt.up.Add(1)
	} else if tr.Old == StateUp {
		ms.counters.Down++
		m.cnt.down.Add(1)
	}
	info := ms.s.Info()
	lvl := slog.LevelInfo
	if tr.Old == StateUp {
		lvl = slog.LevelWarn
	}
	ms.logs.log(m.log, now, lvl, "bfd session state changed", "peer", ms.peer,
		"state", tr.New, "old", tr.Old, "diag", tr.Diag, "remote_state", info.RemoteState,
		"remote_diag", info.RemoteDiag)
	c := StateChange{
		Peer: ms.peer, Local: ms.cfg.Local, Multihop: ms.cfg.Multihop,
		Old: tr.Old, New: tr.New, Diag: tr.Diag,
		RemoteState: info.RemoteState, RemoteDiag: info.RemoteDiag, At: now, DetectTime: info.DetectTime,
	}
	wasDamped := ms.damp.damped(now)
	if c.Failed() && ms.damp.failure(now, m.cfg.DampHold) {
		ms.counters.Damped++
		if !wasDamped { // once per hold, whatever the state-change budget
			m.log.Warn("bfd session flapping: holding its Up from BGP", "peer", ms.peer,
				"flaps", len(ms.damp.flaps), "window", DampWindow, "until", ms.damp.until.Format(time.RFC3339Nano))
		}
	}
	switch d := &ms.damp; {
	case d.heldUp:
		// The clients never saw this Up: its end is no news to them.
		if tr.Old == StateUp {
			d.heldUp = false
		}
		return
	case tr.New == StateUp && d.damped(now):
		d.heldUp, d.heldFrom = true, tr.Old
		return
	}
	m.notes.push(c)
}

// releaseDamped ends a hold that kept an Up from the clients, and tells
// them about it if the session is still Up.
func (m *Manager) releaseDamped(ms *msession, now time.Time) {
	ms.damp.heldUp = false
	if ms.s.State() != StateUp {
		return
	}
	info := ms.s.Info()
	m.log.Info("bfd session stable again: releasing its Up to BGP", "peer", ms.peer)
	m.notes.push(StateChange{
		Peer: ms.peer, Local: ms.cfg.Local, Multihop: ms.cfg.Multihop,
		Old: ms.damp.heldFrom, New: StateUp, Diag: info.LocalDiag,
		RemoteState: info.RemoteState, RemoteDiag: info.RemoteDiag, At: now, DetectTime: info.DetectTime,
	})
}

// receive demultiplexes a decoded packet (RFC 5880 6.8.6, RFC 5881 3) and
// feeds it to its session.
func (m *Manager) receive(rx *rxPacket, now time.Time) {
	var ms *msession
	src := rx.src.Addr().Unmap().WithZone("")
	if rx.pkt.YourDiscriminator != 0 {
		ms = m.byDiscr[rx.pkt.YourDiscriminator]
	} else {
		ms = m.byPeer[src]
	}
	if ms == nil || ms.peer != src || ms.cfg.Multihop != rx.multihop ||
		(ms.ifindex != 0 && !ms.cfg.Multihop && rx.meta.ifindex != ms.ifindex) {
		m.cnt.unknown.Add(1)
		return
	}
	if ms.cfg.Multihop && rx.meta.ttl < ms.minTTL {
		m.cnt.ttl.Add(1)
		return
	}
	ms.counters.RxPackets++
	m.cnt.rx.Add(1)
	m.report(ms, ms.s.Receive(&rx.pkt, now), now)
	m.service(ms, now)
}

// readLoop reads one listener until it is closed. It checks the single-hop
// TTL (RFC 5881 5) and decodes; the session lookup is left to Run.
func (m *Manager) readLoop(l listener) {
	buf := make([]byte, 512)
	oob := make([]byte, oobSpace)
	var rx rxPacket
	for {
		n, oobn, _, src, err := l.c.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			m.log.Warn("bfd read failed", "err", err)
			select {
			case <-m.quit:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		rx.meta = parseOOB(oob[:oobn])
		if !l.multihop && rx.meta.ttl != 255 {
			m.cnt.ttl.Add(1)
			continue
		}
		if err := rx.pkt.Decode(buf[:n]); err != nil {
			if errors.Is(err, ErrAuth) {
				m.cnt.auth.Add(1)
			} else {
				m.cnt.malformed.Add(1)
			}
			continue
		}
		rx.src, rx.multihop = src, l.multihop
		select {
		case m.rxCh <- rx:
		case <-m.quit:
			return
		}
	}
}

// notifier queues state changes for delivery outside the owning goroutine.
type notifier struct {
	mu   sync.Mutex
	q    []StateChange
	wake chan struct{}
}

func (n *notifier) push(c StateChange) {
	n.mu.Lock()
	n.q = append(n.q, c)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// run delivers queued changes in order until stop is closed, then delivers
// what is left.
func (n *notifier) run(stop <-chan struct{}, fn func(StateChange)) {
	for {
		var stopping bool
		select {
		case <-n.wake:
		case <-stop:
			stopping = true
		}
		n.mu.Lock()
		batch := n.q
		n.q = nil
		n.mu.Unlock()
		if fn != nil {
			for _, c := range batch {
				fn(c)
			}
		}
		if stopping {
			return
		}
	}
}
