package bfd

import (
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// fixedRand returns a jitter source that always yields r.
func fixedRand(r float64) func() float64 { return func() float64 { return r } }

type flight struct {
	to int
	at time.Time
	p  Packet
}

type change struct {
	at time.Time
	tr Transition
}

// link wires two pure Sessions back to back with a fake clock and a fixed
// one-way latency. Packets can be dropped while the link is down.
type link struct {
	t       *testing.T
	now     time.Time
	s       [2]*Session
	latency time.Duration
	up      bool
	air     []flight
	changes [2][]change
	sent    [2][]flight // every packet sent, with its send time
}

func newLink(t *testing.T, ta, tb Timers) *link {
	return &link{
		t: t, now: t0, latency: time.Millisecond, up: true,
		s: [2]*Session{
			NewSession(0xa, ta, t0, fixedRand(1)),
			NewSession(0xb, tb, t0, fixedRand(1)),
		},
	}
}

func (l *link) record(i int, tr Transition) {
	if tr.Changed() {
		l.changes[i] = append(l.changes[i], change{l.now, tr})
	}
}

func (l *link) tick(i int) {
	out, tr := l.s[i].Tick(l.now, nil)
	l.record(i, tr)
	for _, p := range out {
		l.sent[i] = append(l.sent[i], flight{to: 1 - i, at: l.now, p: p})
		if l.up {
			l.air = append(l.air, flight{to: 1 - i, at: l.now.Add(l.latency), p: p})
		}
	}
}

// step advances the clock to the next event and processes it. It returns
// false if nothing is scheduled before until.
func (l *link) step(until time.Time) bool {
	next := until
	for i := range l.s {
		if d := l.s[i].NextDeadline(); !d.IsZero() && d.Before(next) {
			next = d
		}
	}
	for _, f := range l.air {
		if f.at.Before(next) {
			next = f.at
		}
	}
	if !next.Before(until) {
		l.now = until
		return false
	}
	l.now = next
	var keep []flight
	for _, f := range l.air {
		if f.at.After(l.now) {
			keep = append(keep, f)
			continue
		}
		// Round trip through the codec, as on the wire.
		var p Packet
		if err := p.Decode(f.p.AppendEncode(nil)); err != nil {
			l.t.Fatalf("session sent invalid packet %+v: %v", f.p, err)
		}
		l.record(f.to, l.s[f.to].Receive(&p, l.now))
	}
	l.air = keep
	for i := range l.s {
		if d := l.s[i].NextDeadline(); !d.IsZero() && !d.After(l.now) {
			l.tick(i)
		}
	}
	return true
}

func (l *link) run(d time.Duration) {
	until := l.now.Add(d)
	for n := 0; l.step(until); n++ {
		if n > 100000 {
			l.t.Fatal("simulation does not progress")
		}
	}
}

func (l *link) states() [2]State { return [2]State{l.s[0].State(), l.s[1].State()} }

func fast() Timers {
	return Timers{DesiredMinTx: 100 * time.Millisecond, RequiredMinRx: 100 * time.Millisecond, DetectMult: 3}
}

// RFC 5880 6.2 / 6.8.6: the three-way handshake takes both sides from Down
// through Init to Up, and both sessions learn the peer's discriminator.
func TestSession_6_2_ThreeWayHandshake(t *testing.T) {
	l := newLink(t, fast(), fast())
	l.run(3 * time.Second)
	if got := l.states(); got != [2]State{StateUp, StateUp} {
		t.Fatalf("states = %v, want Up/Up", got)
	}
	for i := range 2 {
		var seq []State
		for _, c := range l.changes[i] {
			seq = append(seq, c.tr.New)
		}
		if len(seq) != 2 || seq[0] != StateInit || seq[1] != StateUp {
			t.Errorf("side %d went through %v, want [Init Up]", i, seq)
		}
		info := l.s[i].Info()
		if want := l.s[1-i].LocalDiscriminator(); info.RemoteDiscr != want {
			t.Errorf("side %d remote discr = %#x, want %#x", i, info.RemoteDiscr, want)
		}
		if info.LocalDiag != DiagNone {
			t.Errorf("side %d diag = %v, want None once Up", i, info.LocalDiag)
		}
	}
	// Both start together and answer state changes at once: the whole
	// handshake is a few latencies, not several slow intervals.
	if up := l.changes[0][1].at.Sub(t0); up > 10*time.Millisecond {
		t.Errorf("handshake took %v", up)
	}
}

// RFC 5880 6.8.6: the handshake also works when only one side is sending
// at first (the other comes up later).
func TestSession_6_8_6_LateStarter(t *testing.T) {
	l := newLink(t, fast(), fast())
	l.up = false
	l.run(2500 * time.Millisecond)
	l.up = true
	l.run(3 * time.Second)
	if got := l.states(); got != [2]State{StateUp, StateUp} {
		t.Fatalf("states = %v, want Up/Up", got)
	}
}

// RFC 5880 6.8.4: without packets for a Detection Time an Up session goes
// Down with diag 1, and 6.8.1: bfd.RemoteDiscr is reset to zero.
func TestSession_6_8_4_DetectionTimeExpired(t *testing.T) {
	l := newLink(t, fast(), fast())
	l.run(2 * time.Second)
	if got := l.states(); got != [2]State{StateUp, StateUp} {
		t.Fatalf("states = %v", got)
	}
	// Detection time = remote mult 3 * max(100ms, 100ms).
	if dt := l.s[0].Info().DetectTime; dt != 300*time.Millisecond {
		t.Fatalf("detect time = %v, want 300ms", dt)
	}
	cut := l.now
	l.up = false
	l.run(time.Second)
	for i := range 2 {
		c := l.changes[i][len(l.changes[i])-1]
		if c.tr.New != StateDown || c.tr.Diag != DiagControlDetectionTimeExpired {
			t.Fatalf("side %d last change %+v, want Down/ControlDetectionTimeExpired", i, c.tr)
		}
		if took := c.at.Sub(cut); took > 300*time.Millisecond || took < 200*time.Millisecond {
			t.Errorf("side %d detected after %v, want 200-300ms", i, took)
		}
		if rd := l.s[i].Info().RemoteDiscr; rd != 0 {
			t.Errorf("side %d remote discr = %#x after detection timeout, want 0", i, rd)
		}
	}
	// Link back: the sessions recover.
	l.up = true
	l.run(4 * time.Second)
	if got := l.states(); got != [2]State{StateUp, StateUp} {
		t.Fatalf("after recovery states = %v", got)
	}
}

// RFC 5880 6.8.6: "If received state is AdminDown, If bfd.SessionState is
// not Down, Set bfd.LocalDiag to 3, Set bfd.SessionState to Down".
// 6.8.16: the AdminDown side uses diag 7 and ignores received packets.
func TestSession_6_8_6_RemoteAdminDown(t *testing.T) {
	l := newLink(t, fast(), fast())
	l.run(2 * time.Second)
	tr := l.s[1].SetAdminDown(true, l.now)
	if tr.New != StateAdminDown || tr.Diag != DiagAdministrativelyDown {
		t.Fatalf("SetAdminDown = %+v", tr)
	}
	l.run(100 * time.Millisecond)
	last := l.changes[0][len(l.changes[0])-1]
	if last.tr.New != StateDown || last.tr.Diag != DiagNeighborSignaledDown {
		t.Fatalf("side 0 last change %+v, want Down/NeighborSignaledDown", last.tr)
	}
	if last.at.Sub(t0) > 2*time.Second+10*time.Millisecond {
		t.Errorf("AdminDown not signalled at once: %v", last.at.Sub(t0))
	}
	if rs := l.s[0].Info().RemoteState; rs != StateAdminDown {
		t.Errorf("remote state = %v", rs)
	}
	// Stays Down (never Init) while the peer is AdminDown, and the
	// AdminDown side stays AdminDown.
	l.run(5 * time.Second)
	if got := l.states(); got != [2]State{StateDown, StateAdminDown} {
		t.Fatalf("states = %v, want Down/AdminDown", got)
	}
	l.s[1].SetAdminDown(false, l.now)
	l.run(3 * time.Second)
	if got := l.states(); got != [2]State{StateUp, StateUp} {
		t.Fatalf("after clearing AdminDown states = %v", got)
	}
}

// Table of single-packet transitions, straight from the 6.8.6 pseudo code.
func TestSession_6_8_6_TransitionTable(t *testing.T) {
	tests := []struct {
		name     string
		local    State
		received State
		want     State
		diag     Diag
	}{
		{"Down+Down->Init", StateDown, StateDown, StateInit, DiagNone},
		{"Down+Init->Up", StateDown, StateInit, StateUp, DiagNone},
		{"Down+Up stays Down", StateDown, StateUp, StateDown, DiagNone},
		{"Down+AdminDown stays Down", StateDown, StateAdminDown, StateDown, DiagNone},
		{"Init+Down stays Init", StateInit, StateDown, StateInit, DiagNone},
		{"Init+Init->Up", StateInit, StateInit, StateUp, DiagNone},
		{"Init+Up->Up", StateInit, StateUp, StateUp, DiagNone},
		{"Init+AdminDown->Down diag 3", StateInit, StateAdminDown, StateDown, DiagNeighborSignaledDown},
		{"Up+Down->Down diag 3", StateUp, StateDown, StateDown, DiagNeighborSignaledDown},
		{"Up+Init stays Up", StateUp, StateInit, StateUp, DiagNone},
		{"Up+Up stays Up", StateUp, StateUp, StateUp, DiagNone},
		{"Up+AdminDown->Down diag 3", StateUp, StateAdminDown, StateDown, DiagNeighborSignaledDown},
		{"AdminDown ignores Down", StateAdminDown, StateDown, StateAdminDown, DiagAdministrativelyDown},
		{"AdminDown ignores Up", StateAdminDown, StateUp, StateAdminDown, DiagAdministrativelyDown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sessionIn(t, tt.local)
			p := Packet{Version: 1, State: tt.received, DetectMult: 3, MyDiscriminator: 0xb,
				YourDiscriminator: 0xa, DesiredMinTxInterval: 1e6, RequiredMinRxInterval: 1e6, Length: 24}
			if tt.received == StateDown || tt.received == StateAdminDown {
				p.YourDiscriminator = 0
			}
			tr := s.Receive(&p, t0.Add(time.Second))
			if s.State() != tt.want || s.Info().LocalDiag != tt.diag {
				t.Fatalf("state %v diag %v, want %v %v", s.State(), s.Info().LocalDiag, tt.want, tt.diag)
			}
			if tr.Changed() != (tt.local != tt.want) || tr.New != tt.want {
				t.Fatalf("transition %+v", tr)
			}
		})
	}
}

// sessionIn returns a session (discr 0xa) forced into state st with peer
// discr 0xb.
func sessionIn(t *testing.T, st State) *Session {
	t.Helper()
	s := NewSession(0xa, fast(), t0, fixedRand(1))
	recv := func(remote State) {
		p := Packet{Version: 1, State: remote, DetectMult: 3, MyDiscriminator: 0xb,
			YourDiscriminator: 0xa, DesiredMinTxInterval: 1e6, RequiredMinRxInterval: 1e6}
		s.Receive(&p, t0)
	}
	switch st {
	case StateInit:
		recv(StateDown)
	case StateUp:
		recv(StateInit)
	case StateAdminDown:
		s.SetAdminDown(true, t0)
	}
	if s.State() != st {
		t.Fatalf("setup: state %v, want %v", s.State(), st)
	}
	return s
}

// RFC 5880 6.8.6: a packet whose Your Discriminator is not ours is not
// processed by the session (the Manager drops it earlier; see
// TestManagerDropsUnknownDiscriminator).
func TestSession_6_8_6_WrongYourDiscriminatorIgnored(t *testing.T) {
	s := NewSession(0xa, fast(), t0, fixedRand(1))
	p := Packet{Version: 1, State: StateInit, DetectMult: 3, MyDiscriminator: 0xb, YourDiscriminator: 0xc,
		DesiredMinTxInterval: 1e6, RequiredMinRxInterval: 1e6}
	if tr := s.Receive(&p, t0); tr.Changed() || s.Info().RemoteDiscr != 0 {
		t.Fatalf("packet for another discriminator was processed: %+v %+v", tr, s.Info())
	}
}

// RFC 5880 6.8.1 / 6.8.7: our packets carry our discriminator, and Your
// Discriminator is zero until the peer's is known.
func TestSession_6_8_7_Discriminators(t *testing.T) {
	s := NewSession(0xa, fast(), t0, fixedRand(1))
	out, _ := s.Tick(t0, nil)
	if len(out) != 1 || out[0].MyDiscriminator != 0xa || out[0].YourDiscriminator != 0 || out[0].State != StateDown {
		t.Fatalf("first packet %+v", out)
	}
	p := Packet{Version: 1, State: StateDown, DetectMult: 3, MyDiscriminator: 0xb,
		DesiredMinTxInterval: 1e6, RequiredMinRxInterval: 1e6}
	s.Receive(&p, t0.Add(time.Millisecond))
	out, _ = s.Tick(t0.Add(time.Millisecond), nil)
	if len(out) != 1 || out[0].YourDiscriminator != 0xb || out[0].State != StateInit {
		t.Fatalf("packet after state change %+v", out)
	}
}

// RFC 5880 6.8.3: while not Up, bfd.DesiredMinTxInterval is at least one
// second, so packets go out at most once per second even when 100ms is
// configured; 6.8.7 jitter keeps intervals within 75-100%.
func TestSession_6_8_3_SlowTxWhileNotUp(t *testing.T) {
	l := newLink(t, fast(), fast())
	l.up = false
	l.s[0].rnd = rand.Float64
	l.run(10 * time.Second)
	sent := l.sent[0]
	if len(sent) < 10 || len(sent) > 14 {
		t.Fatalf("sent %d packets in 10s while Down, want ~10-13", len(sent))
	}
	for i, f := range sent {
		if f.p.DesiredMinTxInterval != 1e6 {
			t.Fatalf("packet %d advertises Desired Min TX %dµs while Down, want 1000000", i, f.p.DesiredMinTxInterval)
		}
		if i > 0 {
			gap := f.at.Sub(sent[i-1].at)
			if gap < 750*time.Millisecond || gap > time.Second {
				t.Fatalf("gap %d = %v, want 750ms-1s", i, gap)
			}
		}
	}
}

// RFC 5880 6.8.3 / 6.5: going Up lowers Desired Min TX from 1s to the
// configured value with a Poll Sequence; the peer answers P with F, and
// the negotiated TX interval is max(local DesiredMinTx, remote RequiredMinRx)
// (6.8.2).
func TestSession_6_5_PollFinalOnUp(t *testing.T) {
	slowRx := Timers{DesiredMinTx: 100 * time.Millisecond, RequiredMinRx: 250 * time.Millisecond, DetectMult: 3}
	l := newLink(t, fast(), slowRx)
	l.run(3 * time.Second)
	if got := l.states(); got != [2]State{StateUp, StateUp} {
		t.Fatalf("states = %v", got)
	}
	var polls, finals int
	for _, f := range l.sent[0] {
		if f.p.Poll {
			polls++
		}
		if f.p.Poll && f.p.Final {
			t.Fatal("packet with both P and F")
		}
	}
	for _, f := range l.sent[1] {
		if f.p.Final {
			finals++
		}
	}
	if polls == 0 || finals == 0 {
		t.Fatalf("polls=%d finals=%d, want a Poll Sequence", polls, finals)
	}
	for i := range 2 {
		if l.s[i].Info().PollActive {
			t.Errorf("side %d poll still active", i)
		}
	}
	a, b := l.s[0].Info(), l.s[1].Info()
	if a.TxInterval != 250*time.Millisecond {
		t.Errorf("A tx interval = %v, want max(100ms, B's 250ms)", a.TxInterval)
	}
	if b.TxInterval != 100*time.Millisecond {
		t.Errorf("B tx interval = %v, want 100ms", b.TxInterval)
	}
	// 6.8.4: detection time = remote mult * max(local RequiredMinRx, remote DesiredMinTx).
	if b.DetectTime != 3*250*time.Millisecond {
		t.Errorf("B detect time = %v, want 750ms", b.DetectTime)
	}
	if a.DetectTime != 3*100*time.Millisecond {
		t.Errorf("A detect time = %v, want 300ms", a.DetectTime)
	}
}

// RFC 5880 6.8.3: changing timers while Up starts a Poll Sequence; a
// higher transmit interval only takes effect once the Final arrives.
func TestSession_6_8_3_PollFinalOnTimerChange(t *testing.T) {
	l := newLink(t, fast(), fast())
	l.latency = 20 * time.Millisecond
	l.run(3 * time.Second)
	if got := l.states(); got != [2]State{StateUp, StateUp} {
		t.Fatalf("states = %v", got)
	}
	slower := Timers{DesiredMinTx: 500 * time.Millisecond, RequiredMinRx: 500 * time.Millisecond, DetectMult: 3}
	l.s[0].SetTimers(slower, l.now)
	info := l.s[0].Info()
	if !info.PollActive || info.DesiredMinTx != 500*time.Millisecond {
		t.Fatalf("after SetTimers: %+v", info)
	}
	if info.TxInterval != 100*time.Millisecond {
		t.Fatalf("tx interval changed before Final: %v", info.TxInterval)
	}
	out, _ := l.s[0].Tick(l.now, nil)
	if len(out) != 1 || !out[0].Poll || out[0].DesiredMinTxInterval != 500000 {
		t.Fatalf("poll packet %+v", out)
	}
	for _, p := range out {
		l.air = append(l.air, flight{to: 1, at: l.now.Add(l.latency), p: p})
	}
	l.run(200 * time.Millisecond)
	info = l.s[0].Info()
	if info.PollActive || info.TxInterval != 500*time.Millisecond {
		t.Fatalf("after Final: poll=%v tx=%v", info.PollActive, info.TxInterval)
	}
	if b := l.s[1].Info(); b.TxInterval != 500*time.Millisecond || b.DetectTime != 1500*time.Millisecond {
		t.Fatalf("peer tx=%v detect=%v, want 500ms/1.5s", b.TxInterval, b.DetectTime)
	}
	l.run(5 * time.Second)
	if got := l.states(); got != [2]State{StateUp, StateUp} {
		t.Fatalf("states after change = %v (flapped?)", got)
	}
	for i := range 2 {
		if n := len(l.changes[i]); n != 2 {
			t.Errorf("side %d: %d state changes, want 2 (no flap)", i, n)
		}
	}
}

// RFC 5880 6.8.7: a Poll is answered with a Final at once, regardless of
// the transmit timer, and the answer has P clear.
func TestSession_6_8_7_FinalAnsweredImmediately(t *testing.T) {
	s := sessionIn(t, StateUp)
	s.Tick(t0, nil) // drain
	now := t0.Add(10 * time.Millisecond)
	p := Packet{Version: 1, State: StateUp, Poll: true, DetectMult: 3, MyDiscriminator: 0xb,
		YourDiscriminator: 0xa, DesiredMinTxInterval: 1e6, RequiredMinRxInterval: 1e6}
	s.Receive(&p, now)
	if d := s.NextDeadline(); !d.Equal(now) {
		t.Fatalf("deadline %v, want now", d)
	}
	out, _ := s.Tick(now, nil)
	var final bool
	for _, q := range out {
		if q.Final {
			final = true
			if q.Poll {
				t.Fatal("Final packet has P set")
			}
		}
	}
	if !final {
		t.Fatalf("no Final in %+v", out)
	}
}

// RFC 5880 6.8.7: jitter reduces each interval by 0-25%, or by 10-25%
// when bfd.DetectMult is 1.
func TestSession_6_8_7_JitterBounds(t *testing.T) {
	for _, mult := range []uint8{3, 1} {
		lo, hi := 0.75, 1.0
		if mult == 1 {
			hi = 0.90
		}
		s := NewSession(1, Timers{DesiredMinTx: 100 * time.Millisecond, RequiredMinRx: 100 * time.Millisecond, DetectMult: mult}, t0, nil)
		var minR, maxR = 2.0, 0.0
		for range 10000 {
			r := float64(s.jitter(time.Second)) / float64(time.Second)
			if r < lo || r > hi {
				t.Fatalf("mult %d: jittered ratio %v outside [%v,%v]", mult, r, lo, hi)
			}
			minR, maxR = min(minR, r), max(maxR, r)
		}
		if minR > lo+0.01 || maxR < hi-0.01 {
			t.Errorf("mult %d: jitter range [%v,%v] does not cover [%v,%v]", mult, minR, maxR, lo, hi)
		}
	}
}

// RFC 5880 6.8.7: no periodic packets while bfd.RemoteMinRxInterval is 0.
func TestSession_6_8_7_RemoteMinRxZero(t *testing.T) {
	s := NewSession(0xa, fast(), t0, fixedRand(1))
	s.Tick(t0, nil)
	p := Packet{Version: 1, State: StateDown, DetectMult: 3, MyDiscriminator: 0xb,
		DesiredMinTxInterval: 1e6, RequiredMinRxInterval: 0}
	s.Receive(&p, t0.Add(time.Millisecond))
	s.Tick(t0.Add(time.Millisecond), nil) // the state change packet is still sent
	out, _ := s.Tick(t0.Add(2*time.Second), nil)
	if len(out) != 0 {
		t.Fatalf("sent %d periodic packets to a peer asking for none", len(out))
	}
}

// RFC 5880 6.8.4: the Detection Time uses the remote Detect Mult.
func TestSession_6_8_4_RemoteDetectMult(t *testing.T) {
	a := fast()
	b := fast()
	b.DetectMult = 5
	l := newLink(t, a, b)
	l.run(2 * time.Second)
	if dt := l.s[0].Info().DetectTime; dt != 500*time.Millisecond {
		t.Fatalf("A detect time %v, want 5*100ms", dt)
	}
	if dt := l.s[1].Info().DetectTime; dt != 300*time.Millisecond {
		t.Fatalf("B detect time %v, want 3*100ms", dt)
	}
}

func TestSessionNoAllocSteadyState(t *testing.T) {
	l := newLink(t, fast(), fast())
	l.run(2 * time.Second)
	s := l.s[0]
	out := make([]Packet, 0, 4)
	now := l.now
	p := Packet{Version: 1, State: StateUp, DetectMult: 3, MyDiscriminator: 0xb, YourDiscriminator: 0xa,
		DesiredMinTxInterval: 1e5, RequiredMinRxInterval: 1e5}
	allocs := testing.AllocsPerRun(100, func() {
		now = now.Add(50 * time.Millisecond)
		s.Receive(&p, now)
		out, _ = s.Tick(now, out[:0])
	})
	if allocs != 0 {
		t.Fatalf("Receive+Tick allocate %v times", allocs)
	}
}

// TestSessionBoundsRemoteTimers: a peer's advertised timers, however large,
// cannot stretch the detection time past MaxDetectTime nor our transmit
// interval past MaxRemoteInterval (issue: a crafted packet gave 121 h).
func TestSessionBoundsRemoteTimers(t *testing.T) {
	for _, tc := range []struct {
		name               string
		tx, rx             uint32 // microseconds
		mult               uint8
		wantDetect, wantTx time.Duration
	}{
		{"maximum", 0xffffffff, 0xffffffff, 255, MaxDetectTime, MaxRemoteInterval},
		{"slow but bounded", 20_000_000, 20_000_000, 2, 2 * MaxRemoteInterval, MaxRemoteInterval},
		{"ordinary", 300_000, 300_000, 3, 900 * time.Millisecond, time.Second}, // 1 s: not Up yet
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			s := NewSession(1, fast(), now, fixedRand(0))
			s.Receive(&Packet{State: StateDown, MyDiscriminator: 7, DetectMult: tc.mult,
				DesiredMinTxInterval: tc.tx, RequiredMinRxInterval: tc.rx}, now)
			info := s.Info()
			if info.DetectTime != tc.wantDetect || info.TxInterval != tc.wantTx {
				t.Errorf("detect time %v, tx interval %v; want %v, %v", info.DetectTime, info.TxInterval, tc.wantDetect, tc.wantTx)
			}
		})
	}
}

// RFC 5880 6.8.7: packets are not sent closer than the interval in effect
// less jitter, state changes included (a burst of txBurst aside). Forged
// packets that flap the session (a Down then an Init, 10,000 pairs a
// second, with the peer's discriminators as the e2e TestBFDFlood sends)
// once made us send one packet per state change to the real peer, which
// flapped its session too; the peer must see a bounded number. A Poll
// flood is answered at a bounded rate too, and a local AdminDown still
// goes out at once.
func TestSession_6_8_7_FloodDoesNotDriveOurTransmitRate(t *testing.T) {
	for _, tc := range []struct {
		name string
		poll bool
	}{{"flaps", false}, {"flaps with Poll", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s := sessionIn(t, StateUp)
			peer := func(st State, mult uint8, us uint32) Packet {
				return Packet{Version: 1, State: st, Poll: tc.poll, DetectMult: mult, MyDiscriminator: 0xb,
					YourDiscriminator: 0xa, DesiredMinTxInterval: us, RequiredMinRxInterval: us}
			}
			// The peer's real timers: 100 ms, so we send every 75-100 ms when Up.
			down, initP, slow := peer(StateDown, 3, 1e5), peer(StateInit, 3, 1e5), peer(StateInit, 255, 0xffffffff)
			var out []Packet
			sent, changes := 0, 0
			now := t0
			const flood = time.Second
			for i := 0; now.Before(t0.Add(flood)); i++ {
				now = now.Add(100 * time.Microsecond)
				p2 := initP
				if i%7 == 3 {
					p2 = slow
				}
				for _, p := range []*Packet{&down, &p2} {
					if tr := s.Receive(p, now); tr.Changed() {
						changes++
					}
					out, _ = s.Tick(now, out[:0])
					sent += len(out)
				}
			}
			// At most one periodic packet per 75 ms, plus the burst, plus
			// one out-of-schedule packet per 75 ms.
			limit := 2*int(flood/(75*time.Millisecond)) + txBurst + 1
			t.Logf("%d state changes, %d packets sent in %v (limit %d)", changes, sent, flood, limit)
			if changes < 1000 {
				t.Fatalf("the flood made only %d state changes: not a flood", changes)
			}
			if sent > limit {
				t.Errorf("sent %d packets in %v of flood, want at most %d", sent, flood, limit)
			}
			s.SetAdminDown(true, now)
			if d := s.NextDeadline(); d.After(now) {
				t.Errorf("AdminDown after the flood: deadline in %v, want now", d.Sub(now))
			}
			out, _ = s.Tick(now, out[:0])
			if len(out) == 0 || out[len(out)-1].State != StateAdminDown {
				t.Errorf("AdminDown after the flood not sent at once: %+v", out)
			}
		})
	}
}
