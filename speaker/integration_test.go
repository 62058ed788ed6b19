package speaker

import (
	"context"
	"encoding/pem"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vipcast/vipcast/peers"
	"github.com/vipcast/vipcast/peers/bgptest"
	"github.com/vipcast/vipcast/peers/testutil"
	"github.com/vipcast/vipcast/policy"
	"github.com/vipcast/vipcast/speaker/addrtest"
)

// fakeAPIServer is a TLS server answering /readyz from a switch.
func fakeAPIServer(t *testing.T) (*httptest.Server, *atomic.Bool, string) {
	t.Helper()
	var healthy atomic.Bool
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		if healthy.Load() {
			w.Write([]byte("ok"))
			return
		}
		http.Error(w, "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed", http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, &healthy, ca
}

// TestLoopbackIntegration runs the real speaker, the real GoBGP router and
// the real health prober against an in-process GoBGP acting as the
// upstream router, over loopback, with the default health timings. It
// asserts that the router's RIB follows the apiserver's health, that it
// never receives anything but the VIPs, and measures the time from a
// health flip to the router's RIB change.
func TestLoopbackIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	srv, healthy, ca := fakeAPIServer(t)
	rtr := bgptest.StartRouter(t, bgptest.RouterConfig{})
	rtr.Originate(t, netip.MustParsePrefix("198.51.100.0/24"))
	rtr.Originate(t, netip.MustParsePrefix("0.0.0.0/0"))

	cfg := Default()
	cfg.VIPs = []string{vip4.String()}
	cfg.Health.URL = srv.URL + "/readyz"
	cfg.Health.CAFile = ca
	cfg.Health.ServerName = "example.com" // httptest's certificate name
	// Eight flips in a row are exactly what damping exists to stop.
	cfg.Damping.HalfLife = 0
	cfg.Shutdown.DrainPeriod = 100 * time.Millisecond
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	pcfg := peers.Config{
		BGP:   peers.Global{ASN: 64512, RouterID: "192.0.2.11"},
		Peers: []peers.Peer{{Address: "127.0.0.1", ASN: 65000, Port: uint16(rtr.Port()), ConnectRetry: time.Second}},
	}
	peering, err := pcfg.Parse(policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	vips, err := cfg.Prefixes()
	if err != nil {
		t.Fatal(err)
	}
	router, err := peers.NewGoBGP(peering, vips, nil)
	if err != nil {
		t.Fatal(err)
	}
	prober, err := NewHTTPProber(cfg.Health)
	if err != nil {
		t.Fatal(err)
	}
	defer prober.Close()
	addrs := addrtest.New(nil)
	cfg.Attributes = policy.Attributes{Communities: []policy.Community{64512<<16 | 100}}
	sp, err := New(cfg, Deps{Router: router, Addresses: addrs, Prober: prober})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- sp.Run(ctx) }()

	rtr.WaitEstablished(t, true, 10*time.Second)
	onlyVIP := []netip.Prefix{vip4}
	// ribIs polls the router's RIB every millisecond until it matches and
	// returns when it first did.
	ribIs := func(want []netip.Prefix) time.Time {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := rtr.Prefixes(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range got {
				if p != vip4 {
					t.Fatalf("router received %s: only the VIP may be sent", p)
				}
			}
			if cmp.Equal(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })) || (len(want) == 0 && len(got) == 0) {
				return time.Now()
			}
			if time.Now().After(deadline) {
				t.Fatalf("router RIB = %v, want %v; speaker %+v", got, want, sp.Status())
			}
			time.Sleep(time.Millisecond) // the measurement's resolution, not synchronisation
		}
	}
	ribIs(nil)

	var down, up []time.Duration
	for range 8 {
		// Failures strike at a random point of the probe cycle; without
		// this the flips would line up with the probes.
		time.Sleep(rand.N(cfg.Health.Interval))
		flip := time.Now()
		healthy.Store(true)
		up = append(up, ribIs(onlyVIP).Sub(flip))
		if !addrs.Has(vip4) {
			t.Fatal("VIP announced but not on lo")
		}
		time.Sleep(rand.N(cfg.Health.Interval))
		flip = time.Now()
		healthy.Store(false)
		down = append(down, ribIs(nil).Sub(flip))
	}
	// Status is recorded just after the withdraw is applied, so the router
	// can show it first: poll (a single read failed once under load).
	testutil.Eventually(t, "status to say unhealthy after HTTP 500", func() bool {
		st := sp.Status()
		return st.Decisions[0].Reason == ReasonUnhealthy && st.LastProbe.Code == 500
	}, func() string { return fmt.Sprintf("status %+v", sp.Status()) })
	t.Logf("health down -> router RIB withdraw (interval %v, fall %d): %s", cfg.Health.Interval, cfg.Health.Fall, summary(down))
	t.Logf("health up   -> router RIB announce (interval %v, rise %d): %s", cfg.Health.Interval, cfg.Health.Rise, summary(up))
	// Not a speed assertion (that is make bench's job), only a sanity bound
	// that catches a broken loop: fall probes plus generous slack, on the
	// median, as one flip on a starved machine has taken 2.9 s.
	if m := median(down); m > 2*time.Second {
		t.Errorf("withdraw took %v (median of %d flips)", m, len(down))
	}

	// The router originates routes; none may reach the speaker's RIB. The
	// peers package proves it on GoBGP's tables; here the path count sent
	// stays exactly one per VIP once announced.
	healthy.Store(true)
	ribIs(onlyVIP)
	sp.Shutdown()
	ribIs(nil)
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	rtr.WaitEstablished(t, false, 5*time.Second)
	if addrs.Has(vip4) {
		t.Error("VIP left on lo after shutdown")
	}
}

func summary(ds []time.Duration) string {
	s := slices.Sorted(slices.Values(ds))
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("median %v, min %v, max %v over %d flips", r(median(ds)), r(s[0]), r(s[len(s)-1]), len(s))
}

func median(ds []time.Duration) time.Duration {
	return slices.Sorted(slices.Values(ds))[len(ds)/2]
}
