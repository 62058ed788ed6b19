// Package apitest runs a real speaker (fake router, prober and addresses)
// behind a real API server, for end-to-end tests of the API and the CLI.
package apitest

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vipcast/vipcast/peers"
	"github.com/vipcast/vipcast/policy"
	"github.com/vipcast/vipcast/speaker"
	"github.com/vipcast/vipcast/speaker/addrtest"
	"github.com/vipcast/vipcast/speaker/apiserver"
)

// VIP is the one VIP the test speaker advertises.
var VIP = netip.MustParsePrefix("203.0.113.10/32")

// Prober answers from a switch the test flips.
type Prober struct{ OK atomic.Bool }

func (p *Prober) Probe(context.Context) speaker.ProbeResult {
	if p.OK.Load() {
		return speaker.ProbeResult{At: time.Now(), OK: true, Code: 200, Reason: "ok", Latency: 2 * time.Millisecond}
	}
	return speaker.ProbeResult{At: time.Now(), Reason: "connection refused", Latency: 100 * time.Microsecond}
}

// Env is one running speaker and its API.
type Env struct {
	T       testing.TB
	Speaker *speaker.Speaker
	Router  *peers.Fake
	Prober  *Prober
	Server  *apiserver.Server
	Config  apiserver.Config
	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

// Options adjust Start.
type Options struct {
	// API is the server's configuration; Socket defaults to a fresh
	// directory's vipcast.sock, StateFile to one next to it.
	API      apiserver.Config
	Version  string
	Observer speaker.Observer
	// Healthy starts the prober passing.
	Healthy bool
	// GracefulShutdown is the speaker's RFC 8326 setting; off if zero.
	GracefulShutdown policy.GracefulShutdownConfig
}

// Dir returns a short temporary directory (unix socket paths are limited to
// 107 bytes, and t.TempDir can be long).
func Dir(t testing.TB) string {
	d, err := os.MkdirTemp("", "vipcast-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Start runs a speaker and its API server until the test ends.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	if o.API.Socket == "" {
		dir := Dir(t)
		o.API.Socket = filepath.Join(dir, "run", "vipcast.sock")
		if o.API.StateFile == "" {
			o.API.StateFile = filepath.Join(dir, "state.json")
		}
	}
	if o.Version == "" {
		o.Version = "test"
	}
	cfg := speaker.Default()
	cfg.VIPs = []string{VIP.String()}
	cfg.Health.Interval = 5 * time.Millisecond
	cfg.Health.Timeout = 4 * time.Millisecond
	cfg.Loopback.RemoveDelay = 10 * time.Millisecond
	cfg.Shutdown.DrainPeriod = 200 * time.Millisecond
	cfg.Damping.HalfLife = 0
	cfg.StateFile, cfg.GracefulShutdown = o.API.StateFile, o.GracefulShutdown
	router := peers.NewFake([]netip.Prefix{VIP}, peers.PeerStatus{
		Address: netip.MustParseAddr("192.0.2.1"), ASN: 65000, State: peers.StateEstablished,
		Since: time.Now().Add(-time.Minute), PrefixesSent: 1,
	})
	e := &Env{T: t, Router: router, Prober: &Prober{}, Config: o.API, done: make(chan error, 1)}
	e.Prober.OK.Store(o.Healthy)
	sp, err := speaker.New(cfg, speaker.Deps{
		Router: router, Addresses: addrtest.New(nil), Prober: e.Prober,
		Observer: o.Observer,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.Speaker = sp
	e.Server = apiserver.New(o.API, sp, apiserver.Options{Version: o.Version, ConfigDigest: "sha256:test"})
	if err := e.Server.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { e.done <- sp.Run(ctx) }()
	t.Cleanup(e.Stop)
	return e
}

// Stop cancels the speaker and stops the server, as vipcast run does.
func (e *Env) Stop() {
	if e.stopped {
		return
	}
	e.stopped = true
	e.cancel()
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		e.T.Error("speaker did not stop")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.Server.Stop(ctx)
}

// Wait returns Run's result after a Shutdown.
func (e *Env) Wait() error {
	select {
	case err := <-e.done:
		e.done <- err
		return err
	case <-time.After(10 * time.Second):
		e.T.Fatal("speaker did not stop")
		return nil
	}
}
