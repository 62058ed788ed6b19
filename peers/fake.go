package peers

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sync"

	"github.com/vipcast/vipcast/policy"
)

// Fake is an in-memory Router for tests of code that drives a Router. It
// keeps GoBGP's contract (the contract test runs against both): Set needs
// Start first unless it empties the RIB, refuses prefixes that are not its
// VIPs, and Stop drops every path. It is safe for concurrent use. The zero
// value is ready and has no VIPs.
type Fake struct {
	mu           sync.Mutex
	vips         map[netip.Prefix]bool
	running      bool
	announced    map[netip.Prefix]policy.Attributes
	peers        []PeerStatus
	errs         map[string]error
	calls        FakeCalls
	history      []string
	reconfigured []Peering
}

// FakeCalls counts the calls made to a Fake, failed ones included.
type FakeCalls struct {
	Start, Set, Reconfigure, Peers, Stop int
}

var _ Router = (*Fake)(nil)

// NewFake returns a Fake that accepts vips and whose Peers reports peers.
func NewFake(vips []netip.Prefix, peers ...PeerStatus) *Fake {
	f := &Fake{vips: map[netip.Prefix]bool{}}
	for _, v := range vips {
		f.vips[v] = true
	}
	f.SetPeers(peers...)
	return f
}

// SetPeers sets what Peers returns.
func (f *Fake) SetPeers(peers ...PeerStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers = slices.Clone(peers)
}

// SetError makes method ("Start", "Set", "Reconfigure", "Peers", "Stop",
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
// "start", "announce 192.0.2.10/32", "withdraw 192.0.2.10/32",
// "reconfigure", "stop". A Set that changes nothing adds nothing.
func (f *Fake) History() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.history)
}

// Reconfigured returns the peerings of the successful Reconfigure calls.
func (f *Fake) Reconfigured() []Peering {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reconfigured)
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

func (f *Fake) Set(ctx context.Context, want map[netip.Prefix]policy.Attributes) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Set++
	if err := f.fail("Set"); err != nil {
		return err
	}
	for _, p := range slices.SortedFunc(maps.Keys(want), netip.Prefix.Compare) {
		if !f.vips[p] {
			return fmt.Errorf("announce %s: not a configured VIP; vipcast only advertises its VIPs", p)
		}
	}
	if !f.running {
		if len(want) == 0 {
			return nil
		}
		return fmt.Errorf("set: %w", ErrNotRunning)
	}
	for _, p := range slices.SortedFunc(maps.Keys(f.announced), netip.Prefix.Compare) {
		if _, keep := want[p]; !keep {
			delete(f.announced, p)
			f.history = append(f.history, "withdraw "+p.String())
		}
	}
	if f.announced == nil {
		f.announced = map[netip.Prefix]policy.Attributes{}
	}
	for _, p := range slices.SortedFunc(maps.Keys(want), netip.Prefix.Compare) {
		if cur, ok := f.announced[p]; ok && reflect.DeepEqual(cur, want[p]) {
			continue
		}
		f.announced[p] = cloneAttrs(want[p])
		f.history = append(f.history, "announce "+p.String())
	}
	return nil
}

func (f *Fake) Reconfigure(ctx context.Context, p Peering) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Reconfigure++
	if err := f.fail("Reconfigure"); err != nil {
		return err
	}
	if !f.running {
		return fmt.Errorf("reconfigure: %w", ErrNotRunning)
	}
	f.reconfigured = append(f.reconfigured, p)
	f.history = append(f.history, "reconfigure")
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
