package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vipcast/vipcast/peers"
	"github.com/vipcast/vipcast/peers/testutil"
	"github.com/vipcast/vipcast/policy"
	"github.com/vipcast/vipcast/speaker/apiserver"
	"github.com/vipcast/vipcast/speaker/apiserver/apitest"
)

func run(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = execute(args, nil, &o, &e)
	return code, o.String(), e.String()
}

func TestCLIOverSocket(t *testing.T) {
	env := apitest.Start(t, apitest.Options{Version: version, Healthy: true})
	sock := env.Config.Socket
	testutil.Eventually(t, "advertised", func() bool { return env.Speaker.Status().Decisions[0].Advertised })

	code, out, errOut := run("status", "--socket", sock)
	if code != 0 || errOut != "" {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"VIP", apitest.VIP.String(), "yes", "healthy", "health: ", "rise 3, fall 2", "192.0.2.1", "65000", "established", "recent transitions:"} {
		if !strings.Contains(out, want) {
			t.Errorf("status table lacks %q:\n%s", want, out)
		}
	}

	if !strings.Contains(out, "BFD") || !regexp.MustCompile(`192\.0\.2\.1 .* - +-\n`).MatchString(out) {
		t.Errorf("status table lacks the BFD column, or shows BFD for a peer without it:\n%s", out)
	}

	// A peer with BFD: the table shows state, transmit interval and detection
	// time; json has the field.
	env.Router.SetPeers(
		peers.PeerStatus{
			Address: netip.MustParseAddr("192.0.2.1"), ASN: 65000, State: peers.StateEstablished,
			Since: time.Now().Add(-time.Minute), PrefixesSent: 1,
			BFD: &peers.BFDStatus{State: "up", RemoteState: "up", TxInterval: 100 * time.Millisecond, DetectTime: 300 * time.Millisecond, RxPackets: 9},
		},
		peers.PeerStatus{Address: netip.MustParseAddr("192.0.2.2"), ASN: 65001, State: peers.StateActive},
	)
	testutil.Eventually(t, "BFD in the status", func() bool {
		_, out, _ := run("status", "--socket", sock)
		return strings.Contains(out, "192.0.2.2")
	})
	_, out, _ = run("status", "--socket", sock)
	if !regexp.MustCompile(`192\.0\.2\.1 .* up 100ms/300ms +-\n`).MatchString(out) || !regexp.MustCompile(`192\.0\.2\.2 .* - +-\n`).MatchString(out) {
		t.Errorf("status table's BFD column:\n%s", out)
	}

	code, out, _ = run("status", "--socket", sock, "-o", "json")
	var js struct {
		Version string
		Peers   []struct {
			Address string
			BFD     map[string]any `json:"bfd"`
		}
	}
	if err := json.Unmarshal([]byte(out), &js); code != 0 || err != nil || js.Version != version {
		t.Fatalf("status -o json: exit %d, %v\n%s", code, err, out)
	}
	if len(js.Peers) != 2 || js.Peers[0].BFD["state"] != "up" || js.Peers[0].BFD["txInterval"] != "0.100s" || js.Peers[0].BFD["rxPackets"] != "9" || js.Peers[1].BFD != nil {
		t.Errorf("status -o json peers: %+v\n%s", js.Peers, out)
	}
	code, out, _ = run("status", "--socket", sock, "-o", "yaml")
	var ys map[string]any
	if err := yaml.Unmarshal([]byte(out), &ys); code != 0 || err != nil || ys["configDigest"] != "sha256:test" {
		t.Fatalf("status -o yaml: exit %d, %v\n%s", code, err, out)
	}

	if code, out, errOut = run("drain", "--socket", sock, "--reason", "disk swap"); code != 0 || !strings.Contains(out, "drained") {
		t.Fatalf("drain: exit %d\n%s%s", code, out, errOut)
	}
	// Status is recorded just after the router hears the withdraw, so
	// wait for both.
	testutil.Eventually(t, "withdrawn, and so in the status", func() bool {
		return !env.Router.IsAnnounced(apitest.VIP) && env.Speaker.Status().Drained
	})
	if _, out, _ = run("status", "--socket", sock); !strings.Contains(out, "DRAINED: disk swap") {
		t.Errorf("status after drain:\n%s", out)
	}
	if code, _, errOut = run("undrain", "--socket", sock); code != 0 {
		t.Fatalf("undrain: exit %d %s", code, errOut)
	}
	testutil.Eventually(t, "announced again", func() bool { return env.Router.IsAnnounced(apitest.VIP) })
}

func TestCLIErrors(t *testing.T) {
	dir := apitest.Dir(t)
	missing := filepath.Join(dir, "none.sock")
	code, _, errOut := run("status", "--socket", missing)
	if want := "no vipcast listening at " + missing + ": is it running? set --socket"; code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("missing socket: exit %d, %q; want %q", code, errOut, want)
	}
	if code, _, errOut = run("status", "--addr", "127.0.0.1:1"); code != 1 || !strings.Contains(errOut, "needs --ca, --cert and --key") {
		t.Errorf("--addr without certificates: exit %d, %q", code, errOut)
	}
	if code, _, errOut = run("status", "--socket", missing, "-o", "xml"); code != 1 || !strings.Contains(errOut, "use table, json or yaml") {
		t.Errorf("bad -o: exit %d, %q", code, errOut)
	}
	// Refused before any connection: the socket does not exist.
	if code, _, errOut = run("drain", "--socket", missing, "--reason", strings.Repeat("x", 300)); code != 1 || !strings.Contains(errOut, "--reason: 300 bytes is longer than 256; shorten it") {
		t.Errorf("long --reason: exit %d, %q", code, errOut)
	}
}

func TestCLIVersionMismatchWarns(t *testing.T) {
	env := apitest.Start(t, apitest.Options{Version: "v9.9.9-other"})
	code, _, errOut := run("status", "--socket", env.Config.Socket)
	if code != 0 || !strings.Contains(errOut, `warning: the vipcast serving the API is version "v9.9.9-other"`) {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestCLIOverMTLSReadOnly(t *testing.T) {
	dir := apitest.Dir(t)
	certs := apitest.NewCerts(t, dir)
	env := apitest.Start(t, apitest.Options{Version: version, API: apiserver.Config{
		Socket: filepath.Join(dir, "a.sock"),
		TCP:    apiserver.TCPConfig{Listen: "127.0.0.1:0", CAFile: certs.CA, CertFile: certs.ServerCert, KeyFile: certs.ServerKey, ReadOnly: true},
	}})
	tls := []string{"--addr", env.Server.Addr("tcp").String(), "--ca", certs.CA, "--cert", certs.ClientCert, "--key", certs.ClientKey}
	if code, out, errOut := run(append([]string{"status"}, tls...)...); code != 0 || !strings.Contains(out, apitest.VIP.String()) {
		t.Fatalf("status over mTLS: exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut := run(append([]string{"drain"}, tls...)...)
	if code != 1 || !strings.Contains(errOut, "this listener is read-only (api.tcp.readOnly: true): drain refused") {
		t.Fatalf("drain on read-only listener: exit %d, %q", code, errOut)
	}
}

func TestConfigDigest(t *testing.T) {
	a, err := parseConfig(strings.NewReader(goodYAML), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := parseConfig(strings.NewReader(goodYAML), []string{"VIPCAST_HEALTH_RISE=4"}, nil)
	da, db := configDigest(a), configDigest(b)
	if !strings.HasPrefix(da, "sha256:") || len(da) != len("sha256:")+64 || da != configDigest(a) || da == db {
		t.Errorf("digests %s %s", da, db)
	}
}

// A drain or undrain that is in effect but not saved exits 3 and says so;
// with api.stateFile "" (no persistence, chosen) it exits 0 with a note.
func TestCLIDrainNotPersisted(t *testing.T) {
	dir := apitest.Dir(t)
	env := apitest.Start(t, apitest.Options{Version: version, Healthy: true, API: apiserver.Config{
		Socket: filepath.Join(dir, "a.sock"), StateFile: filepath.Join(dir, "lib", "state.json"),
	}})
	// A file where the state directory should be: the save fails.
	if err := os.WriteFile(filepath.Join(dir, "lib"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"drain", "undrain"} {
		code, out, errOut := run(verb, "--socket", env.Config.Socket, "--reason", "disk swap")
		if code != exitNotPersisted || !strings.Contains(errOut, verb+" is in effect now, but it was NOT saved to the state file") || !strings.Contains(errOut, "a restart of vipcast would undo it") {
			t.Errorf("%s with an unwritable state file: exit %d\n%s%s", verb, code, out, errOut)
		}
		// The RPC returns once the speaker took the request; its status
		// says so just after: poll.
		want := verb == "drain"
		testutil.Eventually(t, fmt.Sprintf("drained %v after %s: the in-memory effect must stay", want, verb),
			func() bool { return env.Speaker.Status().Drained == want })
	}

	env2 := apitest.Start(t, apitest.Options{Version: version, Healthy: true, API: apiserver.Config{Socket: filepath.Join(dir, "b.sock")}})
	code, out, errOut := run("drain", "--socket", env2.Config.Socket)
	if code != 0 || errOut != "" || !strings.Contains(out, `note: api.stateFile is "", so this lasts until vipcast restarts`) {
		t.Errorf("drain with api.stateFile \"\": exit %d\n%s%s", code, out, errOut)
	}
}

// status and drain find the socket as run does: --socket, then
// VIPCAST_API_SOCKET, then api.socket in --config, then the default.
func TestCLISocketFromEnvAndConfig(t *testing.T) {
	env := apitest.Start(t, apitest.Options{Version: version})
	sock := env.Config.Socket
	dir := apitest.Dir(t)
	wrong := filepath.Join(dir, "wrong.sock")
	cfgFile := filepath.Join(dir, "vipcast.yaml")
	if err := os.WriteFile(cfgFile, []byte("vips: [203.0.113.10/32]\napi: {socket: "+sock+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		environ []string
		ok      bool
	}{
		{"env", []string{"status"}, []string{"VIPCAST_API_SOCKET=" + sock}, true},
		{"config file", []string{"status", "-c", cfgFile}, nil, true},
		{"env over file", []string{"status", "-c", cfgFile}, []string{"VIPCAST_API_SOCKET=" + wrong}, false},
		{"flag over env", []string{"status", "--socket", sock}, []string{"VIPCAST_API_SOCKET=" + wrong}, true},
		{"drain with the file", []string{"drain", "-c", cfgFile}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o, e bytes.Buffer
			code := execute(tt.args, tt.environ, &o, &e)
			if tt.ok && code != 0 {
				t.Errorf("exit %d\n%s%s", code, o.String(), e.String())
			}
			if !tt.ok && (code == 0 || !strings.Contains(e.String(), wrong)) {
				t.Errorf("exit %d, want a failure naming %s\n%s", code, wrong, e.String())
			}
		})
	}
}

// With graceful shutdown the VIPs stay advertised (with GRACEFUL_SHUTDOWN)
// for the wait: drain must not claim they are withdrawn.
func TestCLIDrainGracefulShutdownWording(t *testing.T) {
	env := apitest.Start(t, apitest.Options{Version: version, Healthy: true,
		GracefulShutdown: policy.GracefulShutdownConfig{Enabled: true, Wait: time.Hour}})
	testutil.Eventually(t, "advertised", func() bool { return env.Speaker.Status().Decisions[0].Advertised })
	code, out, errOut := run("drain", "--socket", env.Config.Socket)
	if code != 0 || !strings.Contains(out, "advertised with GRACEFUL_SHUTDOWN") || strings.Contains(out, "VIPs are withdrawn") {
		t.Errorf("drain during graceful shutdown: exit %d\n%s%s", code, out, errOut)
	}
}
