package speaker

import (
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"
)

// Reason says why a VIP is or is not announced.
type Reason string

const (
	// ReasonStarting: too few probes yet to call the apiserver healthy.
	ReasonStarting Reason = "starting"
	// ReasonHealthy: announced and at least one session is established.
	ReasonHealthy Reason = "healthy"
	// ReasonNoPeer: healthy and in the RIB, but no session is established,
	// so no router hears it.
	ReasonNoPeer Reason = "no-established-peer"
	// ReasonUnhealthy: the last Fall probes failed (TimeoutFall if all timed out).
	ReasonUnhealthy Reason = "unhealthy"
	// ReasonDamped: healthy again, but held back because health flapped.
	ReasonDamped Reason = "damped"
	// ReasonDrained: an operator took the node out of rotation.
	ReasonDrained Reason = "drained"
	// ReasonShuttingDown: vipcast is stopping.
	ReasonShuttingDown Reason = "shutting-down"
	// ReasonGracefulShutdown: a drain or shutdown is under way and the VIPs
	// are still announced, with the RFC 8326 GRACEFUL_SHUTDOWN community,
	// until the graceful-shutdown wait ends; then they are withdrawn.
	ReasonGracefulShutdown Reason = "graceful-shutdown"
	// ReasonLoopbackFailed: a VIP vanished from the loopback (removed
	// behind vipcast's back) and could not be put back, so the node cannot
	// answer for it: withdrawn until the address can be added again.
	ReasonLoopbackFailed Reason = "loopback-failed"
	// ReasonLastResort: the apiserver answers but fails its check (or is
	// damped), and policy.lastResort is on: announced with attributes that
	// lose to every healthy path, so routers use it only when no healthy
	// node advertises. A refused connection (nothing listens) withdraws
	// instead, with ReasonUnhealthy.
	ReasonLastResort Reason = "last-resort"
)

// Decision is the machine's verdict for one VIP.
type Decision struct {
	VIP netip.Prefix
	// Announce puts the path in the RIB and the address on lo.
	Announce bool
	// Advertised is Announce with at least one session to carry it.
	Advertised bool
	Reason     Reason
	// Since is when Announce or Reason last changed.
	Since time.Time
	// GracefulShutdown: announce with the GRACEFUL_SHUTDOWN attributes.
	GracefulShutdown bool
	// LastResort: announce with the last-resort attributes (Reason is
	// ReasonLastResort).
	LastResort bool
}

// Transition records a change of decision, for logs, status and events.
type Transition struct {
	At       time.Time
	Announce bool
	From, To Reason
	// Detail is the evidence, e.g. the failing probe's reason.
	Detail string
	// Loopback lists the VIPs found missing from the loopback that this
	// transition reports (see Machine.LoopbackMissing); nil for all others.
	// When the missing VIPs were put back at once the decision does not
	// change: From equals To, and the record exists only so that status,
	// metrics and events show what happened.
	Loopback []netip.Prefix
}

// MachineConfig are the machine's knobs.
type MachineConfig struct {
	Rise, Fall int
	// TimeoutFall applies instead of Fall while every failure of the run
	// is a timeout; below Fall (0 included) it is Fall.
	TimeoutFall int
	Damping     DampingConfig
	// Interval is the time between probe starts; ConfirmInterval replaces
	// it after a definite failure that has not yet reached Fall. Zero
	// values leave the schedule to the caller (NextProbe returns zero).
	Interval, ConfirmInterval time.Duration
	// GracefulWait is how long a drain or shutdown keeps an announced VIP
	// announced with GRACEFUL_SHUTDOWN before withdrawing; 0 withdraws at once.
	GracefulWait time.Duration
	// LastResort keeps an unhealthy or damped node announced, as a last
	// resort, while its apiserver still accepts connections.
	LastResort bool
}

// Machine is the decision logic: a pure state machine with no clock, no
// I/O and no goroutines. Every input carries its own time, so tests drive it
// through any sequence deterministically. Not safe for concurrent use: the
// reconcile loop owns it.
type Machine struct {
	cfg  MachineConfig
	vips []netip.Prefix

	healthy         bool
	decided         bool // the hysteresis has produced a verdict at least once
	okRun, failRun  int
	definite        bool // a failure of the current run was not a timeout
	lastProbe       ProbeResult
	penalty         float64
	penaltyAt       time.Time
	suppressed      bool
	drained, peerUp bool
	shutdown        bool
	gshutUntil      time.Time // end of the graceful-shutdown phase; zero if none
	// loFault says why the VIPs cannot be held on the loopback; "" if they can.
	loFault string

	announce bool
	reason   Reason
	since    time.Time
}

// NewMachine starts withdrawn, in ReasonStarting.
func NewMachine(cfg MachineConfig, vips []netip.Prefix, now time.Time) *Machine {
	return &Machine{cfg: cfg, vips: vips, reason: ReasonStarting, since: now}
}

func (m *Machine) fallNeeded() int {
	if m.definite || m.cfg.TimeoutFall < m.cfg.Fall {
		return m.cfg.Fall
	}
	return m.cfg.TimeoutFall
}

// Probe feeds one health-check result.
func (m *Machine) Probe(r ProbeResult, now time.Time) *Transition {
	m.lastProbe = r
	if r.OK {
		m.okRun, m.failRun = m.okRun+1, 0
		if !m.healthy && m.okRun >= m.cfg.Rise {
			m.healthy, m.decided = true, true
		}
	} else {
		if m.failRun == 0 {
			m.definite = false
		}
		m.failRun, m.okRun = m.failRun+1, 0
		m.definite = m.definite || !r.TimedOut
		if (m.healthy || !m.decided) && m.failRun >= m.fallNeeded() {
			if m.healthy {
				m.addPenalty(now)
			}
			m.healthy, m.decided = false, true
		}
	}
	return m.eval(now)
}

// NextProbe is when the next probe should start: an interval after the
// last one, or a confirmation interval after a definite failure while the
// verdict can still flip on it. A run of timeouts keeps the full interval
// (slow is not dead), and so does a node already unhealthy, so a dead
// apiserver is not probed faster than a live one. Zero before any probe.
func (m *Machine) NextProbe() time.Time {
	r := m.lastProbe
	if r.At.IsZero() {
		return time.Time{}
	}
	if !r.OK && !r.TimedOut && m.ConfirmPending() && m.cfg.ConfirmInterval > 0 {
		return r.At.Add(min(m.cfg.ConfirmInterval, m.cfg.Interval))
	}
	return r.At.Add(m.cfg.Interval)
}

// ConfirmPending: failures are accruing toward a withdraw that has not
// happened yet.
func (m *Machine) ConfirmPending() bool {
	return m.failRun > 0 && (m.healthy || !m.decided) && m.failRun < m.fallNeeded()
}

// SetDrained records an operator drain or undrain.
func (m *Machine) SetDrained(drained bool, now time.Time) *Transition {
	if drained && !m.drained {
		m.startGraceful(now)
	}
	m.drained = drained
	if !drained && !m.shutdown {
		// An undrain during the wait cancels the graceful shutdown.
		m.gshutUntil = time.Time{}
	}
	return m.eval(now)
}

// startGraceful begins the GRACEFUL_SHUTDOWN phase if the VIPs are
// announced to someone and no phase is running yet.
func (m *Machine) startGraceful(now time.Time) {
	if m.cfg.GracefulWait > 0 && m.announce && m.peerUp && m.gshutUntil.IsZero() {
		m.gshutUntil = now.Add(m.cfg.GracefulWait)
	}
}

// GracefulUntil is when the running graceful-shutdown phase ends and the
// VIPs are withdrawn (the caller should Tick then); zero if none.
func (m *Machine) GracefulUntil() time.Time { return m.gshutUntil }

// SetPeerUp records whether any BGP session is established.
func (m *Machine) SetPeerUp(up bool, now time.Time) *Transition {
	m.peerUp = up
	return m.eval(now)
}

// Shutdown withdraws for good.
func (m *Machine) Shutdown(now time.Time) *Transition {
	if !m.shutdown {
		m.startGraceful(now)
	}
	m.shutdown = true
	return m.eval(now)
}

// LoopbackMissing records that the VIPs in missing were found gone from the
// loopback while vipcast held them there (an admin, a network tool or
// another program removed them), and the outcome of putting them back:
// err is nil if every one is back. A failure withdraws, with
// ReasonLoopbackFailed, until LoopbackRestored: the node must not attract
// traffic for an address it does not answer. The result is never nil: a
// successful repair changes no decision, but is still reported.
func (m *Machine) LoopbackMissing(missing []netip.Prefix, err error, now time.Time) *Transition {
	what := fmt.Sprintf("VIP %s removed from the loopback behind vipcast's back", joinPrefixes(missing))
	if err != nil {
		m.loFault = fmt.Sprintf("%s; putting it back failed: %v", what, err)
	}
	tr := m.eval(now)
	if tr == nil {
		tr = &Transition{At: now, Announce: m.announce, From: m.reason, To: m.reason, Detail: what + "; put back at once"}
		if err != nil {
			tr.Detail = m.loFault
		}
	}
	tr.Loopback = append([]netip.Prefix(nil), missing...)
	return tr
}

// LoopbackRestored records that every VIP could be added to the loopback
// again after a LoopbackMissing failure.
func (m *Machine) LoopbackRestored(now time.Time) *Transition {
	if m.loFault == "" {
		return nil
	}
	m.loFault = ""
	tr := m.eval(now)
	if tr != nil && tr.From == ReasonLoopbackFailed {
		tr.Detail = strings.TrimSuffix("VIPs back on the loopback; "+tr.Detail, "; ")
	}
	return tr
}

// LoopbackFailed reports whether a LoopbackMissing failure awaits
// LoopbackRestored.
func (m *Machine) LoopbackFailed() bool { return m.loFault != "" }

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// Tick lets time-based state (damping decay) move on without new input.
func (m *Machine) Tick(now time.Time) *Transition { return m.eval(now) }

// Decisions is the verdict for every VIP. All VIPs share the node's one
// apiserver, so they move together; the list form keeps status per VIP.
func (m *Machine) Decisions() []Decision {
	out := make([]Decision, len(m.vips))
	for i, v := range m.vips {
		out[i] = Decision{VIP: v, Announce: m.announce, Advertised: m.announce && m.peerUp, Reason: m.reason, Since: m.since,
			GracefulShutdown: m.GracefulShutdown(), LastResort: m.LastResort()}
	}
	return out
}

// Announce reports whether the VIPs should be in the RIB and on lo.
func (m *Machine) Announce() bool { return m.announce }

// GracefulShutdown reports whether the VIPs are announced with the
// GRACEFUL_SHUTDOWN attributes, ahead of a withdraw.
func (m *Machine) GracefulShutdown() bool { return m.reason == ReasonGracefulShutdown }

// LastResort reports whether the VIPs are announced with the last-resort
// attributes.
func (m *Machine) LastResort() bool { return m.reason == ReasonLastResort }

// lastResortOK: a failing or damped node may stay announced as a last
// resort. Not when nothing listens: a refused connection answers no
// client, while any other failure (a timeout, an HTTP 500, a TLS error)
// comes from an apiserver that still serves /livez, reads from its watch
// cache and errors that say what is wrong.
func (m *Machine) lastResortOK() bool { return m.cfg.LastResort && !m.lastProbe.Refused }

// Drained reports whether an operator took the node out of rotation.
func (m *Machine) Drained() bool { return m.drained }

// LastProbe is the latest health-check result fed to Probe.
func (m *Machine) LastProbe() ProbeResult { return m.lastProbe }

// Counters returns the current run lengths of successes and failures.
func (m *Machine) Counters() (ok, fail int) { return m.okRun, m.failRun }

// Penalty is the damping penalty at now.
func (m *Machine) Penalty(now time.Time) float64 { return m.decayed(now) }

func (m *Machine) addPenalty(now time.Time) {
	if m.cfg.Damping.HalfLife <= 0 {
		return
	}
	m.penalty, m.penaltyAt = m.decayed(now)+1, now
	if m.penalty >= m.cfg.Damping.Suppress {
		m.suppressed = true
	}
}

func (m *Machine) decayed(now time.Time) float64 {
	if m.penalty == 0 || m.cfg.Damping.HalfLife <= 0 {
		return 0
	}
	dt := now.Sub(m.penaltyAt)
	if dt <= 0 {
		return m.penalty
	}
	return m.penalty * math.Exp2(-float64(dt)/float64(m.cfg.Damping.HalfLife))
}

// SuppressedUntil is when a damped VIP becomes eligible again; zero if not
// suppressed.
func (m *Machine) SuppressedUntil() time.Time {
	if !m.suppressed {
		return time.Time{}
	}
	d := m.cfg.Damping
	// penalty * 2^(-t/h) = reuse  =>  t = h * log2(penalty/reuse)
	t := float64(d.HalfLife) * math.Log2(m.penalty/d.Reuse)
	return m.penaltyAt.Add(time.Duration(math.Ceil(t)))
}

func (m *Machine) eval(now time.Time) *Transition {
	if m.suppressed && m.decayed(now) <= m.cfg.Damping.Reuse {
		m.suppressed = false
	}
	announce, reason := false, ReasonHealthy
	// The graceful phase holds only while the apiserver stays healthy: a
	// health failure ends it and withdraws at once, for good.
	graceful := !m.gshutUntil.IsZero() && (m.shutdown || m.drained) && m.decided && m.healthy && !m.suppressed && m.loFault == ""
	if graceful && !now.Before(m.gshutUntil) {
		graceful = false
	}
	if !graceful {
		m.gshutUntil = time.Time{}
	}
	switch {
	case graceful:
		announce, reason = true, ReasonGracefulShutdown
	case m.shutdown:
		reason = ReasonShuttingDown
	case m.drained:
		reason = ReasonDrained
	case m.loFault != "":
		reason = ReasonLoopbackFailed
	case !m.decided:
		reason = ReasonStarting
	case (!m.healthy || m.suppressed) && m.lastResortOK():
		announce, reason = true, ReasonLastResort
	case !m.healthy:
		reason = ReasonUnhealthy
	case m.suppressed:
		reason = ReasonDamped
	case !m.peerUp:
		announce, reason = true, ReasonNoPeer
	default:
		announce = true
	}
	if announce == m.announce && reason == m.reason {
		return nil
	}
	t := &Transition{At: now, Announce: announce, From: m.reason, To: reason, Detail: m.detail(reason, now)}
	m.announce, m.reason, m.since = announce, reason, now
	return t
}

// failures describes the current run of failed probes.
func (m *Machine) failures() string {
	if !m.definite && m.cfg.TimeoutFall > m.cfg.Fall {
		return fmt.Sprintf("%d consecutive timeouts (timeoutFall %d), last: %s", m.failRun, m.cfg.TimeoutFall, m.lastProbe.Reason)
	}
	return fmt.Sprintf("%d consecutive failed probes, last: %s", m.failRun, m.lastProbe.Reason)
}

func (m *Machine) detail(r Reason, now time.Time) string {
	switch r {
	case ReasonLoopbackFailed:
		return m.loFault
	case ReasonUnhealthy:
		d := m.failures()
		if m.cfg.LastResort {
			d += "; nothing listens, so not kept as a last resort"
		}
		return d
	case ReasonLastResort:
		why := m.failures()
		if m.healthy {
			why = m.detail(ReasonDamped, now)
		} else if m.failRun == 0 {
			why = fmt.Sprintf("unhealthy, %d of %d good probes to recover, last: %s", m.okRun, m.cfg.Rise, m.lastProbe.Reason)
		}
		return why + "; announced as a last resort, losing to every healthy path"
	case ReasonHealthy, ReasonNoPeer:
		return fmt.Sprintf("%d consecutive good probes", m.okRun)
	case ReasonGracefulShutdown:
		why := "drain"
		if m.shutdown {
			why = "shutdown"
		}
		return fmt.Sprintf("%s: announced with GRACEFUL_SHUTDOWN 65535:0 until %s, then withdrawn", why, m.gshutUntil.Format(time.RFC3339Nano))
	case ReasonDamped:
		// The penalty as it reached suppress at the last flap: the decayed
		// value now can be below suppress and read like a contradiction.
		return fmt.Sprintf("health flapped (penalty reached %.2f >= suppress %g at %s); held until %s", m.penalty, m.cfg.Damping.Suppress, m.penaltyAt.Format(time.RFC3339), m.SuppressedUntil().Format(time.RFC3339))
	}
	return ""
}
