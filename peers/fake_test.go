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

func TestFake(t *testing.T) {
	ctx := context.Background()
	p := netip.MustParsePrefix("192.0.2.10/32")
	up := PeerStatus{Address: netip.MustParseAddr("192.0.2.1"), ASN: 65000, State: StateEstablished}
	f := NewFake(up)

	if err := f.Announce(ctx, p, policy.Attributes{}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Announce before Start = %v, want ErrNotRunning", err)
	}
	if err := f.Start(ctx); err != nil {
		t.Fatal(err)
	}
	med := uint32(5)
	if err := f.Announce(ctx, p, policy.Attributes{MED: &med}); err != nil {
		t.Fatal(err)
	}
	med = 6 // the Fake keeps its own copy
	if got := f.Announced()[p]; got.MED == nil || *got.MED != 5 {
		t.Errorf("announced attributes %+v, want MED 5", got)
	}
	if err := f.Withdraw(ctx, netip.MustParsePrefix("192.0.2.99/32")); err != nil {
		t.Errorf("Withdraw of absent prefix: %v", err)
	}

	boom := errors.New("boom")
	f.SetError("Withdraw", boom)
	if err := f.Withdraw(ctx, p); !errors.Is(err, boom) || !f.IsAnnounced(p) {
		t.Errorf("failing Withdraw = %v, announced %v; want boom and no change", err, f.IsAnnounced(p))
	}
	f.SetError("Withdraw", nil)
	if err := f.Withdraw(ctx, p); err != nil || f.IsAnnounced(p) {
		t.Errorf("Withdraw = %v, announced %v", err, f.IsAnnounced(p))
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

	if err := f.Announce(ctx, p, policy.Attributes{}); err != nil {
		t.Fatal(err)
	}
	if err := f.Stop(ctx); err != nil || f.Running() || len(f.Announced()) != 0 {
		t.Errorf("Stop = %v, running %v, announced %v", err, f.Running(), f.Announced())
	}
	want := []string{"start", "announce 192.0.2.10/32", "withdraw 192.0.2.10/32", "announce 192.0.2.10/32", "stop"}
	if got := f.History(); !slices.Equal(got, want) {
		t.Errorf("History = %q, want %q", got, want)
	}
	if c := f.Calls(); c != (FakeCalls{Start: 1, Announce: 3, Withdraw: 3, Peers: 3, Stop: 1}) {
		t.Errorf("Calls = %+v", c)
	}
}

func TestFakeConcurrent(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	if err := f.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 32)
			for range 100 {
				_ = f.Announce(ctx, p, policy.Attributes{})
				_, _ = f.Peers(ctx)
				_ = f.Withdraw(ctx, p)
				f.SetPeers(PeerStatus{State: StateEstablished})
			}
		})
	}
	wg.Wait()
	if c := f.Calls(); c.Announce != 800 || len(f.Announced()) != 0 {
		t.Errorf("Calls = %+v, announced %v", c, f.Announced())
	}
}
