package peers

import (
	"context"
	"net/netip"
	"time"

	"github.com/vipcast/vipcast/policy"
)

// Router is the vendor-neutral BGP speaker the reconcile loop drives. The
// GoBGP implementation lives in gobgp.go; a move to another BGP library
// replaces that one file. Fake is the in-memory implementation for tests.
type Router interface {
	// Start brings up the BGP instance and begins connecting to the peers.
	Start(ctx context.Context) error
	// Set makes the locally originated paths exactly want: a prefix not in
	// want is withdrawn, one in it is announced with its attributes, and
	// one already announced with the same attributes is left alone (no
	// UPDATE). A prefix that is not one of the router's VIPs fails the
	// whole call and changes nothing. Outside Start..Stop an empty want is
	// a no-op and any other fails with ErrNotRunning. On an error some
	// prefixes may have changed; calling Set again with the same want
	// finishes the job.
	Set(ctx context.Context, want map[netip.Prefix]policy.Attributes) error
	// Reconfigure applies a new peering (see Config.Parse) to the running
	// router, touching only the sessions that changed. Changes it cannot
	// make live fail with ErrRestartRequired and change nothing; outside
	// Start..Stop it fails with ErrNotRunning.
	Reconfigure(ctx context.Context, p Peering) error
	// Peers reports every configured peer's session.
	Peers(ctx context.Context) ([]PeerStatus, error)
	// Stop closes every session with a Cease notification and shuts the
	// instance down.
	Stop(ctx context.Context) error
}

// SessionNotifier is a Router that says when a session changed state, so
// its reader can read Peers then instead of polling it: a poll often
// enough to be current costs more idle CPU than the health probes.
type SessionNotifier interface {
	// SessionsChanged receives after a session changed state; one pending
	// notice stands for any number of changes.
	SessionsChanged() <-chan struct{}
}

// SessionState is the BGP FSM state of a session (RFC 4271 section 8).
type SessionState string

const (
	StateUnknown     SessionState = "unknown"
	StateIdle        SessionState = "idle"
	StateConnect     SessionState = "connect"
	StateActive      SessionState = "active"
	StateOpenSent    SessionState = "opensent"
	StateOpenConfirm SessionState = "openconfirm"
	StateEstablished SessionState = "established"
)

// PeerStatus is what an operator needs to know about one session.
type PeerStatus struct {
	Address netip.Addr
	ASN     uint32
	State   SessionState
	// Since is when the session entered State; zero if unknown.
	Since time.Time
	// PrefixesSent counts the paths in the peer's adj-RIB-out.
	PrefixesSent int
	// LastError is the last reason the session went down, if any.
	LastError string
	// PrefixLimitHits counts the sessions closed because the router sent
	// more routes than the peer's MaxPrefixes.
	PrefixLimitHits uint64
	// BFD is the peer's BFD session; nil when BFD is off.
	BFD *BFDStatus
}

// BFDStatus is one BFD session as an operator sees it.
type BFDStatus struct {
	// State and RemoteState are lower case: admindown, down, init, up.
	State       string
	RemoteState string
	// Diag is the local diagnostic of the last change, e.g. "control
	// detection time expired".
	Diag  string
	Since time.Time
	// TxInterval and DetectTime are the negotiated values.
	TxInterval, DetectTime time.Duration
	RxPackets, TxPackets   uint64
	Flaps                  uint64
}

// AnyEstablished reports whether at least one session is established.
func AnyEstablished(ps []PeerStatus) bool {
	for _, p := range ps {
		if p.State == StateEstablished {
			return true
		}
	}
	return false
}
