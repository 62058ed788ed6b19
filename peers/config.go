// Package peers holds the network team's peering configuration, its
// validation, and the BGP sessions behind the Router interface.
package peers

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vipcast/vipcast/policy"
)

// Global is the local BGP instance.
type Global struct {
	// ASN is the local autonomous system number.
	ASN uint32 `mapstructure:"asn"`
	// RouterID is an IPv4 address, or "auto" to use the node's first
	// global IPv4 address.
	RouterID string `mapstructure:"routerID"`
	// ListenPort is the TCP port for inbound sessions; 0 (the default)
	// opens no listener, so only outbound sessions are made.
	ListenPort uint16 `mapstructure:"listenPort"`
	// ListenAddresses restricts the listener; empty means all addresses.
	ListenAddresses []string `mapstructure:"listenAddresses"`
}

// Peer is one BGP neighbor.
type Peer struct {
	Address string `mapstructure:"address"`
	ASN     uint32 `mapstructure:"asn"`
	// LocalASN overrides Global.ASN for this session.
	LocalASN uint32 `mapstructure:"localASN"`
	// Port is the remote TCP port, 179 by default.
	Port uint16 `mapstructure:"port"`
	// SourceAddress pins the local address of the session.
	SourceAddress string `mapstructure:"sourceAddress"`
	// PasswordFile holds the TCP MD5 (RFC 2385) key; the key itself is
	// never in the configuration, the logs or the status.
	PasswordFile string `mapstructure:"passwordFile"`
	// HoldTime is proposed in OPEN; 0 or at least 3s (RFC 4271 4.2).
	HoldTime time.Duration `mapstructure:"holdTime"`
	// KeepaliveTime defaults to a third of HoldTime.
	KeepaliveTime time.Duration `mapstructure:"keepaliveTime"`
	// ConnectRetry is the wait between outbound connection attempts.
	ConnectRetry time.Duration `mapstructure:"connectRetry"`
	// Passive waits for the router to connect (needs Global.ListenPort).
	Passive bool `mapstructure:"passive"`
	// EBGPMultihop is the TTL for eBGP sessions that are not directly
	// connected; 0 keeps the default of 1.
	EBGPMultihop uint8 `mapstructure:"ebgpMultihop"`
	// TTLSecurityHops turns on GTSM (RFC 5082): packets go out with TTL 255
	// and only those arriving with TTL >= 256 - hops are accepted, so a
	// spoofer more than hops away cannot reach the session. 0 (default)
	// is off; 1 for a directly connected router. The router needs the same
	// (FRR: neighbor X ttl-security hops 1).
	TTLSecurityHops uint8 `mapstructure:"ttlSecurityHops"`
	// GracefulRestart (RFC 4724) asks the router to keep this node's routes
	// for RestartTime when the session drops without a notice (a vipcast
	// crash), so traffic keeps flowing while vipcast restarts. Off by
	// default: a route kept for a dead node is a black hole.
	GracefulRestart GracefulRestartConfig `mapstructure:"gracefulRestart"`
	// Families are the address families to negotiate: "ipv4", "ipv6".
	// Empty means the family of Address.
	Families []string `mapstructure:"families"`
	// NextHopIPv6 is the next hop sent with the IPv6 VIPs on this session.
	// Empty means automatic: on an IPv4 session, the node's global IPv6
	// address on the interface that routes to the peer (GoBGP would
	// otherwise send the IPv4-mapped ::ffff:a.b.c.d, which routers cannot
	// resolve); on an IPv6 session, the session's local address.
	NextHopIPv6 string `mapstructure:"nextHopIPv6"`
	// BFD ties the session to a BFD session with the router.
	BFD BFDConfig `mapstructure:"bfd"`
	// MaxPrefixes bounds the routes the router may send per address family
	// (0: DefaultMaxPrefixes). vipcast imports none, but GoBGP keeps every
	// received route (about 0.8 KB each) until the session ends; above the
	// limit the session is closed with a Cease and stays down until a
	// restart or a change of this peer's configuration.
	MaxPrefixes uint32 `mapstructure:"maxPrefixes"`
	// NodeCIDRs, if set, limit the peer to nodes with an address in one of
	// them (see Config.Select).
	NodeCIDRs []string `mapstructure:"nodeCIDRs"`
	// NodeSelector, if set, limits the peer to nodes whose labels match all
	// of these (matchLabels).
	NodeSelector map[string]string `mapstructure:"nodeSelector"`
	// Policy is what this session gets besides, or instead of, the global
	// policy (see policy.PeerConfig).
	Policy policy.PeerConfig `mapstructure:"policy"`
}

// BFDConfig is one peer's BFD (RFC 5880, RFC 5881; RFC 5883 when the peer
// is multihop). With BFD on, the BGP session is torn down the moment BFD
// fails after it was Up, and the router, running BFD towards the node,
// drops the node's route within MinRx x Multiplier of a dead node instead
// of waiting for the hold timer. The BGP session starts at once: routers
// that create their BFD session only once BGP is up (dynamic neighbors)
// would otherwise never see either come up. Strict makes BGP wait for BFD
// Up, at start and after each BFD failure.
type BFDConfig struct {
	Enabled bool `mapstructure:"enabled"`
	// Strict holds the BGP session down while BFD is not Up.
	Strict bool `mapstructure:"strict"`
	// MinTx is the desired minimum transmit interval (default 300ms).
	MinTx time.Duration `mapstructure:"minTx"`
	// MinRx is the required minimum receive interval (default 300ms).
	MinRx time.Duration `mapstructure:"minRx"`
	// Multiplier is the detect multiplier (default 3).
	Multiplier uint8 `mapstructure:"multiplier"`
}

// GracefulRestartConfig is one peer's RFC 4724 capability.
type GracefulRestartConfig struct {
	Enabled bool `mapstructure:"enabled"`
	// RestartTime is how long the router keeps the routes after the session
	// drops (whole seconds, at most 4095; default 30s).
	RestartTime time.Duration `mapstructure:"restartTime"`
}

// DefaultRestartTime is short on purpose: a restarting vipcast is back in
// ~2s, and the time bounds a black hole if the node is really gone.
const DefaultRestartTime = 30 * time.Second

// BFD defaults: 300ms x 3 is what most routers accept by default; use
// 100ms x 3 for sub-second detection where the router allows it.
const (
	DefaultBFDInterval   = 300 * time.Millisecond
	DefaultBFDMultiplier = 3
)

// DefaultMaxPrefixes is far above what a router should send a node that
// imports nothing (usually 0, at most a default route and a few more), and
// small enough that a router leaking a full table costs under 1 MiB.
const DefaultMaxPrefixes = 1000

// Config is the bgp and peers sections of the configuration file.
type Config struct {
	BGP   Global `mapstructure:"bgp"`
	Peers []Peer `mapstructure:"peers"`
}

// Defaults chosen for a control-plane VIP: a 9s hold time is three times
// faster than most router defaults yet tolerant of a busy node; BFD, not the
// hold timer, is the fast dead-node detector.
const (
	DefaultPort          = 179
	DefaultHoldTime      = 9 * time.Second
	DefaultConnectRetry  = 5 * time.Second
	minHoldTime          = 3 * time.Second
	asTrans              = 23456
	familyIPv4, familyV6 = "ipv4", "ipv6"
)

// Default returns the configuration with no peers and router ID auto.
func Default() Config {
	return Config{BGP: Global{RouterID: "auto"}}
}

// WithDefaults fills unset per-peer values.
func (c Config) WithDefaults() Config {
	out := c
	out.Peers = make([]Peer, len(c.Peers))
	for i, p := range c.Peers {
		if p.Port == 0 {
			p.Port = DefaultPort
		}
		if p.HoldTime == 0 {
			p.HoldTime = DefaultHoldTime
		}
		if p.KeepaliveTime == 0 {
			p.KeepaliveTime = p.HoldTime / 3
		}
		if p.ConnectRetry == 0 {
			p.ConnectRetry = DefaultConnectRetry
		}
		if p.LocalASN == 0 {
			p.LocalASN = c.BGP.ASN
		}
		if p.MaxPrefixes == 0 {
			p.MaxPrefixes = DefaultMaxPrefixes
		}
		if p.GracefulRestart.Enabled && p.GracefulRestart.RestartTime == 0 {
			p.GracefulRestart.RestartTime = DefaultRestartTime
		}
		if p.BFD.Enabled {
			if p.BFD.MinTx == 0 {
				p.BFD.MinTx = DefaultBFDInterval
			}
			if p.BFD.MinRx == 0 {
				p.BFD.MinRx = DefaultBFDInterval
			}
			if p.BFD.Multiplier == 0 {
				p.BFD.Multiplier = DefaultBFDMultiplier
			}
		}
		if len(p.Families) == 0 {
			if a, err := netip.ParseAddr(p.Address); err == nil && a.Is6() && !a.Is4In6() {
				p.Families = []string{familyV6}
			} else {
				p.Families = []string{familyIPv4}
			}
		}
		out.Peers[i] = p
	}
	return out
}

// Validate returns every problem at once, each naming the field, the value
// and the fix. It reads password files to prove they are usable but never
// puts their contents in an error.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if err := checkASN(c.BGP.ASN); err != nil {
		add("bgp.asn: %d %v", c.BGP.ASN, err)
	}
	if c.BGP.RouterID != "" && c.BGP.RouterID != "auto" {
		if a, err := netip.ParseAddr(c.BGP.RouterID); err != nil || !a.Is4() {
			add("bgp.routerID: %q is not an IPv4 address; use a dotted quad such as 192.0.2.11, or auto", c.BGP.RouterID)
		}
	}
	for i, s := range c.BGP.ListenAddresses {
		if _, err := netip.ParseAddr(s); err != nil {
			add("bgp.listenAddresses[%d]: %q is not an IP address; use e.g. 192.0.2.11", i, s)
		}
	}
	if len(c.Peers) == 0 {
		add("peers: none configured; add at least one, e.g. peers: [{address: 192.0.2.1, asn: 65000}]")
	}
	seen := map[netip.Addr]int{}
	for i, p := range c.Peers {
		f := fmt.Sprintf("peers[%d]", i)
		addr, err := netip.ParseAddr(p.Address)
		switch {
		case p.Address == "":
			add("%s.address: missing; set the router's address, e.g. 192.0.2.1", f)
		case err != nil || addr.Zone() != "":
			add("%s.address: %q is not an IP address; use e.g. 192.0.2.1 or 2001:db8::1", f, p.Address)
		default:
			if j, dup := seen[addr.Unmap()]; dup {
				add("%s.address: %s is also peers[%d]; list each router once", f, addr, j)
			}
			seen[addr.Unmap()] = i
		}
		if err := checkASN(p.ASN); err != nil {
			add("%s.asn: %d %v", f, p.ASN, err)
		}
		if p.LocalASN != 0 {
			if err := checkASN(p.LocalASN); err != nil {
				add("%s.localASN: %d %v", f, p.LocalASN, err)
			}
		}
		if p.SourceAddress != "" {
			src, err := netip.ParseAddr(p.SourceAddress)
			if err != nil {
				add("%s.sourceAddress: %q is not an IP address; use one of this node's addresses", f, p.SourceAddress)
			} else if addr.IsValid() && src.Is4() != addr.Is4() {
				add("%s.sourceAddress: %s is not the same family as address %s; use an address of the same family", f, src, addr)
			}
		}
		if p.HoldTime != 0 && p.HoldTime < minHoldTime {
			add("%s.holdTime: %v is below the RFC 4271 minimum; use 0 (no keepalives) or at least 3s", f, p.HoldTime)
		}
		if p.HoldTime%time.Second != 0 || p.KeepaliveTime%time.Second != 0 || p.ConnectRetry%time.Second != 0 {
			add("%s: holdTime %v, keepaliveTime %v, connectRetry %v: BGP timers are whole seconds; round them, e.g. 9s", f, p.HoldTime, p.KeepaliveTime, p.ConnectRetry)
		}
		if p.KeepaliveTime < 0 || p.ConnectRetry < 0 || p.HoldTime < 0 {
			add("%s: negative timer; timers must be 0 (default) or positive", f)
		}
		hold := p.HoldTime
		if hold == 0 {
			hold = DefaultHoldTime
		}
		if p.KeepaliveTime > 0 && p.KeepaliveTime >= hold {
			add("%s.keepaliveTime: %v is not below holdTime %v; use at most a third of holdTime", f, p.KeepaliveTime, hold)
		}
		if p.Passive && c.BGP.ListenPort == 0 {
			add("%s.passive: true but bgp.listenPort is 0, so nothing would accept the router's connection; set bgp.listenPort: 179 or passive: false", f)
		}
		for j, fam := range p.Families {
			if fam != familyIPv4 && fam != familyV6 {
				add("%s.families[%d]: %q is not a family; use ipv4 or ipv6", f, j, fam)
			}
		}
		if p.NextHopIPv6 != "" {
			p.validateNextHopIPv6(f, addr, add)
		}
		for _, t := range []struct {
			name string
			v    time.Duration
		}{{"minTx", p.BFD.MinTx}, {"minRx", p.BFD.MinRx}} {
			if t.v != 0 && (t.v < 10*time.Millisecond || t.v > time.Minute) {
				add("%s.bfd.%s: %v is out of range; use 10ms to 1m (default 300ms, 100ms for sub-second detection)", f, t.name, t.v)
			}
		}
		if !p.BFD.Enabled && (p.BFD.MinTx != 0 || p.BFD.MinRx != 0 || p.BFD.Multiplier != 0) {
			add("%s.bfd: timers set but enabled is false; set bfd.enabled: true or remove the timers", f)
		}
		if !p.BFD.Enabled && p.BFD.Strict {
			add("%s.bfd.strict: true but bfd.enabled is false; set bfd.enabled: true or remove strict", f)
		}
		if p.TTLSecurityHops > 254 {
			add("%s.ttlSecurityHops: %d is out of range; use 1 for a directly connected router, at most 254, or 0 for off", f, p.TTLSecurityHops)
		}
		if p.TTLSecurityHops > 0 && p.EBGPMultihop > 0 {
			add("%s: ttlSecurityHops %d and ebgpMultihop %d together; GTSM replaces multihop (packets leave with TTL 255), so set only ttlSecurityHops", f, p.TTLSecurityHops, p.EBGPMultihop)
		}
		if gr := p.GracefulRestart; gr.RestartTime != 0 {
			switch {
			case !gr.Enabled:
				add("%s.gracefulRestart.restartTime: %v set but enabled is false; set enabled: true or remove restartTime", f, gr.RestartTime)
			case gr.RestartTime < time.Second || gr.RestartTime > 4095*time.Second || gr.RestartTime%time.Second != 0:
				add("%s.gracefulRestart.restartTime: %v is out of range; use whole seconds from 1s to 4095s (default 30s)", f, gr.RestartTime)
			}
		}
		p.validateSelection(f, add)
		if err := p.Policy.Validate(f + ".policy"); err != nil {
			errs = append(errs, err)
		}
		if p.PasswordFile != "" {
			if err := checkPasswordFile(p.PasswordFile); err != nil {
				add("%s.passwordFile: %q %v", f, p.PasswordFile, err)
			}
		}
	}
	return errors.Join(errs...)
}

// validateNextHopIPv6 checks peers[].nextHopIPv6: a global unicast IPv6
// address, on a session that carries IPv6 at all.
func (p Peer) validateNextHopIPv6(f string, addr netip.Addr, add func(string, ...any)) {
	nh, err := netip.ParseAddr(p.NextHopIPv6)
	switch {
	case err != nil || !nh.Is6() || nh.Is4In6() || nh.Zone() != "":
		add("%s.nextHopIPv6: %q is not an IPv6 address; use this node's global IPv6 address on the link to the router, e.g. 2001:db8:2::11", f, p.NextHopIPv6)
		return
	case !nh.IsGlobalUnicast() || nh.IsLinkLocalUnicast():
		add("%s.nextHopIPv6: %s is not a global unicast address; use this node's global IPv6 address on the link to the router, e.g. 2001:db8:2::11 (not link-local, loopback or multicast)", f, nh)
		return
	}
	fams := p.Families
	if len(fams) == 0 && addr.IsValid() {
		fams = []string{familyIPv4}
		if addr.Is6() && !addr.Is4In6() {
			fams = []string{familyV6}
		}
	}
	if len(fams) > 0 && !slices.Contains(fams, familyV6) {
		add("%s.nextHopIPv6: %s is set but the session carries no IPv6 routes (families %v); add ipv6 to families, e.g. families: [ipv4, ipv6], or remove nextHopIPv6", f, nh, fams)
	}
}

func checkASN(asn uint32) error {
	switch asn {
	case 0:
		return errors.New("is not a valid ASN; use 1..4294967294, e.g. a private ASN 64512..65534")
	case asTrans, 4294967295:
		return errors.New("is reserved (RFC 6793 / RFC 7300); use 1..4294967294, e.g. a private ASN 64512..65534")
	}
	return nil
}

// ReadPassword returns the trimmed MD5 key in path.
func ReadPassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading password file: %w", err)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return "", errors.New("password file is empty")
	}
	// RFC 2385 keys are at most 80 bytes (TCP_MD5SIG_MAXKEYLEN).
	if len(pw) > 80 {
		return "", errors.New("password is longer than 80 bytes")
	}
	return pw, nil
}

func checkPasswordFile(path string) error {
	if _, err := ReadPassword(path); err != nil {
		return fmt.Errorf("is not usable (%v); point it at a readable file holding the key (at most 80 bytes)", err)
	}
	return nil
}
