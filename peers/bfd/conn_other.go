//go:build !linux

package bfd

import (
	"errors"
	"net"
	"net/netip"
)

// The Manager needs Linux socket options (IP_RECVTTL, IP_PKTINFO); the
// pure Packet and Session types work everywhere.
var errUnsupported = errors.New("bfd: Manager is only supported on Linux")

type rxMeta struct {
	ttl     int
	ifindex int
}

const oobSpace = 64

func listenUDP(bool, uint16, bool) (*net.UDPConn, error) { return nil, errUnsupported }
func listenTx(bool) (*net.UDPConn, error)                { return nil, errUnsupported }
func parseOOB([]byte) rxMeta                             { return rxMeta{ttl: -1} }
func pktinfoOOB(netip.Addr, int, bool) []byte            { return nil }
