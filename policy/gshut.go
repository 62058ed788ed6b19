package policy

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// GracefulShutdownConfig is policy.gracefulShutdown: before an operator
// drain or a SIGTERM withdraws the VIPs, they are re-advertised with the
// GRACEFUL_SHUTDOWN community 65535:0 (RFC 8326) for Wait, so routers that
// honour it move traffic to the other nodes while this one still answers.
// Health failures never use it: a dead apiserver is withdrawn at once.
type GracefulShutdownConfig struct {
	Enabled bool          `mapstructure:"enabled"`
	Wait    time.Duration `mapstructure:"wait"`
	// LocalPref, if set, replaces the local preference during the wait
	// (iBGP; RFC 8326 suggests 0).
	LocalPref *uint32 `mapstructure:"localPref"`
	// MED, if set, replaces the MED during the wait (e.g. 4294967295).
	MED *uint32 `mapstructure:"med"`
}

// DefaultGracefulShutdown is on, with a 3s wait.
func DefaultGracefulShutdown() GracefulShutdownConfig {
	return GracefulShutdownConfig{Enabled: true, Wait: 3 * time.Second}
}

// Active reports whether drains and shutdowns go through the GSHUT phase.
func (g GracefulShutdownConfig) Active() bool { return g.Enabled && g.Wait > 0 }

func (g GracefulShutdownConfig) validate() []error {
	if g.Wait < 0 || g.Wait > 5*time.Minute {
		return []error{fmt.Errorf("policy.gracefulShutdown.wait: %v is out of range; use 0 to 5m (default 3s), or enabled: false", g.Wait)}
	}
	if g.Enabled && g.Wait == 0 {
		return []error{fmt.Errorf("policy.gracefulShutdown.wait: 0s with enabled: true would withdraw before any router reacts; use e.g. 3s, or set enabled: false")}
	}
	return nil
}

// WithGracefulShutdown returns a copy of a with the GRACEFUL_SHUTDOWN
// community added (once) and the optional local preference and MED of g.
// a itself is not modified.
func (a Attributes) WithGracefulShutdown(g GracefulShutdownConfig) Attributes {
	return a.overlay([]Community{GracefulShutdown}, g.MED, g.LocalPref)
}

// overlay returns a copy of a with comms added (each once) and med and
// localPref, where set, in place of a's. a is not modified: the healthy
// attributes stay shared by every other state.
func (a Attributes) overlay(comms []Community, med, localPref *uint32) Attributes {
	out := Attributes{
		Communities:      slices.Clone(a.Communities),
		LargeCommunities: slices.Clone(a.LargeCommunities),
		MED:              a.MED,
		LocalPref:        a.LocalPref,
	}
	for _, c := range comms {
		if !slices.Contains(out.Communities, c) {
			out.Communities = append(out.Communities, c)
		}
	}
	if med != nil {
		v := *med
		out.MED = &v
	}
	if localPref != nil {
		v := *localPref
		out.LocalPref = &v
	}
	return out
}

// Priority modes.
const (
	PriorityMED     = "med"
	PriorityPrepend = "prepend"
)

// PriorityMEDStep is the MED added per priority step: MED = med + priority*10,
// leaving room for the network team's own adjustments in between.
const PriorityMEDStep = 10

// priorityMED is the MED sent for a configured one (nil: none), with the
// node's priority added in med mode. field names the MED in errors.
func (c Config) priorityMED(field string, med *uint32) (*uint32, error) {
	if c.Priority == 0 || (c.PriorityMode != PriorityMED && c.PriorityMode != "") {
		return med, nil
	}
	base := uint64(0)
	if med != nil {
		base = uint64(*med)
	}
	v := base + uint64(c.Priority)*PriorityMEDStep
	if v > math.MaxUint32 {
		return nil, fmt.Errorf("policy.priority: %d gives MED %d, above 4294967295; use a smaller priority (MED = %s + priority*%d)", c.Priority, v, field, PriorityMEDStep)
	}
	m := uint32(v)
	return &m, nil
}

// priorityPrepend is the number of prepends sent for a configured count,
// with the node's priority added in prepend mode; it also checks the mode.
func (c Config) priorityPrepend(field string, prepend uint8) (uint8, error) {
	switch c.PriorityMode {
	case PriorityMED, "":
		return prepend, nil
	case PriorityPrepend:
		total := uint64(prepend) + uint64(c.Priority)
		if total > maxPrepend {
			return 0, fmt.Errorf("policy.priority: %d with %s %d gives %d prepends, more than %d; use priorityMode: med or a priority of at most %d", c.Priority, field, prepend, total, maxPrepend, max(0, maxPrepend-int(prepend)))
		}
		return uint8(total), nil
	default:
		return 0, fmt.Errorf("policy.priorityMode: %q is not a choice; use med or prepend", c.PriorityMode)
	}
}
