package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
)

var update = flag.Bool("update", false, "rewrite golden files")

const goodYAML = `
vips: [203.0.113.10/32, 2001:db8:ffff::10/128]
bgp: {asn: 64512, routerID: 192.0.2.11}
health: {url: https://127.0.0.1:6443/readyz, serverName: kubernetes, interval: 200ms, timeout: 150ms, rise: 3, fall: 2}
peers:
  - {address: 192.0.2.1, asn: 65000, holdTime: 9s}
  - {address: "2001:db8:2::1", asn: 65000}
policy: {communities: ["64512:100"], med: 10}
`

func TestParseConfigGood(t *testing.T) {
	cfg, err := parseConfig(strings.NewReader(goodYAML), nil, nil)
	if err != nil {
		t.Fatalf("valid config rejected:\n%v", err)
	}
	if got, want := cfg.Speaker.Health.Interval, 200*time.Millisecond; got != want {
		t.Errorf("interval = %v, want %v", got, want)
	}
	if got := cfg.Speaker.Loopback.Interface; got != "lo" {
		t.Errorf("default loopback interface = %q, want lo", got)
	}
	if got := cfg.Peering.BGP.RouterID; got != "192.0.2.11" {
		t.Errorf("routerID = %q", got)
	}
	if cfg.Policy.MED == nil || *cfg.Policy.MED != 10 {
		t.Errorf("policy.med = %v, want 10", cfg.Policy.MED)
	}
}

// Precedence is flags > env > file > defaults.
func TestParseConfigPrecedence(t *testing.T) {
	tests := []struct {
		name      string
		env       []string
		overrides map[string]any
		want      string
	}{
		{"file", nil, nil, "200ms"},
		{"env over file", []string{"VIPCAST_HEALTH_INTERVAL=300ms", "VIPCAST_HEALTH_TIMEOUT=100ms"}, nil, "300ms"},
		{"flag over env", []string{"VIPCAST_HEALTH_INTERVAL=300ms"}, map[string]any{"health.interval": "400ms"}, "400ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfig(strings.NewReader(goodYAML), tt.env, tt.overrides)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Speaker.Health.Interval.String(); got != tt.want {
				t.Errorf("interval = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestLoadConfigFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(goodYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	addConfigFlags(fs)
	if err := fs.Parse([]string{"-c", path, "--vip", "203.0.113.20/32", "--asn", "64600"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(fs, []string{"VIPCAST_BGP_ASN=64700"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"203.0.113.20/32"}, cfg.Speaker.VIPs); diff != "" {
		t.Errorf("vips (-want +got):\n%s", diff)
	}
	if cfg.Peering.BGP.ASN != 64600 {
		t.Errorf("asn = %d, want the flag's 64600", cfg.Peering.BGP.ASN)
	}
}

// TestValidateGolden keeps every error message under review: each must name
// the field, the value and the fix. Run with -update to rewrite.
func TestValidateGolden(t *testing.T) {
	// routerID auto resolves to the node's address: fixed here, so the
	// goldens do not depend on the test machine.
	defer func(orig func(string) (netip.Addr, error)) { resolveRouterID = orig }(resolveRouterID)
	resolveRouterID = func(s string) (netip.Addr, error) {
		if s == "auto" {
			return netip.MustParseAddr("192.0.2.99"), nil
		}
		return netip.ParseAddr(s)
	}
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := execute([]string{"validate", "-c", f}, nil, &stdout, &stderr)
			got := stdout.String() + stderr.String()
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("validate output (-want +got):\n%s", diff)
			}
			if valid := strings.HasPrefix(filepath.Base(f), "valid"); valid != (code == 0) {
				t.Errorf("exit code %d for %s", code, f)
			}
		})
	}
}

// FuzzParseConfig: malformed input must give an error, never a panic.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodYAML))
	f.Add([]byte("vips: [203.0.113.10/24]\npeers: [{address: 1, asn: -1}]\n"))
	f.Add([]byte("health: {interval: 1x, rise: [1]}\npeers: 7\n"))
	f.Add([]byte("peers: [[]]\nbgp: []\npolicy: {communities: 5}\n"))
	f.Add([]byte("\x00: {"))
	f.Add([]byte("bgp: {asn: 1}\npeers: [{address: 192.0.2.1, asn: 2, policy: {med: -1, prepend: 1.5, communities: [\"65535:0\"], localPref: 0}}]\npolicy: {priority: 9, priorityMode: prepend}\n"))
	f.Add([]byte("health: {fall: 3, timeoutFall: 1e9}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parseConfig(bytes.NewReader(data), []string{"VIPCAST_HEALTH_RISE=x"}, nil)
	})
}

// validate refuses what run would refuse before touching the network:
// routerID auto on a node without a global IPv4 address (IPv6-only).
func TestValidateRouterIDAutoIPv6Only(t *testing.T) {
	defer func(orig func(string) (netip.Addr, error)) { resolveRouterID = orig }(resolveRouterID)
	const msg = "bgp.routerID: auto, but this node has no global IPv4 address on an up interface (an IPv6-only node?); set bgp.routerID to an IPv4 address unique among the routers' peers, e.g. 192.0.2.11"
	resolveRouterID = func(string) (netip.Addr, error) { return netip.Addr{}, errors.New(msg) }
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("vips: [2001:db8::10/128]\nbgp: {asn: 64512}\npeers: [{address: \"2001:db8::1\", asn: 65000}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"validate"} { // run shares preflight; not started here, it would touch the network on a regression
		var stdout, stderr bytes.Buffer
		code := execute([]string{cmd, "-c", path}, nil, &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), msg) {
			t.Errorf("%s: exit %d, want 2 with the routerID problem\n%s%s", cmd, code, stdout.String(), stderr.String())
		}
	}
}

// The README promises "did you mean" for VIPCAST_* variables too.
func TestUnknownEnvDidYouMean(t *testing.T) {
	tests := []struct{ env, want string }{
		{"VIPCAST_HEALTH_INTERVALL=200ms", `VIPCAST_HEALTH_INTERVALL: not a vipcast setting; did you mean VIPCAST_HEALTH_INTERVAL?`},
		{"VIPCAST_BGP_ANS=64512", `VIPCAST_BGP_ANS: not a vipcast setting; did you mean VIPCAST_BGP_ASN?`},
		{"VIPCAST_SOMETHING_ELSE_ENTIRELY=1", `VIPCAST_SOMETHING_ELSE_ENTIRELY: not a vipcast setting; see the README's Configuration section for the VIPCAST_* names`},
	}
	for _, tt := range tests {
		_, err := parseConfig(strings.NewReader(goodYAML), []string{tt.env}, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v\nwant %q", tt.env, err, tt.want)
		}
	}
}

// The README's tables must stay tables: a blank line inside one (it once
// cut the api.* rows off their header) turns the rest into a table
// without a header, which renders as text.
func TestREADMETablesHaveHeaders(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	inFence := false
	for i := 0; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], "```") {
			inFence = !inFence
		}
		if inFence || !strings.HasPrefix(lines[i], "|") {
			continue
		}
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "|---") && !strings.HasPrefix(lines[i+1], "| ---") && !strings.HasPrefix(lines[i+1], "|:--") {
			t.Errorf("README.md:%d: a table starts without a header and separator row: %q", i+1, lines[i])
		}
		for i < len(lines) && strings.HasPrefix(lines[i], "|") {
			i++
		}
	}
	for _, key := range []string{"api.socket", "kubernetes.events", "bgp.asn"} {
		if !strings.Contains(string(b), "| `"+key+"` |") {
			t.Errorf("README.md: no table row for %s", key)
		}
	}
}

// FuzzEnvAndFlags: any VIPCAST_* variable and any flag value give a
// configuration that validates, or errors; never a panic, and never a
// value that silently wraps (the environment refused 4294967297 while
// the file took it as 1).
func FuzzEnvAndFlags(f *testing.F) {
	f.Add("VIPCAST_BGP_ASN", "4294967297", 1, "64512")
	f.Add("VIPCAST_HEALTH_INTERVALL", "200ms", 4, "1s")
	f.Add("VIPCAST_VIPS", "203.0.113.10/32,2001:db8::10/128", 0, "203.0.113.11/32")
	f.Add("VIPCAST_API_SOCKET", "relative.sock", 2, "auto")
	f.Add("VIPCAST_HEALTH_RISE", "-1", 5, "-80ms")
	f.Add("VIPCAST_DAMPING_SUPPRESS", "NaN", 6, "1e400s")
	f.Add("VIPCAST_POLICY_MED", "1.5", 1, "0x10")
	f.Add("VIPCAST_", "", 3, "http://[::1")
	path := filepath.Join(f.TempDir(), "vipcast.yaml")
	if err := os.WriteFile(path, []byte(goodYAML), 0o600); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name, val string, flag int, flagVal string) {
		fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		addConfigFlags(fs)
		fl := configFlags[uint(flag)%uint(len(configFlags))]
		if err := fs.Parse([]string{"--config=" + path, "--" + fl.flag + "=" + flagVal}); err != nil {
			return
		}
		cfg, err := loadConfig(fs, []string{name + "=" + val})
		if err != nil {
			return
		}
		if verr := cfg.Validate(); verr != nil {
			t.Fatalf("accepted but invalid: %v", verr)
		}
		if name == "VIPCAST_BGP_ASN" && fl.key != "bgp.asn" {
			if n, perr := strconv.ParseUint(strings.TrimSpace(val), 0, 64); perr == nil && uint64(cfg.Peering.BGP.ASN) != n {
				t.Fatalf("VIPCAST_BGP_ASN=%s became %d", val, cfg.Peering.BGP.ASN)
			}
		}
	})
}

// A directory where the state file belongs is refused by validate, with
// the fix, not only by run's first drain.
func TestStateFileIsADirectory(t *testing.T) {
	dir := t.TempDir()
	_, err := parseConfig(strings.NewReader(goodYAML), []string{"VIPCAST_API_STATEFILE=" + dir}, nil)
	want := `api.stateFile: "` + dir + `" is a directory; remove it (rmdir) or set api.stateFile to a file path such as ` + filepath.Join(dir, "state.json")
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

// The settings the program copies into speaker.Config from other sections
// (mapstructure "-") are not keys of their own: each keeps one place in
// the file, and neither the file nor the environment can set them twice.
func TestProgramFilledSpeakerSettingsAreNotKeys(t *testing.T) {
	for _, k := range allKeys(reflect.TypeOf(fileConfig{}), "") {
		if strings.HasPrefix(k, "-") || strings.EqualFold(k, "stateFile") || strings.EqualFold(k, "attributes") {
			t.Errorf("allKeys lists %q", k)
		}
	}
	for _, extra := range []string{"stateFile: /tmp/s.json\n", "gracefulShutdown: {wait: 1s}\n", "attributes: {med: 5}\n"} {
		if _, err := parseConfig(strings.NewReader(goodYAML+extra), nil, nil); err == nil {
			t.Errorf("%q accepted at the top level", strings.TrimSpace(extra))
		}
	}
	if _, err := parseConfig(strings.NewReader(goodYAML), []string{"VIPCAST_STATEFILE=/tmp/s.json"}, nil); err == nil {
		t.Error("VIPCAST_STATEFILE accepted")
	}
}
