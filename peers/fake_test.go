package peers

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/vipcast/vipcast/policy"
)

// What only the Fake does: copies, injected errors, history and counters.
// The contract both Routers keep is in router_test.go.
func TestFake(t *testing.T) {
	ctx := context.Background()
	p := netip.MustParsePrefix("192.0.2.10/32")
	up := PeerStatus{Address: netip.MustParseAddr("192.0.2.1"), ASN: 65000, State: StateEstablished}
	f := NewFake([]netip.Prefix{p}, up)
	if err := f.Start(ctx); err != nil {
		t.Fatal(err)
	}
	med := uint32(5)
	if err := f.Set(ctx, map[netip.Prefix]policy.Attributes{p: {MED: &med}}); err != nil {
		t.Fatal(err)
	}
	med = 6 // the Fake keeps its own copy
	if got := f.Announced()[p]; got.MED == nil || *got.MED != 5 {
		t.Errorf("announced attributes %+v, want MED 5", got)
	}

	boom := errors.New("boom")
	f.SetError("Set", boom)
	if err := f.Set(ctx, nil); !errors.Is(err, boom) || !f.IsAnnounced(p) {
		t.Errorf("failing Set = %v, announced %v; want boom and no change", err, f.IsAnnounced(p))
	}
	f.SetError("Set", nil)
	if err := f.Set(ctx, nil); err != nil || f.IsAnnounced(p) {
		t.Errorf("Set(nil) = %v, announced %v", err, f.IsAnnounced(p))
	}

	if ps, err := f.Peers(ctx); err != nil || !AnyEstablished(ps) {
		t.Errorf("Peers = %v, %v", ps, err)
	}
	f.SetPeers()
	if ps, _ := f.Peers(ctx); len(ps) != 0 {
		t.Errorf("Peers after SetPeers() = %v", ps)
	}
	f.SetError("", boom)
	if _, err := f.Peers(ctx); !errors.Is(err, boom) {
		t.Errorf("Peers with a global error = %v", err)
	}
	f.SetError("", nil)

	if err := f.Reconfigure(ctx, Peering{BGP: Global{ASN: 64512}}); err != nil {
		t.Fatal(err)
	}
	if got := f.Reconfigured(); len(got) != 1 || got[0].BGP.ASN != 64512 {
		t.Errorf("Reconfigured = %+v", got)
	}
	if err := f.Set(ctx, map[netip.Prefix]policy.Attributes{p: {}}); err != nil {
		t.Fatal(err)
	}
	if err := f.Stop(ctx); err != nil || f.Running() || len(f.Announced()) != 0 {
		t.Errorf("Stop = %v, running %v, announced %v", err, f.Running(), f.Announced())
	}
	want := []string{"start", "announce 192.0.2.10/32", "withdraw 192.0.2.10/32", "reconfigure", "announce 192.0.2.10/32", "stop"}
	if got := f.History(); !slices.Equal(got, want) {
		t.Errorf("History = %q, want %q", got, want)
	}
	if c := f.Calls(); c != (FakeCalls{Start: 1, Set: 4, Reconfigure: 1, Peers: 3, Stop: 1}) {
		t.Errorf("Calls = %+v", c)
	}
}

func TestFakeConcurrent(t *testing.T) {
	ctx := context.Background()
	var vips []netip.Prefix
	for i := range 8 {
		vips = append(vips, netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 32))
	}
	f := NewFake(vips)
	if err := f.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, p := range vips {
		wg.Go(func() {
			for range 100 {
				_ = f.Set(ctx, map[netip.Prefix]policy.Attributes{p: {}})
				_, _ = f.Peers(ctx)
				_ = f.Set(ctx, nil)
				f.SetPeers(PeerStatus{State: StateEstablished})
			}
		})
	}
	wg.Wait()
	if c := f.Calls(); c.Set != 1600 || len(f.Announced()) != 0 {
		t.Errorf("Calls = %+v, announced %v", c, f.Announced())
	}
}
