// Package speaker is vipcast's reconcile loop: it probes the local
// kube-apiserver, feeds the results to a pure state machine, and applies the
// machine's decisions to the BGP router and to the VIP addresses on lo.
package speaker

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"time"

	"github.com/vipcast/vipcast/policy"
)

// Config is the speaker's part of the configuration file.
type Config struct {
	// VIPs are the host prefixes to advertise: /32 for IPv4, /128 for IPv6.
	VIPs     []string       `mapstructure:"vips"`
	Loopback LoopbackConfig `mapstructure:"loopback"`
	Health   HealthConfig   `mapstructure:"health"`
	Damping  DampingConfig  `mapstructure:"damping"`
	Shutdown ShutdownConfig `mapstructure:"shutdown"`

	// The settings below belong to other sections of the file (api,
	// policy), which validate them; the program copies them in. They are
	// never read from the file here ("-"), so each has one key.

	// Attributes are the path attributes every announce carries.
	Attributes policy.Attributes `mapstructure:"-" json:"-"`
	// StateFile, if set, keeps an operator's drain across restarts: New
	// reads it and the speaker starts drained if it says so.
	StateFile string `mapstructure:"-" json:"-"`
	// GracefulShutdown, when active, re-advertises the VIPs with the RFC
	// 8326 GRACEFUL_SHUTDOWN community for its Wait before a drain or
	// shutdown withdraws them.
	GracefulShutdown policy.GracefulShutdownConfig `mapstructure:"-" json:"-"`
	// LastResort, when enabled, keeps a failing node announced with
	// losing attributes while its apiserver accepts connections.
	LastResort policy.LastResortConfig `mapstructure:"-" json:"-"`
}

// LoopbackConfig controls the VIP addresses on the node.
type LoopbackConfig struct {
	// Interface carries the VIPs; lo unless the node needs another.
	Interface string `mapstructure:"interface"`
	// OnWithdraw is "remove" (default) or "keep". Removing sends the node's
	// own clients of the VIP (kubelet, controllers) through the router to a
	// healthy node instead of to the failed local apiserver.
	OnWithdraw string `mapstructure:"onWithdraw"`
	// RemoveDelay keeps the address this long after a withdraw so packets
	// already on their way while the routers converge are still answered.
	RemoveDelay time.Duration `mapstructure:"removeDelay"`
}

// HealthConfig is the probe of the local kube-apiserver.
type HealthConfig struct {
	URL string `mapstructure:"url"`
	// CAFile verifies the serving certificate; empty uses the system pool.
	CAFile string `mapstructure:"caFile"`
	// ServerName is checked against the certificate; kubeadm's serving
	// certificate lists "kubernetes" but not always 127.0.0.1.
	ServerName string `mapstructure:"serverName"`
	// TokenFile holds a bearer token, re-read when it changes.
	TokenFile string `mapstructure:"tokenFile"`
	// CertFile and KeyFile are an optional client certificate.
	CertFile string `mapstructure:"certFile"`
	KeyFile  string `mapstructure:"keyFile"`
	// InsecureSkipVerify disables TLS verification; never the default.
	InsecureSkipVerify bool          `mapstructure:"insecureSkipVerify"`
	Interval           time.Duration `mapstructure:"interval"`
	Timeout            time.Duration `mapstructure:"timeout"`
	// Rise consecutive successes announce; Fall consecutive failures withdraw.
	Rise int `mapstructure:"rise"`
	Fall int `mapstructure:"fall"`
	// TimeoutFall consecutive failures withdraw when every one of them was
	// a timeout: an apiserver that answers slowly (CPU starvation, a GC
	// pause) is not dead, while a refusal, a reset or an HTTP error is
	// definite and needs only Fall.
	TimeoutFall int `mapstructure:"timeoutFall"`
	// ConfirmInterval (capped at Interval) replaces Interval before the probe that follows a
	// definite failure (refused, reset, an HTTP error) while Fall is not
	// yet reached: a crash is certain at once, so waiting a whole interval
	// to confirm it only adds to the failover. At or above Interval it is off.
	ConfirmInterval time.Duration `mapstructure:"confirmInterval"`
}

// DampingConfig suppresses a VIP whose health keeps flapping (RFC 2439
// style): each health withdraw adds 1 to a penalty that halves every
// HalfLife; at Suppress (default 2.5: a third flap in quick succession)
// the VIP stays withdrawn until the penalty decays
// to Reuse.
type DampingConfig struct {
	// HalfLife of the penalty; 0 disables damping.
	HalfLife time.Duration `mapstructure:"halfLife"`
	Suppress float64       `mapstructure:"suppress"`
	Reuse    float64       `mapstructure:"reuse"`
}

// ShutdownConfig is the SIGTERM sequence.
type ShutdownConfig struct {
	// DrainPeriod is the wait between the withdraw and the removal of the
	// VIPs and the sessions, so routers converge while the node still
	// answers for the VIP.
	DrainPeriod time.Duration `mapstructure:"drainPeriod"`
}

// Default returns the defaults, chosen for sub-second failover: a 100ms
// probe interval and fall 2 detect a dead apiserver in 100-200ms, leaving
// the routers' ~70ms to stay well under half a second; rise 3 plus damping
// keep a flaky apiserver from flapping the route. the README has
// the full reasoning.
func Default() Config {
	return Config{
		Loopback: LoopbackConfig{Interface: "lo", OnWithdraw: OnWithdrawRemove, RemoveDelay: 500 * time.Millisecond},
		Health: HealthConfig{
			URL:         "https://127.0.0.1:6443/readyz",
			ServerName:  "kubernetes",
			Interval:    100 * time.Millisecond,
			Timeout:     80 * time.Millisecond,
			Rise:        3,
			Fall:        2,
			TimeoutFall: 4,
			// Measured in the lab: a SIGKILLed apiserver refuses at once and
			// stays down, while 20ms still spaces probes wide enough that a
			// transient error is not counted twice within a blink.
			ConfirmInterval: 20 * time.Millisecond,
		},
		Damping:  DampingConfig{HalfLife: 15 * time.Second, Suppress: 2.5, Reuse: 1},
		Shutdown: ShutdownConfig{DrainPeriod: 2 * time.Second},
	}
}

// OnWithdraw values.
const (
	OnWithdrawRemove = "remove"
	OnWithdrawKeep   = "keep"
)

// Prefixes returns the parsed VIPs. An entry that does not parse is an
// error naming it (Validate says more); the ones that parse are returned
// all the same, for removing stale VIPs with a configuration that failed.
func (c Config) Prefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(c.VIPs))
	var errs []error
	for i, s := range c.VIPs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("vips[%d]: %q is not a prefix; write a host prefix such as 203.0.113.10/32", i, s))
			continue
		}
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

// Validate returns every problem at once, each naming the field, the value
// and the fix.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if len(c.VIPs) == 0 {
		add("vips: none configured; list at least one host prefix, e.g. vips: [203.0.113.10/32]")
	}
	seen := map[netip.Prefix]int{}
	for i, s := range c.VIPs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			if a, aerr := netip.ParseAddr(s); aerr == nil {
				add("vips[%d]: %q has no prefix length; write %s/%d", i, s, a, a.BitLen())
			} else {
				add("vips[%d]: %q is not a prefix; write a host prefix such as 203.0.113.10/32 or 2001:db8::10/128", i, s)
			}
			continue
		}
		if p.Addr().Zone() != "" || p.Addr().Is4In6() {
			add("vips[%d]: %q is not a plain address; drop the zone or IPv4-mapped form", i, s)
			continue
		}
		if !p.IsSingleIP() {
			add("vips[%d]: %q is not a host prefix; use /%d (one address per VIP)", i, s, p.Addr().BitLen())
			continue
		}
		if a := p.Addr(); a.IsLoopback() || a.IsMulticast() || a.IsUnspecified() || a.IsLinkLocalUnicast() {
			add("vips[%d]: %q is a loopback, multicast, unspecified or link-local address; use a routable address", i, s)
			continue
		}
		if j, dup := seen[p]; dup {
			add("vips[%d]: %q repeats vips[%d]; list each VIP once", i, s, j)
		}
		seen[p] = i
	}

	l := c.Loopback
	if l.Interface == "" {
		add("loopback.interface: empty; use lo")
	} else if len(l.Interface) > 11 {
		// The address label is "<interface>:vip" and must fit IFNAMSIZ-1.
		add("loopback.interface: %q is longer than 11 characters; use lo or a shorter name", l.Interface)
	}
	if l.OnWithdraw != OnWithdrawRemove && l.OnWithdraw != OnWithdrawKeep {
		add("loopback.onWithdraw: %q is not a choice; use remove or keep", l.OnWithdraw)
	}
	if l.RemoveDelay < 0 || l.RemoveDelay > time.Minute {
		add("loopback.removeDelay: %v is out of range; use 0 to 1m (default 500ms)", l.RemoveDelay)
	}

	h := c.Health
	u, err := url.Parse(h.URL)
	switch {
	case h.URL == "":
		add("health.url: empty; use the local apiserver's readiness endpoint, e.g. https://127.0.0.1:6443/readyz")
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		add("health.url: %q is not an http(s) URL; use e.g. https://127.0.0.1:6443/readyz", h.URL)
	}
	if h.Interval < 10*time.Millisecond || h.Interval > time.Minute {
		add("health.interval: %v is out of range; use 10ms to 1m (default 100ms)", h.Interval)
	}
	if h.Timeout < 5*time.Millisecond {
		add("health.timeout: %v is too short; use at least 5ms (default 80ms)", h.Timeout)
	} else if h.Interval > 0 && h.Timeout >= h.Interval {
		add("health.timeout: %v is not shorter than health.interval %v, so probes would queue and a hung apiserver would be seen late; lower timeout or raise interval (defaults 80ms and 100ms)", h.Timeout, h.Interval)
	}
	// Above interval it is capped, not refused: a short interval must not
	// make the default confirmInterval an error.
	if h.ConfirmInterval < 5*time.Millisecond || h.ConfirmInterval > time.Minute {
		add("health.confirmInterval: %v is out of range; use 5ms to 1m (default 20ms; at or above health.interval it turns fast confirmation off)", h.ConfirmInterval)
	}
	if h.Rise < 1 || h.Rise > 100 {
		add("health.rise: %d is out of range; use 1 to 100 (default 3)", h.Rise)
	}
	if h.Fall < 1 || h.Fall > 100 {
		add("health.fall: %d is out of range; use 1 to 100 (default 2)", h.Fall)
	} else if h.TimeoutFall < h.Fall || h.TimeoutFall > 100 {
		add("health.timeoutFall: %d is out of range; use health.fall (%d) to 100 (default 4): timeouts alone never withdraw sooner than other failures", h.TimeoutFall, h.Fall)
	}
	for _, f := range []struct{ name, path string }{{"health.caFile", h.CAFile}, {"health.tokenFile", h.TokenFile}, {"health.certFile", h.CertFile}, {"health.keyFile", h.KeyFile}} {
		if f.path == "" {
			continue
		}
		if fh, err := os.Open(f.path); err != nil {
			add("%s: %q cannot be read (%v); point it at a readable file", f.name, f.path, errors.Unwrap(err))
		} else {
			fh.Close()
		}
	}
	if (h.CertFile == "") != (h.KeyFile == "") {
		add("health.certFile and health.keyFile: %q and %q; set both for a client certificate, or neither", h.CertFile, h.KeyFile)
	}
	if h.InsecureSkipVerify && h.CAFile != "" {
		add("health.insecureSkipVerify: true with health.caFile %q; remove insecureSkipVerify so the CA is used", h.CAFile)
	}
	if u != nil && u.Scheme == "http" && (h.CAFile != "" || h.CertFile != "" || h.InsecureSkipVerify) {
		add("health.url: %q is plain http but TLS settings are set; use an https URL", h.URL)
	}

	d := c.Damping
	if d.HalfLife < 0 {
		add("damping.halfLife: %v is negative; use 0 to disable or a duration such as 15s", d.HalfLife)
	}
	if d.HalfLife > 0 {
		if d.Reuse <= 0 || d.Suppress <= d.Reuse {
			add("damping: suppress %g and reuse %g; use 0 < reuse < suppress (defaults 2.5 and 1)", d.Suppress, d.Reuse)
		}
	}
	if c.Shutdown.DrainPeriod < 0 || c.Shutdown.DrainPeriod > 10*time.Minute {
		add("shutdown.drainPeriod: %v is out of range; use 0 to 10m (default 2s)", c.Shutdown.DrainPeriod)
	}
	return errors.Join(errs...)
}
