// Package bfd implements Bidirectional Forwarding Detection: RFC 5880
// asynchronous mode, RFC 5881 single hop (IPv4/IPv6) and RFC 5883 multihop.
//
// The package has two layers:
//
//   - Packet and Session are pure: Session is the RFC 5880 state machine with
//     time passed in by the caller, so it can be driven by tests without
//     sockets or real clocks.
//   - Manager owns the sockets and all sessions in one goroutine and reports
//     state changes through a callback that never blocks it.
package bfd

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Version is the only BFD protocol version (RFC 5880 4.1).
const Version = 1

// HeaderLen is the length of the mandatory section of a control packet.
const HeaderLen = 24

// State is a BFD session state (RFC 5880 4.1, "Sta").
type State uint8

// Session states, with their wire values.
const (
	StateAdminDown State = 0
	StateDown      State = 1
	StateInit      State = 2
	StateUp        State = 3
)

func (s State) String() string {
	switch s {
	case StateAdminDown:
		return "AdminDown"
	case StateDown:
		return "Down"
	case StateInit:
		return "Init"
	case StateUp:
		return "Up"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Diag is a diagnostic code (RFC 5880 4.1, "Diag").
type Diag uint8

// Diagnostic codes.
const (
	DiagNone                        Diag = 0
	DiagControlDetectionTimeExpired Diag = 1
	DiagEchoFunctionFailed          Diag = 2
	DiagNeighborSignaledDown        Diag = 3
	DiagForwardingPlaneReset        Diag = 4
	DiagPathDown                    Diag = 5
	DiagConcatenatedPathDown        Diag = 6
	DiagAdministrativelyDown        Diag = 7
	DiagReverseConcatenatedPathDown Diag = 8
)

var diagNames = [...]string{
	"None", "ControlDetectionTimeExpired", "EchoFunctionFailed", "NeighborSignaledDown",
	"ForwardingPlaneReset", "PathDown", "ConcatenatedPathDown", "AdministrativelyDown",
	"ReverseConcatenatedPathDown",
}

// MarshalText makes structured logs show the name, not the number.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalText makes structured logs show the name, not the number.
func (d Diag) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d Diag) String() string {
	if int(d) < len(diagNames) {
		return diagNames[d]
	}
	return fmt.Sprintf("Diag(%d)", uint8(d))
}

// Packet is a BFD control packet (RFC 5880 4.1). Intervals are in
// microseconds, as on the wire. The authentication section is not kept:
// authentication is not supported and packets carrying it are rejected.
type Packet struct {
	Version    uint8
	Diag       Diag
	State      State
	Poll       bool // P
	Final      bool // F
	CPI        bool // C: control plane independent
	Auth       bool // A: authentication present
	Demand     bool // D
	Multipoint bool // M, must be zero

	DetectMult uint8
	// Length is the length field as received. AppendEncode ignores it and
	// always writes HeaderLen.
	Length uint8

	MyDiscriminator   uint32
	YourDiscriminator uint32

	DesiredMinTxInterval      uint32 // µs
	RequiredMinRxInterval     uint32 // µs
	RequiredMinEchoRxInterval uint32 // µs
}

// Decode errors. ErrAuth is kept apart so callers can count it separately;
// every other error means the packet is malformed (RFC 5880 6.8.6).
var (
	ErrAuth           = errors.New("bfd: authentication present but not supported")
	ErrShort          = errors.New("bfd: packet shorter than 24 bytes")
	ErrVersion        = errors.New("bfd: unsupported version")
	ErrLength         = errors.New("bfd: bad length field")
	ErrDetectMult     = errors.New("bfd: detect multiplier is zero")
	ErrMultipoint     = errors.New("bfd: multipoint bit set")
	ErrMyDiscr        = errors.New("bfd: my discriminator is zero")
	ErrYourDiscrState = errors.New("bfd: your discriminator is zero in state other than Down/AdminDown")
)

// Decode parses b into p and validates it per RFC 5880 6.8.6. p is fully
// overwritten; Decode does not allocate.
func (p *Packet) Decode(b []byte) error {
	if len(b) < HeaderLen {
		return ErrShort
	}
	p.Version = b[0] >> 5
	p.Diag = Diag(b[0] & 0x1f)
	p.State = State(b[1] >> 6)
	p.Poll = b[1]&0x20 != 0
	p.Final = b[1]&0x10 != 0
	p.CPI = b[1]&0x08 != 0
	p.Auth = b[1]&0x04 != 0
	p.Demand = b[1]&0x02 != 0
	p.Multipoint = b[1]&0x01 != 0
	p.DetectMult = b[2]
	p.Length = b[3]
	p.MyDiscriminator = binary.BigEndian.Uint32(b[4:])
	p.YourDiscriminator = binary.BigEndian.Uint32(b[8:])
	p.DesiredMinTxInterval = binary.BigEndian.Uint32(b[12:])
	p.RequiredMinRxInterval = binary.BigEndian.Uint32(b[16:])
	p.RequiredMinEchoRxInterval = binary.BigEndian.Uint32(b[20:])

	if p.Version != Version {
		return ErrVersion
	}
	minLen := HeaderLen
	if p.Auth {
		minLen = HeaderLen + 2
	}
	if int(p.Length) < minLen || int(p.Length) > len(b) {
		return ErrLength
	}
	if p.Auth {
		// "If the A bit is set and no authentication is in use
		// (bfd.AuthType is zero), the packet MUST be discarded."
		return ErrAuth
	}
	if p.DetectMult == 0 {
		return ErrDetectMult
	}
	if p.Multipoint {
		return ErrMultipoint
	}
	if p.MyDiscriminator == 0 {
		return ErrMyDiscr
	}
	if p.YourDiscriminator == 0 && p.State != StateDown && p.State != StateAdminDown {
		return ErrYourDiscrState
	}
	return nil
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler; it is Decode.
func (p *Packet) UnmarshalBinary(b []byte) error { return p.Decode(b) }

// AppendEncode appends the 24-byte wire form of p to b and returns the
// extended slice. The version is always 1, the length 24 and the A bit clear.
// With a reused buffer (b[:0]) it does not allocate.
func (p *Packet) AppendEncode(b []byte) []byte {
	var flags byte
	flags |= byte(p.State&3) << 6
	if p.Poll {
		flags |= 0x20
	}
	if p.Final {
		flags |= 0x10
	}
	if p.CPI {
		flags |= 0x08
	}
	if p.Demand {
		flags |= 0x02
	}
	if p.Multipoint {
		flags |= 0x01
	}
	b = append(b, Version<<5|byte(p.Diag&0x1f), flags, p.DetectMult, HeaderLen)
	b = binary.BigEndian.AppendUint32(b, p.MyDiscriminator)
	b = binary.BigEndian.AppendUint32(b, p.YourDiscriminator)
	b = binary.BigEndian.AppendUint32(b, p.DesiredMinTxInterval)
	b = binary.BigEndian.AppendUint32(b, p.RequiredMinRxInterval)
	b = binary.BigEndian.AppendUint32(b, p.RequiredMinEchoRxInterval)
	return b
}

// MarshalBinary implements encoding.BinaryMarshaler.
func (p *Packet) MarshalBinary() ([]byte, error) {
	return p.AppendEncode(make([]byte, 0, HeaderLen)), nil
}
