// Package addrtest is the one in-memory speaker.Addresses for tests: the
// speaker's own unit tests and apitest's speaker use it. It imports nothing
// from speaker, so the speaker package's internal tests can import it.
package addrtest

import (
	"fmt"
	"net/netip"
	"sync"
)

// Addrs keeps the VIPs "on lo" in a map. If it was given an announced
// function, it also checks the speaker's ordering rule: a VIP never leaves
// lo while its route is still announced. Safe for concurrent use.
type Addrs struct {
	announced func(netip.Prefix) bool

	mu       sync.Mutex
	present  map[netip.Prefix]bool
	errs     []string
	cleanups int
	addErr   error
}

// New returns an Addrs holding stale, as left by a previous run.
// announced, if not nil, tells whether a VIP's route is announced.
func New(announced func(netip.Prefix) bool, stale ...netip.Prefix) *Addrs {
	a := &Addrs{announced: announced, present: map[netip.Prefix]bool{}}
	for _, p := range stale {
		a.present[p] = true
	}
	return a
}

func (a *Addrs) Add(v netip.Prefix) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.addErr != nil {
		return a.addErr
	}
	a.present[v] = true
	return nil
}

func (a *Addrs) Remove(v netip.Prefix) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.checkWithdrawn(v, "removed")
	delete(a.present, v)
	return nil
}

func (a *Addrs) Cleanup(vips []netip.Prefix) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cleanups++
	for _, v := range vips {
		a.checkWithdrawn(v, "cleaned")
		delete(a.present, v)
	}
	return nil
}

func (a *Addrs) Missing(vips []netip.Prefix) ([]netip.Prefix, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []netip.Prefix
	for _, v := range vips {
		if !a.present[v] {
			out = append(out, v)
		}
	}
	return out, nil
}

// checkWithdrawn needs a.mu.
func (a *Addrs) checkWithdrawn(v netip.Prefix, what string) {
	if a.announced != nil && a.announced(v) {
		a.errs = append(a.errs, fmt.Sprintf("%s %s from lo while still announced", v, what))
	}
}

// Has reports whether v is on lo.
func (a *Addrs) Has(v netip.Prefix) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.present[v]
}

// Vanish removes v behind the speaker's back, as `ip addr del` does.
func (a *Addrs) Vanish(v netip.Prefix) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.present, v)
}

// FailAdd makes Add fail with err from now on; nil lets it succeed again.
func (a *Addrs) FailAdd(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.addErr = err
}

// Errors returns the ordering-rule violations seen so far.
func (a *Addrs) Errors() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.errs...)
}

// Cleanups returns how many times Cleanup was called.
func (a *Addrs) Cleanups() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cleanups
}
