package bfd

import (
	"math/rand/v2"
	"time"
)

// SlowTxInterval is the floor for bfd.DesiredMinTxInterval while a session
// is not Up (RFC 5880 6.8.3).
const SlowTxInterval = time.Second

// Defaults: 300 ms x 3, i.e. a failure is detected in at most 900 ms. For
// sub-second failover on a quiet link, 100 ms x 3 (<= 300 ms) is common and
// is what FRR's and BIRD's "fast" profiles use.
const (
	DefaultDesiredMinTx  = 300 * time.Millisecond
	DefaultRequiredMinRx = 300 * time.Millisecond
	DefaultDetectMult    = 3
)

// A peer's timers are taken as they come only up to these bounds. RFC 5880
// lets a peer ask for intervals up to 71 minutes and a multiplier of 255,
// which made a crafted packet set a 121-hour detection time: a peer that
// then goes silent would be believed Up for days. Above MaxRemoteInterval
// the peer's interval counts as MaxRemoteInterval, and the detection time
// never exceeds MaxDetectTime: a peer that really sends that slowly is
// declared down, which is the safe side for a route.
const (
	MaxRemoteInterval = 10 * time.Second
	MaxDetectTime     = 30 * time.Second
)

// Timers are the locally configured BFD parameters.
type Timers struct {
	DesiredMinTx  time.Duration // bfd.DesiredMinTxInterval once Up
	RequiredMinRx time.Duration // bfd.RequiredMinRxInterval; 0 asks the peer not to send
	DetectMult    uint8         // bfd.DetectMult
}

func (t Timers) withDefaults() Timers {
	if t.DesiredMinTx <= 0 {
		t.DesiredMinTx = DefaultDesiredMinTx
	}
	if t.RequiredMinRx <= 0 {
		t.RequiredMinRx = DefaultRequiredMinRx
	}
	if t.DetectMult == 0 {
		t.DetectMult = DefaultDetectMult
	}
	return t
}

// Transition reports the state change caused by one input, if any.
type Transition struct {
	Old, New State
	Diag     Diag // bfd.LocalDiag after the change
}

// Changed reports whether the session changed state.
func (t Transition) Changed() bool { return t.Old != t.New }

// SessionInfo is a snapshot of the protocol variables of a Session.
type SessionInfo struct {
	State            State
	RemoteState      State
	LocalDiag        Diag
	RemoteDiag       Diag
	LocalDiscr       uint32
	RemoteDiscr      uint32
	DesiredMinTx     time.Duration // advertised bfd.DesiredMinTxInterval
	RequiredMinRx    time.Duration // advertised bfd.RequiredMinRxInterval
	DetectMult       uint8
	RemoteDesiredTx  time.Duration
	RemoteMinRx      time.Duration // bfd.RemoteMinRxInterval
	RemoteDetectMult uint8
	TxInterval       time.Duration // negotiated, before jitter
	DetectTime       time.Duration // 0 until a packet was received
	PollActive       bool
	Since            time.Time // time of the last state change
	LastRx           time.Time
}

// Session is the RFC 5880 state machine of one BFD session in asynchronous
// mode. It does no I/O and reads no clock: every input carries the current
// time and outputs are packets to send plus the next deadline. It is not
// safe for concurrent use.
type Session struct {
	cfg        Timers
	localDiscr uint32
	rnd        func() float64

	state       State
	remoteState State
	remoteDiscr uint32
	localDiag   Diag
	remoteDiag  Diag

	// Advertised values (bfd.DesiredMinTxInterval, bfd.RequiredMinRxInterval)
	// and the values in effect for our transmit interval and for the
	// detection time. They differ only during a Poll Sequence (6.8.3).
	advTx, advRx time.Duration
	useTx, useRx time.Duration

	remoteMinRx      time.Duration // bfd.RemoteMinRxInterval
	remoteDesiredTx  time.Duration
	remoteDetectMult uint8

	pollActive bool
	sendFinal  bool
	sendNow    bool
	pendingAt  time.Time

	nextTx   time.Time
	txTokens float64   // packets that may go out of the periodic schedule now: see allowTx
	txRefill time.Time // when txTokens was last brought up to date
	forceTx  bool      // a local AdminDown goes out at once, whatever the bound
	detectAt time.Time
	lastRx   time.Time
	since    time.Time
}

// NewSession returns a session in state Down that will send its first
// packet at now. localDiscr must be non-zero and unique among the local
// sessions. rnd returns values in [0,1) for jitter; nil uses math/rand/v2.
func NewSession(localDiscr uint32, t Timers, now time.Time, rnd func() float64) *Session {
	if rnd == nil {
		rnd = rand.Float64
	}
	s := &Session{
		cfg:         t.withDefaults(),
		localDiscr:  localDiscr,
		rnd:         rnd,
		state:       StateDown,
		remoteState: StateDown,
		remoteMinRx: time.Microsecond, // 6.8.1: initialized to 1
		since:       now,
	}
	s.advTx, s.advRx = s.targetTimers()
	s.useTx, s.useRx = s.advTx, s.advRx
	s.nextTx = now
	return s
}

// State returns bfd.SessionState.
func (s *Session) State() State { return s.state }

// LocalDiscriminator returns bfd.LocalDiscr.
func (s *Session) LocalDiscriminator() uint32 { return s.localDiscr }

// Info returns a snapshot of the session variables.
func (s *Session) Info() SessionInfo {
	return SessionInfo{
		State:            s.state,
		RemoteState:      s.remoteState,
		LocalDiag:        s.localDiag,
		RemoteDiag:       s.remoteDiag,
		LocalDiscr:       s.localDiscr,
		RemoteDiscr:      s.remoteDiscr,
		DesiredMinTx:     s.advTx,
		RequiredMinRx:    s.advRx,
		DetectMult:       s.cfg.DetectMult,
		RemoteDesiredTx:  s.remoteDesiredTx,
		RemoteMinRx:      s.remoteMinRx,
		RemoteDetectMult: s.remoteDetectMult,
		TxInterval:       s.txInterval(),
		DetectTime:       s.detectTime(),
		PollActive:       s.pollActive,
		Since:            s.since,
		LastRx:           s.lastRx,
	}
}

// targetTimers returns what bfd.DesiredMinTxInterval and
// bfd.RequiredMinRxInterval should be in the current state: the desired
// transmit interval is at least one second while not Up (6.8.3).
func (s *Session) targetTimers() (tx, rx time.Duration) {
	tx, rx = s.cfg.DesiredMinTx, s.cfg.RequiredMinRx
	if s.state != StateUp && tx < SlowTxInterval {
		tx = SlowTxInterval
	}
	return tx, rx
}

// txInterval is the negotiated transmit interval before jitter (6.8.2,
// 6.8.7): the greater of bfd.DesiredMinTxInterval and
// bfd.RemoteMinRxInterval. Zero means no periodic transmission.
func (s *Session) txInterval() time.Duration {
	if s.remoteMinRx == 0 {
		return 0
	}
	return max(s.useTx, s.remoteMinRx)
}

// detectTime is the asynchronous mode detection time (6.8.4): the remote
// Detect Mult times the greater of bfd.RequiredMinRxInterval and the last
// received Desired Min TX Interval.
func (s *Session) detectTime() time.Duration {
	if s.remoteDetectMult == 0 {
		return 0
	}
	return min(time.Duration(s.remoteDetectMult)*max(s.useRx, s.remoteDesiredTx), MaxDetectTime)
}

// jitter applies 6.8.7: the interval is reduced by a random 0-25%, or
// 10-25% when bfd.DetectMult is 1.
func (s *Session) jitter(d time.Duration) time.Duration {
	r := s.rnd()
	if s.cfg.DetectMult == 1 {
		return time.Duration(float64(d) * (0.75 + 0.15*r))
	}
	return time.Duration(float64(d) * (0.75 + 0.25*r))
}

// reconcileTimers moves the advertised intervals to their targets. While
// Up this starts a Poll Sequence, and an increased transmit interval or a
// reduced receive interval only takes effect when it ends (6.8.3).
func (s *Session) reconcileTimers(now time.Time) {
	tx, rx := s.targetTimers()
	if tx == s.advTx && rx == s.advRx {
		return
	}
	if s.state == StateUp {
		s.pollActive = true
		if tx < s.useTx {
			s.useTx = tx
		}
		if rx > s.useRx {
			s.useRx = rx
		}
		s.queue(now)
	} else {
		s.useTx, s.useRx = tx, rx
	}
	s.advTx, s.advRx = tx, rx
	s.rescheduleTx(now)
}

// rescheduleTx pulls the next periodic transmission in when the interval
// got shorter, and schedules one when periodic transmission resumes.
func (s *Session) rescheduleTx(now time.Time) {
	iv := s.txInterval()
	if iv == 0 {
		s.nextTx = time.Time{}
		return
	}
	next := now.Add(s.jitter(iv))
	if s.nextTx.IsZero() || next.Before(s.nextTx) {
		s.nextTx = next
	}
}

func (s *Session) queue(now time.Time) {
	if !s.sendNow && !s.sendFinal {
		s.pendingAt = now
	}
	s.sendNow = true
}

func (s *Session) setState(st State, diag Diag, now time.Time) {
	if st == s.state {
		return
	}
	s.state = st
	s.localDiag = diag
	s.since = now
	if st != StateUp {
		// A Poll Sequence only matters while Up; leaving Up also drops
		// the transmit rate to 1/s (6.8.3), which needs no poll.
		s.pollActive = false
	}
	s.queue(now)
	s.reconcileTimers(now)
}

// Receive processes a control packet that passed Decode's validation and
// was demultiplexed to this session (RFC 5880 6.8.6). It returns the state
// change, if any. Packets whose Your Discriminator is neither zero nor ours
// are ignored.
func (s *Session) Receive(p *Packet, now time.Time) Transition {
	tr := Transition{Old: s.state, New: s.state, Diag: s.localDiag}
	if p.YourDiscriminator != 0 && p.YourDiscriminator != s.localDiscr {
		return tr
	}
	s.remoteDiscr = p.MyDiscriminator
	s.remoteState = p.State
	s.remoteDiag = p.Diag
	s.remoteMinRx = min(time.Duration(p.RequiredMinRxInterval)*time.Microsecond, MaxRemoteInterval)
	s.remoteDesiredTx = min(time.Duration(p.DesiredMinTxInterval)*time.Microsecond, MaxRemoteInterval)
	s.remoteDetectMult = p.DetectMult
	if p.Final && s.pollActive {
		// 6.5: the Final bit terminates the Poll Sequence; the new
		// intervals now apply (6.8.3).
		s.pollActive = false
		s.useTx, s.useRx = s.advTx, s.advRx
	}
	s.lastRx = now
	// "If a period of a Detection Time passes without the receipt of a
	// valid [...] packet" (6.8.1, 6.8.4): the timer runs in every state
	// so that bfd.RemoteDiscr is cleared, but only Init/Up go Down.
	s.detectAt = now.Add(s.detectTime())

	if s.state == StateAdminDown {
		s.rescheduleTx(now)
		return tr
	}
	switch {
	case p.State == StateAdminDown:
		if s.state != StateDown {
			s.setState(StateDown, DiagNeighborSignaledDown, now)
		}
	case s.state == StateDown:
		switch p.State {
		case StateDown:
			s.setState(StateInit, s.localDiag, now)
		case StateInit:
			s.setState(StateUp, DiagNone, now)
		}
	case s.state == StateInit:
		if p.State == StateInit || p.State == StateUp {
			s.setState(StateUp, DiagNone, now)
		}
	default: // Up
		if p.State == StateDown {
			s.setState(StateDown, DiagNeighborSignaledDown, now)
		}
	}
	if p.Poll {
		// Answer with F "as soon as practicable, without respect to the
		// transmission timer" (6.8.7).
		if !s.sendNow && !s.sendFinal {
			s.pendingAt = now
		}
		s.sendFinal = true
	}
	s.rescheduleTx(now)
	tr.New, tr.Diag = s.state, s.localDiag
	return tr
}

// Tick advances the session to now: it expires the detection timer and
// appends the packets due (a Final answer, a packet after a state change, a
// periodic packet) to out, which it returns. Call it at NextDeadline.
func (s *Session) Tick(now time.Time, out []Packet) ([]Packet, Transition) {
	tr := Transition{Old: s.state, New: s.state, Diag: s.localDiag}
	if !s.detectAt.IsZero() && !now.Before(s.detectAt) {
		s.detectAt = time.Time{}
		s.remoteDiscr = 0
		s.remoteState = StateDown
		s.remoteDetectMult = 0
		s.remoteMinRx = time.Microsecond
		if s.state == StateInit || s.state == StateUp {
			s.setState(StateDown, DiagControlDetectionTimeExpired, now)
		}
		s.rescheduleTx(now)
	}
	if s.sendFinal && (s.forceTx || s.allowTx(now, s.finalGap())) {
		s.sendFinal = false
		out = append(out, s.packet(false, true))
	}
	periodic := !s.nextTx.IsZero() && !now.Before(s.nextTx)
	if periodic || s.forceTx || (s.sendNow && s.allowTx(now, s.txGap())) {
		s.sendNow, s.forceTx = false, false
		out = append(out, s.packet(s.pollActive, false))
		if iv := s.txInterval(); iv > 0 {
			s.nextTx = now.Add(s.jitter(iv))
		} else {
			s.nextTx = time.Time{}
		}
	}
	tr.New, tr.Diag = s.state, s.localDiag
	return out, tr
}

// Packets out of the periodic schedule (a state change, a Poll, a Final)
// are bounded by a token bucket: a burst of txBurst, then one per gap, 3/4
// of the interval in effect. RFC 5880 6.8.7: "A system MUST NOT transmit
// BFD Control packets at an interval less than the larger of
// bfd.DesiredMinTxInterval and bfd.RemoteMinRxInterval, less applied
// jitter"; the burst keeps a three-way handshake and a Poll Sequence as
// fast as before. Without the bound every state change went out at once:
// forged packets (a Down then an Init, 11,000 flaps a second, from the
// peer's address with its discriminators) made us send 12,000 packets a
// second to the real peer, each with our new state, which flapped its
// session too (FRR: 7,000 flaps in 5 s) and with it the peer's BGP
// session. Bounded, the peer sees at most a few of our states per
// interval, the latest ones. Periodic packets are neither held back nor
// counted: they are spaced by the interval already, and the peer's
// detection time depends on them.
const txBurst = 3

// refillTx brings the bucket up to date at now.
func (s *Session) refillTx(now time.Time, gap time.Duration) {
	if s.txRefill.IsZero() {
		s.txTokens = txBurst
	} else if d := now.Sub(s.txRefill); d > 0 && gap > 0 {
		s.txTokens = min(s.txTokens+float64(d)/float64(gap), txBurst)
	} else if gap <= 0 {
		s.txTokens = txBurst
	}
	s.txRefill = now
}

// allowTx takes a token for a packet out of schedule, if one is left.
func (s *Session) allowTx(now time.Time, gap time.Duration) bool {
	s.refillTx(now, gap)
	if s.txTokens < 1 {
		return false
	}
	s.txTokens--
	return true
}

// txDeadline is when an out-of-schedule packet queued at at may go.
func (s *Session) txDeadline(at time.Time, gap time.Duration) time.Time {
	if s.txRefill.IsZero() || s.txTokens >= 1 {
		return at
	}
	return later(at, s.txRefill.Add(time.Duration((1-s.txTokens)*float64(gap))+1))
}

// txGap is 3/4 of the transmit interval in effect (the interval less the
// most jitter), or of bfd.DesiredMinTxInterval while the peer asks for no
// periodic packets.
func (s *Session) txGap() time.Duration {
	iv := s.txInterval()
	if iv == 0 {
		iv = s.useTx
	}
	return iv * 3 / 4
}

// finalGap bounds Finals. 6.8.7 exempts them from the transmission timer
// but lets a system rate-limit them, provided the advertised Desired Min
// TX Interval is at least the interval imposed; unbounded, a flood of
// forged Polls would have us answer at its rate.
func (s *Session) finalGap() time.Duration {
	return min(s.txGap(), s.advTx*3/4)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (s *Session) packet(poll, final bool) Packet {
	return Packet{
		Version:               Version,
		Diag:                  s.localDiag,
		State:                 s.state,
		Poll:                  poll,
		Final:                 final,
		DetectMult:            s.cfg.DetectMult,
		Length:                HeaderLen,
		MyDiscriminator:       s.localDiscr,
		YourDiscriminator:     s.remoteDiscr,
		DesiredMinTxInterval:  uint32(s.advTx / time.Microsecond),
		RequiredMinRxInterval: uint32(s.advRx / time.Microsecond),
	}
}

// NextDeadline returns when Tick must next be called; the zero time means
// never (no periodic transmission and no detection timer).
func (s *Session) NextDeadline() time.Time {
	var d time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	switch {
	case s.forceTx:
		earliest(s.pendingAt)
	case s.sendFinal:
		earliest(s.txDeadline(s.pendingAt, s.finalGap()))
	}
	if s.sendNow {
		earliest(s.txDeadline(s.pendingAt, s.txGap()))
	}
	earliest(s.nextTx)
	earliest(s.detectAt)
	return d
}

// SetTimers changes the configured intervals. While Up the change is
// negotiated with a Poll Sequence (6.8.3).
func (s *Session) SetTimers(t Timers, now time.Time) {
	s.cfg = t.withDefaults()
	s.reconcileTimers(now)
	s.queue(now)
}

// SetAdminDown moves the session to AdminDown with diag 7 (6.8.16), or
// back to Down. While AdminDown the session keeps sending packets at the
// slow rate so the peer learns why, and ignores received packets.
func (s *Session) SetAdminDown(down bool, now time.Time) Transition {
	tr := Transition{Old: s.state, New: s.state, Diag: s.localDiag}
	switch {
	case down && s.state != StateAdminDown:
		s.setState(StateAdminDown, DiagAdministrativelyDown, now)
		s.detectAt = time.Time{}
		// Local and final (Remove, shutdown): the peer must learn it now.
		s.forceTx = true
	case !down && s.state == StateAdminDown:
		s.setState(StateDown, DiagNone, now)
	}
	tr.New, tr.Diag = s.state, s.localDiag
	return tr
}
