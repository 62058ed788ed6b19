package peers

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"

	"github.com/vipcast/vipcast/policy"
)

// Fake is an in-memory Router for tests of code that drives a Router. It
// mirrors GoBGP's contract: Announce needs Start first, Announce replaces,
// withdrawing an absent prefix is fine, and Stop drops every path. It is
// safe for concurrent use. The zero value is ready.
type Fake struct {
	mu        sync.Mutex
	running   bool
	announced map[netip.Prefix]policy.Attributes
	peers     []PeerStatus
	errs      map[string]error
	calls     FakeCalls
	history   []string
}

// FakeCalls counts the calls made to a Fake, failed ones included.
type FakeCalls struct {
	Start, Announce, Withdraw, Peers, Stop int
}

var _ Router = (*Fake)(nil)

// NewFake returns a Fake whose Peers reports peers.
func NewFake(peers ...PeerStatus) *Fake {
	f := &Fake{}
	f.SetPeers(peers...)
	return f
}

// SetPeers sets what Peers returns.
func (f *Fake) SetPeers(peers ...PeerStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers = slices.Clone(peers)
}

// SetError makes method ("Start", "Announce", "Withdraw", "Peers", "Stop",
// or "" for all of them) fail with err from now on; a nil err clears it.
// A failed call changes no state.
func (f *Fake) SetError(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.errs == nil {
		f.errs = map[string]error{}
	}
	if err == nil {
		delete(f.errs, method)
		return
	}
	f.errs[method] = err
}

// Announced returns a copy of the prefixes currently announced.
func (f *Fake) Announced() map[netip.Prefix]policy.Attributes {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.announced)
}

// IsAnnounced reports whether prefix is currently announced.
func (f *Fake) IsAnnounced(prefix netip.Prefix) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.announced[prefix]
	return ok
}

// Running reports whether Start succeeded and Stop was not called since.
func (f *Fake) Running() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running
}

// Calls returns the call counters.
func (f *Fake) Calls() FakeCalls {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// History returns the successful state changes in order, e.g.
// "start", "announce 192.0.2.10/32", "withdraw 192.0.2.10/32", "stop".
func (f *Fake) History() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.history)
}

// fail returns the injected error for method; f.mu must be held.
func (f *Fake) fail(method string) error {
	if err := f.errs[method]; err != nil {
		return err
	}
	return f.errs[""]
}

func (f *Fake) Start(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Start++
	if err := f.fail("Start"); err != nil {
		return err
	}
	if f.running {
		return fmt.Errorf("start BGP: already started")
	}
	f.running = true
	f.history = append(f.history, "start")
	return nil
}

func (f *Fake) Announce(ctx context.Context, prefix netip.Prefix, attrs policy.Attributes) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Announce++
	if err := f.fail("Announce"); err != nil {
		return err
	}
	if !f.running {
		return fmt.Errorf("announce %s: %w", prefix, ErrNotRunning)
	}
	if f.announced == nil {
		f.announced = map[netip.Prefix]policy.Attributes{}
	}
	f.announced[prefix] = cloneAttrs(attrs)
	f.history = append(f.history, "announce "+prefix.String())
	return nil
}

func (f *Fake) Withdraw(ctx context.Context, prefix netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Withdraw++
	if err := f.fail("Withdraw"); err != nil {
		return err
	}
	if _, ok := f.announced[prefix]; !ok {
		return nil
	}
	delete(f.announced, prefix)
	f.history = append(f.history, "withdraw "+prefix.String())
	return nil
}

func (f *Fake) Peers(ctx context.Context) ([]PeerStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Peers++
	if err := f.fail("Peers"); err != nil {
		return nil, err
	}
	return slices.Clone(f.peers), nil
}

func (f *Fake) Stop(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Stop++
	if err := f.fail("Stop"); err != nil {
		return err
	}
	if f.running {
		f.history = append(f.history, "stop")
	}
	f.running = false
	f.announced = nil
	return nil
}
