package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"

	"github.com/vipcast/vipcast/peers"
	"github.com/vipcast/vipcast/peers/testutil"
)

// startedFake is a running peers.Fake, as reload finds the router.
func startedFake(t *testing.T) *peers.Fake {
	t.Helper()
	r := peers.NewFake(nil)
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestReloadOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vipcast.yaml")
	base := "vips: [203.0.113.10/32]\nbgp: {asn: 64512, routerID: 192.0.2.10}\n"
	write := func(s string) {
		if err := os.WriteFile(path, []byte(base+s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("peers: [{address: 192.0.2.1, asn: 65000}]\n")
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	addConfigFlags(fs)
	if err := fs.Parse([]string{"--config", path}); err != nil {
		t.Fatal(err)
	}
	running, err := loadConfig(fs, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	r := startedFake(t)

	// A bad file is rejected whole; nothing is applied.
	write("peers: [{address: 192.0.2.1, asn: 65000}, {address: nope, asn: 0}]\n")
	if got := reloadOnce(context.Background(), fs, nil, running, r, nil, log); len(got.Peering.Peers) != 1 || len(r.Reconfigured()) != 0 {
		t.Fatalf("bad config applied: %+v, calls %d", got.Peering.Peers, len(r.Reconfigured()))
	}
	if !strings.Contains(logs.String(), "reload rejected") || !strings.Contains(logs.String(), "peers[1].address") {
		t.Errorf("rejection not logged with the problem:\n%s", logs.String())
	}

	// A new peer is applied; a policy change is reported as needing a restart.
	write("peers: [{address: 192.0.2.1, asn: 65000}, {address: \"2001:db8::1\", asn: 65000}]\npolicy: {med: 5}\n")
	running = reloadOnce(context.Background(), fs, nil, running, r, nil, log)
	if got := r.Reconfigured(); len(got) != 1 || len(got[0].Neighbors) != 2 || len(running.Peering.Peers) != 2 {
		t.Fatalf("peers not applied: calls %+v, running %+v", got, running.Peering.Peers)
	}
	if running.Policy.MED != nil || !strings.Contains(logs.String(), "need a restart") || !strings.Contains(logs.String(), "policy") {
		t.Errorf("policy change: running MED %v; logs:\n%s", running.Policy.MED, logs.String())
	}

	// Same peers again: Reconfigure is not called.
	_ = reloadOnce(context.Background(), fs, nil, running, r, nil, log)
	if n := len(r.Reconfigured()); n != 1 {
		t.Errorf("unchanged peers reconfigured: %d calls", n)
	}
}

// TestWatchReloadConfigMapSwap reproduces how the kubelet updates a
// ConfigMap mounted as a directory (AtomicWriter): the files live in a
// timestamped directory, ..data links to it, config.yaml links to
// ..data/config.yaml, and an update writes a new timestamped directory and
// renames a new ..data_tmp link over ..data. config.yaml itself never
// changes, so only the ..data events tell the watcher; each swap must reload.
func TestWatchReloadConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	base := "vips: [203.0.113.10/32]\nbgp: {asn: 64512, routerID: 192.0.2.10}\n"
	peersOf := func(n int) string {
		s := "peers:\n"
		for i := 1; i <= n; i++ {
			s += fmt.Sprintf("  - {address: 192.0.2.%d, asn: 65000}\n", i)
		}
		return s
	}
	gen := 0
	// publish is AtomicWriter's write: new timestamped dir, ..data_tmp, rename.
	publish := func(content string) {
		t.Helper()
		gen++
		ts := fmt.Sprintf("..2026_12_02_07_00_%02d.%d", gen, 1000+gen)
		if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ts, "config.yaml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		old, _ := os.Readlink(filepath.Join(dir, "..data"))
		if err := os.Symlink(ts, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(filepath.Join(dir, "config.yaml")); err != nil {
			if err := os.Symlink(filepath.Join("..data", "config.yaml"), filepath.Join(dir, "config.yaml")); err != nil {
				t.Fatal(err)
			}
		}
		if old != "" {
			if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(base + peersOf(1))

	path := filepath.Join(dir, "config.yaml")
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	addConfigFlags(fs)
	if err := fs.Parse([]string{"--config", path}); err != nil {
		t.Fatal(err)
	}
	running, err := loadConfig(fs, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := startedFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchReload(ctx, nil, fs, nil, running, r, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	t.Cleanup(func() { cancel(); <-done })

	for n := 2; n <= 3; n++ {
		// The watcher may not have added its watch yet: publish again
		// until the reload comes, each publish being a real update.
		reloads := n - 1 // one per swap so far
		publish(base + peersOf(n))
		next := time.Now().Add(2 * time.Second)
		testutil.EventuallyWithin(t, 30*time.Second, fmt.Sprintf("a reload after the swap to %d peers", n), func() bool {
			if len(r.Reconfigured()) >= reloads {
				return true
			}
			if time.Now().After(next) {
				publish(base + peersOf(n))
				next = time.Now().Add(2 * time.Second)
			}
			return false
		})
		got := r.Reconfigured()[reloads-1]
		if len(got.Neighbors) != n {
			t.Errorf("swap to %d peers: reloaded with %d", n, len(got.Neighbors))
		}
	}
}

// A reload names only the restart-only sections that changed, and knows
// every section of the configuration (node and kubernetes were missed).
func TestRestartChanges(t *testing.T) {
	base := defaultConfig()
	tests := []struct {
		name   string
		change func(*fileConfig)
		want   []string
	}{
		{"nothing", func(*fileConfig) {}, nil},
		{"health.interval only", func(c *fileConfig) { c.Speaker.Health.Interval *= 2 }, []string{"health"}},
		{"peers are live", func(c *fileConfig) { c.Peering.Peers = []peers.Peer{{ASN: 65000}} }, nil},
		{"bgp", func(c *fileConfig) { c.Peering.BGP.ASN = 64512 }, []string{"bgp"}},
		{"vips and damping", func(c *fileConfig) { c.Speaker.VIPs = []string{"203.0.113.9/32"}; c.Speaker.Damping.Reuse = 0.5 }, []string{"vips", "damping"}},
		{"node", func(c *fileConfig) { c.Node.Name = "other" }, []string{"node"}},
		{"kubernetes", func(c *fileConfig) { c.Kubernetes.Events = !c.Kubernetes.Events }, []string{"kubernetes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := defaultConfig()
			tt.change(&next)
			if diff := cmp.Diff(tt.want, restartChanges(base, next)); diff != "" {
				t.Errorf("restart sections (-want +got):\n%s", diff)
			}
		})
	}
	// Every top-level key is either live or reported.
	seen := map[string]bool{}
	for _, k := range allKeys(reflect.TypeOf(fileConfig{}), "") {
		top, _, _ := strings.Cut(k, ".")
		seen[strings.TrimSuffix(top, "[]")] = true
	}
	for _, s := range liveSections {
		delete(seen, s)
	}
	if len(seen) < 9 {
		t.Errorf("only %d restart-only sections found: %v", len(seen), seen)
	}
}
