package peers

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strings"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// slogAdapter feeds GoBGP's logger interface into slog. It also hands every
// peer-topic record to observe, because GoBGP's API does not expose why a
// session failed; its log records are the only place the reason appears.
type slogAdapter struct {
	log     *slog.Logger
	observe func(level slog.Level, msg string, fields gobgplog.Fields)
}

var _ gobgplog.Logger = (*slogAdapter)(nil)

func (a *slogAdapter) Panic(msg string, f gobgplog.Fields) {
	a.emit(slog.LevelError, msg, f)
	panic("gobgp: " + msg)
}

// Fatal panics rather than exiting: GoBGP's code after Fatal assumes it does
// not return, and a panic keeps the stack trace.
func (a *slogAdapter) Fatal(msg string, f gobgplog.Fields) {
	a.emit(slog.LevelError, msg, f)
	panic("gobgp: " + msg)
}

func (a *slogAdapter) Error(msg string, f gobgplog.Fields) { a.emit(slog.LevelError, msg, f) }
func (a *slogAdapter) Warn(msg string, f gobgplog.Fields) {
	level := slog.LevelWarn
	if msg == "prefix limit reached" {
		// Repeated for every UPDATE still queued when the session closes;
		// vipcast logs the event once, with the limit and the fix.
		level = slog.LevelDebug
	}
	a.emit(level, msg, f)
}

// Info is demoted: GoBGP uses it to echo configuration calls and session
// changes that vipcast already logs itself, in a friendlier form.
func (a *slogAdapter) Info(msg string, f gobgplog.Fields)  { a.emit(slog.LevelDebug, msg, f) }
func (a *slogAdapter) Debug(msg string, f gobgplog.Fields) { a.emit(slog.LevelDebug, msg, f) }

// SetLevel is ignored: the slog handler decides what is printed.
func (a *slogAdapter) SetLevel(gobgplog.LogLevel) {}

// GetLevel claims Debug so GoBGP emits the records it guards behind a level
// check, notably "failed to connect" with the dial error that becomes a
// peer's LastError. The slog handler still filters what is printed.
func (a *slogAdapter) GetLevel() gobgplog.LogLevel { return gobgplog.DebugLevel }

func (a *slogAdapter) emit(level slog.Level, msg string, f gobgplog.Fields) {
	if a.observe != nil {
		a.observe(level, msg, f)
	}
	ctx := context.Background()
	if a.log == nil || !a.log.Enabled(ctx, level) {
		return
	}
	a.log.LogAttrs(ctx, level, msg, fieldAttrs(f)...)
}

// fieldAttrs converts GoBGP's fields to slog attributes with vipcast's
// lowercase keys, sorted for stable output, dropping anything that looks like
// a password.
func fieldAttrs(f gobgplog.Fields) []slog.Attr {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		v := f[k]
		key := strings.ToLower(k)
		switch {
		case strings.Contains(key, "password"):
			continue
		case k == "Key" && f["Topic"] == "Peer":
			key = "peer"
		case key == "error":
			key = "err"
		}
		if err, ok := v.(error); ok {
			v = err.Error()
		} else if _, ok := v.(fmt.Stringer); ok {
			v = fmt.Sprint(v)
		}
		attrs = append(attrs, slog.Any(key, v))
	}
	return attrs
}

// observe turns GoBGP's peer log records into LastError, and warns once per
// outage when a connection attempt fails, with the password hint because a
// key mismatch is silent: the router drops the SYNs and the dial times out.
func (g *GoBGP) observe(level slog.Level, msg string, f gobgplog.Fields) {
	if f["Topic"] != "Peer" {
		return
	}
	key, _ := f["Key"].(string)
	addr, err := netip.ParseAddr(key)
	if err != nil {
		return
	}
	if msg == "prefix limit reached" {
		g.prefixLimit(addr, f)
		return
	}
	reason := peerReason(level, msg, f)
	if reason == "" {
		return
	}
	g.pmu.Lock()
	t, ok := g.peers[addr]
	if !ok {
		g.pmu.Unlock()
		return
	}
	if t.prefixLimited && (msg == "sent notification" || msg == "Peer Down") {
		// The Cease and the session end that the limit caused: the
		// limit's own message says more.
		g.pmu.Unlock()
		return
	}
	raw := reason
	if msg == "failed to connect" && t.password {
		// The hint belongs where operators look first (status's LAST
		// ERROR), not only in a log line printed once per outage.
		reason += "; with a TCP MD5 key, check that passwordFile matches the router's password"
	}
	t.lastError = reason
	warn := msg == "failed to connect" && !t.warned
	t.warned = t.warned || warn
	password := t.password
	g.pmu.Unlock()
	switch {
	case warn && password:
		g.log.Warn("cannot connect to BGP peer; check that passwordFile matches the router's password", "peer", addr, "err", raw)
	case warn:
		g.log.Warn("cannot connect to BGP peer", "peer", addr, "err", reason)
	}
}

func peerReason(level slog.Level, msg string, f gobgplog.Fields) string {
	switch msg {
	case "failed to connect":
		return fmt.Sprintf("connect: %v", f["Error"])
	case "Peer Down":
		if fmt.Sprint(f["Reason"]) == "dying" {
			// vipcast deleted the peer (to recreate it, on a reload or
			// at stop): the error that led there says more.
			return ""
		}
		return fmt.Sprintf("session down: %v", f["Reason"])
	case "sent notification", "received notification":
		code, _ := f["Code"].(uint8)
		sub, _ := f["Subcode"].(uint8)
		s := msg + ": " + bgp.NewNotificationErrorCode(code, sub).String()
		if c, _ := f["Communicated-Reason"].(string); c != "" {
			s += fmt.Sprintf(" (%q)", c)
		}
		return s
	}
	if level < slog.LevelWarn {
		return ""
	}
	for _, k := range []string{"Error", "Err", "Data"} {
		if v, ok := f[k]; ok {
			return fmt.Sprintf("%s: %v", msg, v)
		}
	}
	return msg
}

// prefixWarnPct is the share of MaxPrefixes at which GoBGP warns first.
const prefixWarnPct = 80

// prefixLimit handles GoBGP's "prefix limit reached" records: a warning at
// prefixWarnPct, and the limit itself, after which GoBGP sends a Cease
// (maximum number of prefixes reached), drops everything the router sent
// and keeps the peer administratively down until vipcast restarts or the
// peer's configuration changes (as a router's maximum-prefix without
// restart): a router leaking its table gets no session to leak into.
func (g *GoBGP) prefixLimit(addr netip.Addr, f gobgplog.Fields) {
	g.pmu.Lock()
	t, ok := g.peers[addr]
	if !ok {
		g.pmu.Unlock()
		return
	}
	n := t.maxPrefixes
	if n == 0 {
		n = DefaultMaxPrefixes
	}
	family := fmt.Sprint(f["Family"])
	if _, warning := f["Pct"]; warning {
		g.pmu.Unlock()
		g.log.Warn("BGP peer sends routes, which vipcast never imports: near the prefix limit", "peer", addr, "family", family, "limit", n, "pct", f["Pct"])
		return
	}
	if t.prefixLimited {
		// Further UPDATEs read before the session is down: same event.
		g.pmu.Unlock()
		return
	}
	t.prefixLimitHits++
	t.prefixLimited = true
	t.lastError = fmt.Sprintf("prefix limit: the router sent more than %d %s routes (peers[].maxPrefixes); vipcast imports none, so the session was closed with a Cease and stays down; stop the router sending routes to this node (e.g. an outbound filter), then restart vipcast or change this peer's configuration", n, family)
	hits := t.prefixLimitHits
	g.pmu.Unlock()
	g.log.Warn("BGP peer exceeded the prefix limit: closing the session, which stays down until vipcast restarts or the peer's configuration changes", "peer", addr, "family", family, "limit", n, "hits", hits)
}
