package bfd

import (
	"context"
	"log/slog"
	"time"

	"golang.org/x/time/rate"
)

// Flap damping. A peer whose session goes Up and Down again and again (a
// broken link, a hostile sender forging state changes) would otherwise
// drag the BGP session with it each time: 9,500 flaps in 7 s in the
// issue's test. After DampFlaps failures within DampWindow the session's
// Up is held from the clients for DampHold, and every failure meanwhile
// starts the hold again; BFD itself keeps running. When the hold ends with
// the session Up, the clients get the Up they missed.
const (
	DampFlaps  = 5
	DampWindow = time.Minute
	DampHold   = time.Minute
)

// State-change log lines: a burst of logBurst per session, then one per
// logEvery; the next line that gets out says how many were left out.
const (
	logBurst = 10
	logEvery = 6 * time.Second
)

// damper is one session's flap history and held notification. Owned by
// the Run goroutine.
type damper struct {
	flaps    []time.Time // failures within DampWindow
	until    time.Time   // hold end; zero when not damped
	heldUp   bool        // the clients have not been told about the current Up
	heldFrom State       // the state the clients last saw
}

// failure records a failure at now and reports whether it starts (or
// restarts) the hold.
func (d *damper) failure(now time.Time, hold time.Duration) bool {
	keep := d.flaps[:0]
	for _, t := range d.flaps {
		if now.Sub(t) < DampWindow {
			keep = append(keep, t)
		}
	}
	d.flaps = append(keep, now)
	if len(d.flaps) > DampFlaps { // only the last DampFlaps matter: bounded
		d.flaps = d.flaps[len(d.flaps)-DampFlaps:]
	}
	if len(d.flaps) >= DampFlaps || d.damped(now) {
		if hold <= 0 {
			hold = DampHold
		}
		d.until = now.Add(hold)
		return true
	}
	return false
}

func (d *damper) damped(now time.Time) bool { return !d.until.IsZero() && now.Before(d.until) }

// deadline is when Run must look at the session again for the damper.
func (d *damper) deadline() time.Time {
	if d.heldUp {
		return d.until
	}
	return time.Time{}
}

// logLimiter rate-limits one session's log lines.
type logLimiter struct {
	lim        *rate.Limiter
	suppressed int
}

func newLogLimiter() *logLimiter {
	return &logLimiter{lim: rate.NewLimiter(rate.Every(logEvery), logBurst)}
}

// log writes the line if the budget allows, with the count of lines left
// out since the last one.
func (l *logLimiter) log(lg *slog.Logger, now time.Time, lvl slog.Level, msg string, args ...any) {
	if !l.lim.AllowN(now, 1) {
		l.suppressed++
		return
	}
	if l.suppressed > 0 {
		args = append(args, "suppressed", l.suppressed)
		l.suppressed = 0
	}
	lg.Log(context.Background(), lvl, msg, args...)
}
