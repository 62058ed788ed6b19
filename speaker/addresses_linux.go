package speaker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// labelSuffix is appended to the interface name to form the IPv4 address
// label ("lo:vip") that marks an address as vipcast's. A successor whose
// configuration lists other VIPs still recognises, by this label, the
// addresses a crashed predecessor left behind.
const labelSuffix = ":vip"

// maxLabelLen is IFNAMSIZ-1: the kernel stores the label in IFNAMSIZ bytes
// including the terminating NUL.
const maxLabelLen = unix.IFNAMSIZ - 1

// IPv6 has no address labels, so vipcast marks its IPv6 VIPs with the
// address protocol instead (IFA_PROTO, Linux 5.18+; `ip -d addr` shows it as
// "proto 0x76"): a successor that cannot read its configuration still
// recognises them. Older kernels ignore the attribute; their stale IPv6 VIPs
// go only when the configuration names them.
const (
	ifaProto = 11   // IFA_PROTO in linux/if_addr.h; golang.org/x/sys/unix lacks it
	vipProto = 0x76 // 'v'; the kernel's own values (IFAPROT_*) are 0-3
)

// dumpRetries bounds the re-reads of an address dump the kernel reported as
// interrupted (NLM_F_DUMP_INTR: the list changed while being read).
const dumpRetries = 5

// Loopback implements Addresses with netlink on one interface (normally lo).
//
// IPv4 VIPs carry the label "<ifname>:vip"; IPv6 has no address labels, so
// IPv6 VIPs carry the address protocol vipProto instead. Cleanup removes
// both kinds of marked address, and the VIPs it is given. All methods are
// safe for concurrent use.
type Loopback struct {
	mu     sync.Mutex
	h      *netlink.Handle
	ifname string
	label  string
	log    *slog.Logger
	// ns is the network namespace WatchRemovals subscribes in; nil: the
	// calling thread's, like the handle NewLoopback opens.
	ns *netns.NsHandle
	// diag (NETLINK_INET_DIAG, same namespace as h) aborts the connections
	// left on a removed VIP; nil: they are left to time out.
	diag *sockDiag
	// rt is a raw NETLINK_ROUTE socket in h's namespace, for the address
	// protocol the netlink library cannot set or read; nil: IPv6 VIPs are
	// added unmarked, and only configured ones are cleaned up.
	rt *nl.SocketHandle
}

var _ Addresses = (*Loopback)(nil)

// NewLoopback returns the VIP manager for ifname in the network namespace of
// the calling thread (the netlink sockets are bound to it when created). It
// fails if the interface does not exist or its name is too long for the
// "<ifname>:vip" label.
func NewLoopback(ifname string, log *slog.Logger) (*Loopback, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink handle for %s: %w", ifname, err)
	}
	l, err := newLoopbackAt(h, ifname, log)
	if err != nil {
		h.Close()
		return nil, err
	}
	if l.diag, err = sockDiagAt(netns.None()); err != nil {
		l.log.Warn("no sock_diag: connections on a removed VIP are left to time out", "err", err)
	}
	if l.rt, err = routeSocketAt(netns.None()); err != nil {
		l.log.Warn("no raw netlink socket: IPv6 VIPs unmarked, a stale one is removed only when configured", "err", err)
	}
	return l, nil
}

// routeSocketAt opens a NETLINK_ROUTE socket in ns (netns.None(): the
// calling thread's).
func routeSocketAt(ns netns.NsHandle) (*nl.SocketHandle, error) {
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink route socket: %w", err)
	}
	return &nl.SocketHandle{Socket: s}, nil
}

// newLoopbackAt is NewLoopback on a given handle, which may belong to another
// network namespace (netlink.NewHandleAt); tests use it. The Loopback owns h
// from then on: Close closes it.
func newLoopbackAt(h *netlink.Handle, ifname string, log *slog.Logger) (*Loopback, error) {
	if h == nil {
		return nil, errors.New("loopback: nil netlink handle")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	label := ifname + labelSuffix
	if ifname == "" {
		return nil, errors.New("loopback: empty interface name; use lo")
	}
	if len(label) > maxLabelLen {
		return nil, fmt.Errorf("loopback: interface %q is too long: address label %q exceeds %d characters", ifname, label, maxLabelLen)
	}
	if _, err := h.LinkByName(ifname); err != nil {
		return nil, fmt.Errorf("loopback: interface %s: %w", ifname, err)
	}
	return &Loopback{h: h, ifname: ifname, label: label, log: log.With("interface", ifname)}, nil
}

// Close releases the netlink sockets. The addresses stay as they are.
func (l *Loopback) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.h != nil {
		l.h.Close()
		l.h = nil
	}
	if l.diag != nil {
		l.diag.Close()
		l.diag = nil
	}
	if l.rt != nil {
		l.rt.Close()
		l.rt = nil
	}
	return nil
}

// Add puts vip on the interface with scope global, so the node answers for
// it and can use it as a source address. IPv4 VIPs get the "<ifname>:vip"
// label; IPv6 VIPs get IFA_F_NODAD so they are usable at once instead of
// tentative for the duplicate address detection delay. A VIP already present
// is not an error.
//
// Add also sets the interface up if it is down. The kernel installs the
// local routes of an address (the ones that make the node accept packets to
// it and pick it as a source) only while its interface is up, so a VIP on a
// down lo would be advertised but silently dropped. lo is always up on a
// normal host, so this is a no-op there; it matters in a fresh network
// namespace (containers, tests), where lo starts down.
func (l *Loopback) Add(vip netip.Prefix) error {
	if err := checkVIP(vip); err != nil {
		return fmt.Errorf("add vip %s on %s: %w", vip, l.ifname, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.h == nil {
		return fmt.Errorf("add vip %s on %s: %w", vip, l.ifname, net.ErrClosed)
	}
	link, err := l.h.LinkByName(l.ifname)
	if err != nil {
		return fmt.Errorf("add vip %s on %s: %w", vip, l.ifname, err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := l.h.LinkSetUp(link); err != nil {
			return fmt.Errorf("add vip %s on %s: set %s up: %w", vip, l.ifname, l.ifname, err)
		}
		l.log.Info("interface was down, set it up", "vip", vip)
	}
	a := &netlink.Addr{IPNet: ipNet(vip), Scope: unix.RT_SCOPE_UNIVERSE}
	if vip.Addr().Is4() {
		a.Label = l.label
	} else {
		a.Flags = unix.IFA_F_NODAD
	}
	add := func() error { return l.h.AddrAdd(link, a) }
	if vip.Addr().Is6() && l.rt != nil {
		add = func() error { return l.addMarked6(link.Attrs().Index, vip) }
	}
	switch err := add(); {
	case err == nil:
		l.log.Debug("vip added", "vip", vip)
	case errors.Is(err, unix.EEXIST):
		l.log.Debug("vip already present", "vip", vip)
	default:
		return fmt.Errorf("add vip %s on %s: %w", vip, l.ifname, err)
	}
	return nil
}

// addMarked6 adds an IPv6 VIP as Add does (scope global, no DAD), marked
// with the address protocol vipProto (l.mu held, l.rt set). The request is
// RTM_NEWADDR with NLM_F_CREATE|NLM_F_EXCL, as netlink.AddrAdd sends it.
func (l *Loopback) addMarked6(index int, vip netip.Prefix) error {
	req := &nl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{
			Len:   uint32(unix.SizeofNlMsghdr),
			Type:  unix.RTM_NEWADDR,
			Flags: unix.NLM_F_REQUEST | unix.NLM_F_CREATE | unix.NLM_F_EXCL | unix.NLM_F_ACK,
		},
		Sockets: map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: l.rt},
	}
	msg := nl.NewIfAddrmsg(unix.AF_INET6)
	msg.Index = uint32(index)
	msg.Prefixlen = uint8(vip.Bits())
	msg.Scope = unix.RT_SCOPE_UNIVERSE
	msg.Flags = unix.IFA_F_NODAD
	req.AddData(msg)
	ip := vip.Addr().AsSlice()
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, ip))
	req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, ip))
	req.AddData(nl.NewRtAttr(ifaProto, []byte{vipProto}))
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// marked returns the addresses on the interface with index that carry the
// address protocol vipProto (l.mu held). Without l.rt, none.
func (l *Loopback) marked(index int) (map[netip.Prefix]bool, error) {
	if l.rt == nil {
		return nil, nil
	}
	var err error
	for range dumpRetries {
		var m map[netip.Prefix]bool
		if m, err = l.dumpMarked(index); err == nil || !errors.Is(err, netlink.ErrDumpInterrupted) {
			return m, err
		}
	}
	return nil, err
}

func (l *Loopback) dumpMarked(index int) (map[netip.Prefix]bool, error) {
	req := &nl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{
			Len:   uint32(unix.SizeofNlMsghdr),
			Type:  unix.RTM_GETADDR,
			Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP,
		},
		Sockets: map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: l.rt},
	}
	req.AddData(nl.NewIfAddrmsg(unix.AF_UNSPEC))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWADDR)
	m := map[netip.Prefix]bool{}
	for _, b := range msgs {
		if len(b) < unix.SizeofIfAddrmsg {
			continue
		}
		am := nl.DeserializeIfAddrmsg(b)
		if int(am.Index) != index {
			continue
		}
		attrs, perr := nl.ParseRouteAttr(b[unix.SizeofIfAddrmsg:])
		if perr != nil {
			return nil, fmt.Errorf("parse address dump: %w", perr)
		}
		var addr []byte
		proto := -1
		for _, a := range attrs {
			switch a.Attr.Type {
			case unix.IFA_ADDRESS:
				addr = a.Value
			case unix.IFA_LOCAL:
				if addr == nil {
					addr = a.Value
				}
			case ifaProto:
				if len(a.Value) == 1 {
					proto = int(a.Value[0])
				}
			}
		}
		if ip, ok := netip.AddrFromSlice(addr); ok && proto == vipProto {
			m[netip.PrefixFrom(ip.Unmap(), int(am.Prefixlen))] = true
		}
	}
	return m, err
}

// Remove takes vip off the interface, whatever its label. An absent VIP is
// not an error.
func (l *Loopback) Remove(vip netip.Prefix) error {
	if err := checkVIP(vip); err != nil {
		return fmt.Errorf("remove vip %s from %s: %w", vip, l.ifname, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.h == nil {
		return fmt.Errorf("remove vip %s from %s: %w", vip, l.ifname, net.ErrClosed)
	}
	link, err := l.h.LinkByName(l.ifname)
	if err != nil {
		return fmt.Errorf("remove vip %s from %s: %w", vip, l.ifname, err)
	}
	// No label: the kernel then matches the address whatever its label, so
	// an unlabelled copy (added by hand or by an older version) goes too.
	if err := l.h.AddrDel(link, &netlink.Addr{IPNet: ipNet(vip)}); err != nil && !isAbsent(err) {
		return fmt.Errorf("remove vip %s from %s: %w", vip, l.ifname, err)
	}
	l.log.Debug("vip removed", "vip", vip)
	l.resetConns(vip)
	return nil
}

// tcpListen is the kernel's TCP_LISTEN state.
const tcpListen = 10

// resetConns aborts the TCP connections whose local address is vip, once
// vip has left the interface (l.mu held). None of them can carry another
// byte: the router sends their peers' packets to other nodes now. Worse, a
// connection from this very node to the VIP (the kubelet, a
// controller-manager or scheduler with controlPlaneEndpoint = the VIP) has
// the VIP as its source too and would hang until its client's own timeout:
// about 45 s for the kubelet's HTTP/2 health check, long enough for a
// controller-manager to lose its leader lease and exit. Aborted (like
// `ss -K`), they fail at once, ECONNABORTED here and a RST to a remote
// peer, and their clients reconnect through the VIP to another node.
// Listeners stay. Best effort: failures are logged, never returned.
//
// An IPv4 VIP's connections are looked for among the IPv6 sockets too:
// a server listening on [::] (kube-apiserver, like kubeadm sets it up, and
// Go's default for ":port") accepts them as IPv6 sockets with the
// IPv4-mapped local address ::ffff:VIP; missed, they kept a SIGTERMed
// apiserver waiting a minute on a watch to a client now routed elsewhere.
func (l *Loopback) resetConns(vip netip.Prefix) {
	if l.diag == nil {
		return
	}
	// The kernel dumps one family per request (sk_family); an IPv6 VIP has
	// no IPv4 sockets.
	families := []uint8{unix.AF_INET6}
	if vip.Addr().Is4() {
		families = []uint8{unix.AF_INET, unix.AF_INET6}
	}
	reset, failed := 0, 0
	for _, fam := range families {
		socks, err := l.diag.list.SocketDiagTCP(fam)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) { // interrupted: still abort those listed
			l.log.Warn("listing the connections on a removed vip", "vip", vip, "family", fam, "err", err)
			continue
		}
		for _, s := range socks {
			// Unmap: an IPv4 VIP matches its IPv4-mapped form too; an IPv6
			// VIP is never IPv4-mapped (checkVIP).
			local, _ := netip.AddrFromSlice(s.ID.Source)
			if s.State == tcpListen || local.Unmap() != vip.Addr() {
				continue
			}
			if err := l.diag.destroy(s); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESTALE) {
				failed++
				remote, _ := netip.AddrFromSlice(s.ID.Destination)
				l.log.Debug("connection on a removed vip not reset", "vip", vip,
					"local", netip.AddrPortFrom(local.Unmap(), s.ID.SourcePort),
					"remote", netip.AddrPortFrom(remote.Unmap(), s.ID.DestinationPort), "err", err)
				continue
			}
			reset++
		}
	}
	if reset > 0 || failed > 0 {
		l.log.Info("connections on the removed vip reset", "vip", vip, "reset", reset, "failed", failed)
	}
}

// sockDiag lists and aborts TCP sockets through NETLINK_INET_DIAG, both
// sockets in the Loopback's network namespace. The netlink library lists
// both families, but its SocketDestroy takes IPv4 addresses only (v1.3.1)
// and hides its socket, so aborting goes through a raw socket of our own.
type sockDiag struct {
	list *netlink.Handle
	raw  *nl.SocketHandle
}

// sockDiagAt opens the sock_diag sockets in ns (netns.None(): the calling
// thread's).
func sockDiagAt(ns netns.NsHandle) (*sockDiag, error) {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_INET_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag handle: %w", err)
	}
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_INET_DIAG)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("sock_diag socket: %w", err)
	}
	return &sockDiag{list: h, raw: &nl.SocketHandle{Socket: s}}, nil
}

func (d *sockDiag) Close() {
	d.list.Close()
	d.raw.Close()
}

// destroy aborts the socket s, as listed by SocketDiagTCP, with
// SOCK_DESTROY (CONFIG_INET_DIAG_DESTROY; what `ss -K` sends). The request
// names the socket by the family, addresses, ports, interface and cookie
// the dump reported, so it hits that very socket: the kernel answers
// ESTALE if a new socket took over the 4-tuple meanwhile, ENOENT if it is
// gone. IPv4-mapped addresses stay in an AF_INET6 request; the kernel
// looks them up in the IPv4 table, where such sockets are hashed.
func (d *sockDiag) destroy(s *netlink.Socket) error {
	req := &nl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{
			Len:   uint32(unix.SizeofNlMsghdr),
			Type:  nl.SOCK_DESTROY,
			Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK,
		},
		Sockets: map[int]*nl.SocketHandle{unix.NETLINK_INET_DIAG: d.raw},
	}
	req.AddData(inetDiagReq{family: s.Family, id: s.ID})
	_, err := req.Execute(unix.NETLINK_INET_DIAG, 0)
	return err
}

// inetDiagReq is struct inet_diag_req_v2 (linux/inet_diag.h) for one TCP
// socket:
//
//	u8 family, protocol, ext, pad; u32 states;
//	inet_diag_sockid: be16 sport, dport; be32 src[4], dst[4]; u32 if, cookie[2]
//
// An AF_INET address fills the first 4 bytes of src/dst, an AF_INET6 one
// all 16.
type inetDiagReq struct {
	family uint8
	id     netlink.SocketID
}

const sizeofInetDiagReq = 56

func (r inetDiagReq) Len() int { return sizeofInetDiagReq }

func (r inetDiagReq) Serialize() []byte {
	b := make([]byte, sizeofInetDiagReq)
	b[0] = r.family
	b[1] = unix.IPPROTO_TCP
	// ext, pad: 0. states: 0, ignored by SOCK_DESTROY.
	binary.BigEndian.PutUint16(b[8:], r.id.SourcePort)
	binary.BigEndian.PutUint16(b[10:], r.id.DestinationPort)
	src, dst := r.id.Source.To16(), r.id.Destination.To16()
	if r.family == unix.AF_INET {
		src, dst = r.id.Source.To4(), r.id.Destination.To4()
	}
	copy(b[12:28], src)
	copy(b[28:44], dst)
	ne := nl.NativeEndian()
	ne.PutUint32(b[44:], r.id.Interface)
	ne.PutUint32(b[48:], r.id.Cookie[0])
	ne.PutUint32(b[52:], r.id.Cookie[1])
	return b
}

// Cleanup removes every address on the interface that is in vips, carries
// the "<ifname>:vip" label (IPv4) or the address protocol vipProto (IPv6),
// and leaves all others (127.0.0.1/8, ::1, an admin's addresses) alone. It tries every address and returns all
// failures joined.
func (l *Loopback) Cleanup(vips []netip.Prefix) error {
	want := make(map[netip.Prefix]bool, len(vips))
	for _, v := range vips {
		want[v] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.h == nil {
		return fmt.Errorf("cleanup vips on %s: %w", l.ifname, net.ErrClosed)
	}
	link, err := l.h.LinkByName(l.ifname)
	if err != nil {
		return fmt.Errorf("cleanup vips on %s: %w", l.ifname, err)
	}
	addrs, err := l.list(link)
	if err != nil {
		return fmt.Errorf("cleanup vips on %s: list addresses: %w", l.ifname, err)
	}
	marked, err := l.marked(link.Attrs().Index)
	if err != nil {
		// Still remove the configured and labelled ones.
		l.log.Warn("cleanup: marked IPv6 vips unknown", "err", err)
	}
	var errs []error
	for _, a := range addrs {
		p, ok := prefixOf(a.IPNet)
		if !ok {
			continue
		}
		labelled := p.Addr().Is4() && a.Label == l.label || p.Addr().Is6() && marked[p]
		if !want[p] && !labelled {
			continue
		}
		d := &netlink.Addr{IPNet: a.IPNet, Peer: a.Peer, Label: a.Label}
		if err := l.h.AddrDel(link, d); err != nil && !isAbsent(err) {
			err = fmt.Errorf("remove vip %s from %s: %w", p, l.ifname, err)
			l.log.Error("cleanup: vip not removed", "vip", p, "err", err)
			errs = append(errs, err)
			continue
		}
		l.log.Info("cleanup: vip removed", "vip", p, "err", nil, "configured", want[p], "label", a.Label, "marked", marked[p])
		l.resetConns(p)
	}
	return errors.Join(errs...)
}

// Missing returns the VIPs of vips that are not on the interface, in the
// order given.
func (l *Loopback) Missing(vips []netip.Prefix) ([]netip.Prefix, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.h == nil {
		return nil, fmt.Errorf("list vips on %s: %w", l.ifname, net.ErrClosed)
	}
	link, err := l.h.LinkByName(l.ifname)
	if err != nil {
		return nil, fmt.Errorf("list vips on %s: %w", l.ifname, err)
	}
	addrs, err := l.list(link)
	if err != nil {
		return nil, fmt.Errorf("list vips on %s: %w", l.ifname, err)
	}
	on := make(map[netip.Prefix]bool, len(addrs))
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet); ok {
			on[p] = true
		}
	}
	var missing []netip.Prefix
	for _, v := range vips {
		if !on[v] {
			missing = append(missing, v)
		}
	}
	return missing, nil
}

// resubscribeDelay is how long WatchRemovals waits before renewing a
// subscription the kernel or the library ended (e.g. ENOBUFS when the
// socket's buffer overflowed under a burst of address changes).
const resubscribeDelay = time.Second

// WatchRemovals sends to removed every address the kernel reports deleted
// from the interface (RTM_DELADDR), until ctx ends; it returns only then,
// with its netlink subscription closed and its goroutines stopped. When
// notifications may have been lost (the subscription broke and is renewed)
// it sends the zero Prefix: the receiver should then check every VIP. The
// receiver's own removals are reported too; it tells them apart.
func (l *Loopback) WatchRemovals(ctx context.Context, removed chan<- netip.Prefix) error {
	link, err := func() (netlink.Link, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.h == nil {
			return nil, net.ErrClosed
		}
		return l.h.LinkByName(l.ifname)
	}()
	if err != nil {
		return fmt.Errorf("watch addresses on %s: %w", l.ifname, err)
	}
	index := link.Attrs().Index
	send := func(p netip.Prefix) bool {
		select {
		case removed <- p:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for first := true; ; first = false {
		if !first {
			t := time.NewTimer(resubscribeDelay)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		ch := make(chan netlink.AddrUpdate, 64)
		done := make(chan struct{})
		opts := netlink.AddrSubscribeOptions{
			Namespace: l.ns,
			ErrorCallback: func(err error) {
				if ctx.Err() == nil { // closing the subscription is no failure
					l.log.Warn("address watch", "err", err)
				}
			},
		}
		if err := netlink.AddrSubscribeWithOptions(ch, done, opts); err != nil {
			if first {
				return fmt.Errorf("watch addresses on %s: %w", l.ifname, err)
			}
			l.log.Warn("address watch: renewing the subscription failed; the periodic check still runs", "err", err)
			continue
		}
		if !first && !send(netip.Prefix{}) {
			close(done)
			drain(ch)
			return nil
		}
		if l.forward(ctx, ch, index, send) {
			close(done)
			drain(ch)
			return nil
		}
		close(done)
		drain(ch)
		l.log.Warn("address watch ended; renewing it", "delay", resubscribeDelay)
	}
}

// forward relays the deletions on link index until ctx ends (true) or the
// subscription closes ch (false).
func (l *Loopback) forward(ctx context.Context, ch <-chan netlink.AddrUpdate, index int, send func(netip.Prefix) bool) bool {
	for {
		select {
		case <-ctx.Done():
			return true
		case u, ok := <-ch:
			if !ok {
				return false
			}
			if u.NewAddr || u.LinkIndex != index {
				continue
			}
			p, ok := prefixOf(&u.LinkAddress)
			if !ok {
				continue
			}
			if !send(p) {
				return true
			}
		}
	}
}

// drain empties ch until the library's receiver closes it, so that
// goroutine never blocks on a send nobody reads.
func drain(ch <-chan netlink.AddrUpdate) {
	for range ch {
	}
}

// list returns the addresses on link, re-reading a dump the kernel marked as
// interrupted.
func (l *Loopback) list(link netlink.Link) ([]netlink.Addr, error) {
	var err error
	for range dumpRetries {
		var addrs []netlink.Addr
		addrs, err = l.h.AddrList(link, netlink.FAMILY_ALL)
		if err == nil {
			return addrs, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, err
		}
	}
	return nil, err
}

// checkVIP rejects what Config.Validate rejects, in case a caller did not
// validate: only a plain host prefix can be a VIP.
func checkVIP(vip netip.Prefix) error {
	a := vip.Addr()
	switch {
	case !vip.IsValid():
		return errors.New("invalid prefix")
	case a.Zone() != "" || a.Is4In6():
		return errors.New("not a plain address (zone or IPv4-mapped)")
	case !vip.IsSingleIP():
		return fmt.Errorf("not a host prefix (want /%d)", a.BitLen())
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := n.Mask.Size()
	if bits != a.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}

// isAbsent reports whether a delete failed only because the address was not
// there (IPv4 and IPv6 say EADDRNOTAVAIL; ENOENT for completeness).
func isAbsent(err error) bool {
	return errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENOENT)
}
