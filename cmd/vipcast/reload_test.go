package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/vipcast/vipcast/peers"
)

type fakeReconf struct{ got []peers.Config }

func (f *fakeReconf) Reconfigure(_ context.Context, c peers.Config) error {
	f.got = append(f.got, c)
	return nil
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
	r := &fakeReconf{}

	// A bad file is rejected whole; nothing is applied.
	write("peers: [{address: 192.0.2.1, asn: 65000}, {address: nope, asn: 0}]\n")
	if got := reloadOnce(context.Background(), fs, nil, running, r, nil, log); len(got.Peering.Peers) != 1 || len(r.got) != 0 {
		t.Fatalf("bad config applied: %+v, calls %d", got.Peering.Peers, len(r.got))
	}
	if !strings.Contains(logs.String(), "reload rejected") || !strings.Contains(logs.String(), "peers[1].address") {
		t.Errorf("rejection not logged with the problem:\n%s", logs.String())
	}

	// A new peer is applied; a policy change is reported as needing a restart.
	write("peers: [{address: 192.0.2.1, asn: 65000}, {address: \"2001:db8::1\", asn: 65000}]\npolicy: {med: 5}\n")
	running = reloadOnce(context.Background(), fs, nil, running, r, nil, log)
	if len(r.got) != 1 || len(r.got[0].Peers) != 2 || len(running.Peering.Peers) != 2 {
		t.Fatalf("peers not applied: calls %+v, running %+v", r.got, running.Peering.Peers)
	}
	if running.Policy.MED != nil || !strings.Contains(logs.String(), "need a restart") || !strings.Contains(logs.String(), "policy") {
		t.Errorf("policy change: running MED %v; logs:\n%s", running.Policy.MED, logs.String())
	}

	// Same peers again: Reconfigure is not called.
	_ = reloadOnce(context.Background(), fs, nil, running, r, nil, log)
	if len(r.got) != 1 {
		t.Errorf("unchanged peers reconfigured: %d calls", len(r.got))
	}
}
