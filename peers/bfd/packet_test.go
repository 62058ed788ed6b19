package bfd

import (
	"encoding/hex"
	"errors"
	"testing"
	"time"
)

func validPacket() Packet {
	return Packet{
		Version: 1, Diag: DiagNone, State: StateUp, DetectMult: 3, Length: 24,
		MyDiscriminator: 0x11223344, YourDiscriminator: 0x55667788,
		DesiredMinTxInterval: 100000, RequiredMinRxInterval: 100000,
	}
}

// Wire bytes captured by hand from RFC 5880 4.1 layout.
func TestPacketEncodeLayout(t *testing.T) {
	p := validPacket()
	p.Poll = true
	p.Diag = DiagNeighborSignaledDown
	got := hex.EncodeToString(p.AppendEncode(nil))
	want := "23" + "e0" + "03" + "18" + "11223344" + "55667788" + "000186a0" + "000186a0" + "00000000"
	if got != want {
		t.Fatalf("encode = %s, want %s", got, want)
	}
}

func TestPacketDecodeValidation(t *testing.T) {
	enc := func(mod func(p *Packet), raw func(b []byte) []byte) []byte {
		p := validPacket()
		if mod != nil {
			mod(&p)
		}
		b := p.AppendEncode(nil)
		if raw != nil {
			b = raw(b)
		}
		return b
	}
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"valid", enc(nil, nil), nil},
		{"valid longer buffer than length", enc(nil, func(b []byte) []byte { return append(b, 0, 0) }), nil},
		{"6.8.6 short", enc(nil, func(b []byte) []byte { return b[:23] }), ErrShort},
		{"6.8.6 version 0", enc(nil, func(b []byte) []byte { b[0] &^= 0xe0; return b }), ErrVersion},
		{"6.8.6 version 2", enc(nil, func(b []byte) []byte { b[0] = b[0]&0x1f | 2<<5; return b }), ErrVersion},
		{"6.8.6 length < 24", enc(nil, func(b []byte) []byte { b[3] = 23; return b }), ErrLength},
		{"6.8.6 length > payload", enc(nil, func(b []byte) []byte { b[3] = 25; return b }), ErrLength},
		{"6.8.6 detect mult 0", enc(func(p *Packet) { p.DetectMult = 0 }, nil), ErrDetectMult},
		{"6.8.6 multipoint", enc(func(p *Packet) { p.Multipoint = true }, nil), ErrMultipoint},
		{"6.8.6 my discr 0", enc(func(p *Packet) { p.MyDiscriminator = 0 }, nil), ErrMyDiscr},
		{"6.8.6 your discr 0 in Up", enc(func(p *Packet) { p.YourDiscriminator = 0 }, nil), ErrYourDiscrState},
		{"6.8.6 your discr 0 in Init", enc(func(p *Packet) { p.YourDiscriminator = 0; p.State = StateInit }, nil), ErrYourDiscrState},
		{"6.8.6 your discr 0 in Down ok", enc(func(p *Packet) { p.YourDiscriminator = 0; p.State = StateDown }, nil), nil},
		{"6.8.6 your discr 0 in AdminDown ok", enc(func(p *Packet) { p.YourDiscriminator = 0; p.State = StateAdminDown }, nil), nil},
		{"6.8.6 auth bit, no auth in use", enc(nil, func(b []byte) []byte { b[1] |= 0x04; b[3] = 26; return append(b, 1, 2) }), ErrAuth},
		{"6.8.6 auth bit, length < 26", enc(nil, func(b []byte) []byte { b[1] |= 0x04; return b }), ErrLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Packet
			err := p.Decode(tt.b)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestPacketRoundTrip(t *testing.T) {
	in := validPacket()
	in.Final, in.CPI, in.Demand, in.Diag = true, true, true, DiagPathDown
	in.RequiredMinEchoRxInterval = 50000
	var out Packet
	if err := out.UnmarshalBinary(in.AppendEncode(nil)); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out, in)
	}
}

func TestPacketNoAlloc(t *testing.T) {
	p := validPacket()
	buf := make([]byte, 0, HeaderLen)
	var q Packet
	allocs := testing.AllocsPerRun(100, func() {
		buf = p.AppendEncode(buf[:0])
		if err := q.Decode(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("encode+decode allocates %v times", allocs)
	}
}

func FuzzDecode(f *testing.F) {
	p := validPacket()
	f.Add(p.AppendEncode(nil))
	p.State, p.YourDiscriminator, p.Poll = StateDown, 0, true
	f.Add(p.AppendEncode(nil))
	f.Add([]byte{})
	f.Add(make([]byte, 24))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p1, p2 Packet
		if err := p1.Decode(b); err != nil {
			return
		}
		enc := p1.AppendEncode(nil)
		if len(enc) != HeaderLen {
			t.Fatalf("encoded length %d", len(enc))
		}
		if err := p2.Decode(enc); err != nil {
			t.Fatalf("re-decode of valid packet: %v", err)
		}
		p1.Length = HeaderLen // the only field encode normalizes
		if p1 != p2 {
			t.Fatalf("round trip:\n got %+v\nwant %+v", p2, p1)
		}
	})
}

// FuzzSessionReceive feeds a session a sequence of packets cut from the
// input (HeaderLen bytes each, 10 ms apart, the valid ones only, as the
// Manager does) and checks the bounds a hostile peer must not break: the
// detection time, the transmit interval and the next deadline.
func FuzzSessionReceive(f *testing.F) {
	hostile := validPacket()
	hostile.DesiredMinTxInterval, hostile.RequiredMinRxInterval, hostile.DetectMult = 0xffffffff, 0xffffffff, 255
	var flaps []byte
	for _, st := range []State{StateDown, StateInit, StateDown, StateInit, StateUp, StateAdminDown} {
		p := validPacket()
		p.State, p.YourDiscriminator = st, 1
		flaps = p.AppendEncode(flaps)
	}
	f.Add(hostile.AppendEncode(nil))
	f.Add(flaps)
	f.Add(append(flaps, hostile.AppendEncode(nil)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		now := time.Unix(1000, 0)
		s := NewSession(1, Timers{DesiredMinTx: 50 * time.Millisecond, RequiredMinRx: 50 * time.Millisecond, DetectMult: 3}, now, fixedRand(0.5))
		var out []Packet
		for ; len(b) >= HeaderLen; b = b[HeaderLen:] {
			now = now.Add(10 * time.Millisecond)
			var p Packet
			if p.Decode(b[:HeaderLen]) == nil {
				s.Receive(&p, now)
			}
			out, _ = s.Tick(now, out[:0])
			info := s.Info()
			if info.DetectTime > MaxDetectTime {
				t.Fatalf("detection time %v > %v", info.DetectTime, MaxDetectTime)
			}
			if info.TxInterval > max(MaxRemoteInterval, SlowTxInterval) {
				t.Fatalf("transmit interval %v", info.TxInterval)
			}
			if d := s.NextDeadline(); !d.IsZero() && d.Sub(now) > MaxDetectTime {
				t.Fatalf("next deadline in %v", d.Sub(now))
			}
		}
	})
}
