package bfd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tosInternetControl is DSCP CS6, the usual marking for BFD (FRR, BIRD).
const tosInternetControl = 0xc0

// listenUDP opens a UDP socket that sends with TTL/hop limit 255 and, when
// recv is set, delivers the received TTL/hop limit and the arrival interface
// as control messages.
func listenUDP(v6 bool, port uint16, recv bool) (*net.UDPConn, error) {
	network, addr := "udp4", netip.AddrPortFrom(netip.IPv4Unspecified(), port)
	if v6 {
		network, addr = "udp6", netip.AddrPortFrom(netip.IPv6Unspecified(), port)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = setSockopts(int(fd), v6, recv) })
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(context.Background(), network, addr.String())
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

func setSockopts(fd int, v6, recv bool) error {
	type opt struct{ level, name, val int }
	var opts []opt
	if v6 {
		opts = []opt{
			{unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, 255},
			{unix.IPPROTO_IPV6, unix.IPV6_TCLASS, tosInternetControl},
		}
		if recv {
			opts = append(opts,
				opt{unix.IPPROTO_IPV6, unix.IPV6_RECVHOPLIMIT, 1},
				opt{unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1})
		}
	} else {
		opts = []opt{
			{unix.IPPROTO_IP, unix.IP_TTL, 255},
			{unix.IPPROTO_IP, unix.IP_TOS, tosInternetControl},
		}
		if recv {
			opts = append(opts,
				opt{unix.IPPROTO_IP, unix.IP_RECVTTL, 1},
				opt{unix.IPPROTO_IP, unix.IP_PKTINFO, 1})
		}
	}
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, o.level, o.name, o.val); err != nil {
			return fmt.Errorf("setsockopt(%d, %d): %w", o.level, o.name, err)
		}
	}
	return nil
}

// listenTx opens the transmit socket of one address family, bound to a
// random source port in 49152-65535 (RFC 5881 4, RFC 5883 5). All sessions
// of the family share it, so each session always uses the same port.
func listenTx(v6 bool) (*net.UDPConn, error) {
	var err error
	for range 64 {
		port := uint16(49152 + rand.IntN(65536-49152))
		var c *net.UDPConn
		if c, err = listenUDP(v6, port, false); err == nil {
			return c, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, err
		}
	}
	return nil, err
}

// oobSpace is enough for a TTL/hop limit and a pktinfo control message.
var oobSpace = unix.CmsgSpace(4) + unix.CmsgSpace(unix.SizeofInet6Pktinfo)

// rxMeta is what the control messages of a received packet tell.
type rxMeta struct {
	ttl     int // -1 if absent
	ifindex int
}

// parseOOB extracts the TTL/hop limit and the interface index from the
// control messages without allocating.
func parseOOB(oob []byte) rxMeta {
	m := rxMeta{ttl: -1}
	hdr := unix.CmsgLen(0)
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			break
		}
		data := oob[hdr:l]
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_TTL && len(data) >= 4,
			h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_HOPLIMIT && len(data) >= 4:
			m.ttl = int(int32(binary.NativeEndian.Uint32(data)))
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			m.ifindex = int(int32(binary.NativeEndian.Uint32(data)))
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			m.ifindex = int(int32(binary.NativeEndian.Uint32(data[16:])))
		}
		next := unix.CmsgSpace(l - hdr)
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return m
}

// pktinfoOOB builds the control message that pins the source address and/or
// the outgoing interface of a sent packet. It returns nil when neither is set.
func pktinfoOOB(local netip.Addr, ifindex int, v6 bool) []byte {
	if !local.IsValid() && ifindex == 0 {
		return nil
	}
	if v6 {
		var pi unix.Inet6Pktinfo
		if local.IsValid() {
			pi.Addr = local.As16()
		}
		pi.Ifindex = uint32(ifindex)
		b := make([]byte, unix.CmsgSpace(unix.SizeofInet6Pktinfo))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
		*(*unix.Inet6Pktinfo)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = pi
		return b
	}
	var pi unix.Inet4Pktinfo
	if local.IsValid() {
		pi.Spec_dst = local.As4()
	}
	pi.Ifindex = int32(ifindex)
	b := make([]byte, unix.CmsgSpace(unix.SizeofInet4Pktinfo))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
	*(*unix.Inet4Pktinfo)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = pi
	return b
}
