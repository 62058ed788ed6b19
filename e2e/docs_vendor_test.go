package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The router blocks in docs/network-team.md that no lab here can run
// (Junos, EOS, NX-OS) are still checked, as text, for what the doc promises
// of every block: only the sample's VIPs get in, exactly; a node that sends
// more is cut off; the timers are vipcast's. FRR and BIRD get the same
// checks on top of their live tests.

// routerBlocks are the verified router blocks, by marker name.
var routerBlocks = []string{"frr-config", "frr-per-node-asn", "bird-config", "junos-config",
	"eos-config", "eos-per-node-asn", "nxos-config", "nxos-per-node-asn"}

// docSample is what the doc's sample vipcast config says.
type docSample struct {
	vips        []netip.Prefix
	hold        time.Duration
	bfdInterval time.Duration
	bfdMult     int
}

func parseSample(t *testing.T) docSample {
	t.Helper()
	y := docBlock(t, "sample-config")
	var s docSample
	m := regexp.MustCompile(`(?m)^vips: \[(.*)\]`).FindStringSubmatch(y)
	if m == nil {
		t.Fatalf("sample-config: no vips line:\n%s", y)
	}
	for _, v := range strings.Split(m[1], ",") {
		p, err := netip.ParsePrefix(strings.Trim(strings.TrimSpace(v), `"`))
		if err != nil {
			t.Fatalf("sample-config: vip %q: %v", v, err)
		}
		s.vips = append(s.vips, p)
	}
	holds := regexp.MustCompile(`holdTime: (\S+)`).FindAllStringSubmatch(y, -1)
	bfds := regexp.MustCompile(`minTx: (\S+), minRx: (\S+), multiplier: (\d+)`).FindAllStringSubmatch(y, -1)
	if len(holds) == 0 || len(bfds) == 0 {
		t.Fatalf("sample-config: no holdTime or bfd timers:\n%s", y)
	}
	var err error
	if s.hold, err = time.ParseDuration(holds[0][1]); err != nil {
		t.Fatal(err)
	}
	if s.bfdInterval, err = time.ParseDuration(bfds[0][1]); err != nil {
		t.Fatal(err)
	}
	s.bfdMult, _ = strconv.Atoi(bfds[0][3])
	return s
}

// vipcastDefaultHold reads peers.DefaultHoldTime from the source (the e2e
// module does not import vipcast's packages).
func vipcastDefaultHold(t *testing.T) time.Duration {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(docFile(t))), "peers", "config.go"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`DefaultHoldTime\s*=\s*(\d+) \* time\.Second`).FindSubmatch(b)
	if m == nil {
		t.Fatal("peers/config.go: no DefaultHoldTime = N * time.Second")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return time.Duration(n) * time.Second
}

var (
	// A prefix-shaped token; "1/1" of Ethernet1/1 does not parse as one.
	prefixToken = regexp.MustCompile(`[0-9A-Fa-f:.]+/\d{1,3}`)
	// Anything that widens a prefix filter beyond the exact prefix.
	rangeWords = regexp.MustCompile(`\b(ge|le|upto|orlonger|longer|prefix-length-range)\b|\{\d+,\d+\}`)
	// A line that names the nodes' subnet for peering, not for routes.
	peeringLine = regexp.MustCompile(`listen range|\bneighbor\b|\ballow\b|neighbor range`)
)

// nodeSubnets are the sample's node links: allowed on peering lines only.
var nodeSubnets = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8:2::/64")}

// vipProblems returns every prefix in block that is not exactly one of vips
// (the nodes' subnet is allowed on peering lines), and whether each VIP
// family is filtered at all when wantBoth.
func vipProblems(block string, vips []netip.Prefix, wantBoth bool) []string {
	var bad []string
	seen := map[netip.Prefix]bool{}
	for i, line := range strings.Split(block, "\n") {
		for _, tok := range prefixToken.FindAllString(line, -1) {
			p, err := netip.ParsePrefix(tok)
			if err != nil {
				continue
			}
			switch {
			case contains(vips, p):
				seen[p] = true
				if rangeWords.MatchString(line) {
					bad = append(bad, fmt.Sprintf("line %d %q: %s with a range; match it exactly", i+1, line, p))
				}
			case contains(nodeSubnets, p) && peeringLine.MatchString(line):
			default:
				bad = append(bad, fmt.Sprintf("line %d %q: %s is not a VIP of the sample %v", i+1, line, p, vips))
			}
		}
	}
	if wantBoth {
		for _, v := range vips {
			if !seen[v] {
				bad = append(bad, fmt.Sprintf("no filter for the VIP %s", v))
			}
		}
	}
	return bad
}

func contains(ps []netip.Prefix, p netip.Prefix) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// limitRules say, per full router block, what a prefix limit that tears
// the session down looks like; each must appear once per family.
var limitRules = map[string]struct {
	limit  *regexp.Regexp // one match per family
	not    *regexp.Regexp // on a limit line: only logs
	extra  *regexp.Regexp // also needed once per family, if set
	reason string
}{
	"frr-config":   {limit: regexp.MustCompile(`(?m)^\s*neighbor \S+ maximum-prefix \d+.*$`), not: regexp.MustCompile(`warning-only`), reason: "FRR tears down unless warning-only"},
	"bird-config":  {limit: regexp.MustCompile(`import limit \d+ action (restart|disable)`), reason: "BIRD: action restart or disable"},
	"junos-config": {limit: regexp.MustCompile(`(?m)^set .* family inet6? unicast prefix-limit maximum \d+$`), extra: regexp.MustCompile(`(?m)^set .* family inet6? unicast prefix-limit teardown.*$`), reason: "Junos only logs without teardown"},
	"eos-config":   {limit: regexp.MustCompile(`(?m)^\s*neighbor \S+ maximum-routes \d+.*$`), not: regexp.MustCompile(`warning-only`), reason: "EOS shuts the session down unless warning-only"},
	"nxos-config":  {limit: regexp.MustCompile(`(?m)^\s*maximum-prefix \d+.*$`), not: regexp.MustCompile(`warning-only`), reason: "NX-OS tears down unless warning-only"},
}

// timerRules extract, per full router block, every hold time, keepalive,
// BFD interval (ms) and multiplier it sets.
var timerRules = map[string]struct {
	hold, keepalive, bfdInterval, bfdMult *regexp.Regexp
}{
	"frr-config": {hold: regexp.MustCompile(`timers \d+ (\d+)`), keepalive: regexp.MustCompile(`timers (\d+) \d+`),
		bfdInterval: regexp.MustCompile(`(?:transmit|receive)-interval (\d+)`), bfdMult: regexp.MustCompile(`detect-multiplier (\d+)`)},
	"bird-config": {hold: regexp.MustCompile(`hold time (\d+);`), keepalive: regexp.MustCompile(`keepalive time (\d+);`),
		bfdInterval: regexp.MustCompile(`min [rt]x interval (\d+) ms`), bfdMult: regexp.MustCompile(`multiplier (\d+);`)},
	"junos-config": {hold: regexp.MustCompile(`hold-time (\d+)`),
		bfdInterval: regexp.MustCompile(`minimum-interval (\d+)`), bfdMult: regexp.MustCompile(`bfd-liveness-detection multiplier (\d+)`)},
	"eos-config": {hold: regexp.MustCompile(`timers \d+ (\d+)`), keepalive: regexp.MustCompile(`timers (\d+) \d+`),
		bfdInterval: regexp.MustCompile(`interval (\d+) min-rx (\d+)`), bfdMult: regexp.MustCompile(`min-rx \d+ multiplier (\d+)`)},
	"nxos-config": {hold: regexp.MustCompile(`timers \d+ (\d+)`), keepalive: regexp.MustCompile(`timers (\d+) \d+`),
		bfdInterval: regexp.MustCompile(`bfd interval (\d+) min_rx (\d+)`), bfdMult: regexp.MustCompile(`min_rx \d+ multiplier (\d+)`)},
}

// ints returns every number captured by re in s.
func ints(re *regexp.Regexp, s string) []int {
	var out []int
	for _, m := range re.FindAllStringSubmatch(s, -1) {
		for _, g := range m[1:] {
			if n, err := strconv.Atoi(g); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

func TestNetworkTeamDocRouterBlocks(t *testing.T) {
	sample := parseSample(t)
	defHold := vipcastDefaultHold(t)
	if sample.hold != defHold {
		t.Errorf("the doc's sample sets holdTime %v, vipcast's default is %v", sample.hold, defHold)
	}

	t.Run("only-the-vips", func(t *testing.T) {
		for _, name := range routerBlocks {
			_, full := limitRules[name]
			for _, p := range vipProblems(docBlock(t, name), sample.vips, full) {
				t.Errorf("%s: %s", name, p)
			}
		}
	})

	t.Run("prefix-limit-tears-down", func(t *testing.T) {
		for name, r := range limitRules {
			b := docBlock(t, name)
			lines := r.limit.FindAllString(b, -1)
			if len(lines) != 2 {
				t.Errorf("%s: %d prefix limits %q, want one for IPv4 and one for IPv6 (%s)", name, len(lines), lines, r.reason)
			}
			for _, l := range lines {
				if r.not != nil && r.not.MatchString(l) {
					t.Errorf("%s: %q only logs; drop %q so the session is torn down", name, l, r.not.String())
				}
			}
			if r.extra != nil {
				if got := r.extra.FindAllString(b, -1); len(got) != 2 {
					t.Errorf("%s: %d teardown lines %q, want one per family (%s)", name, len(got), got, r.reason)
				}
			}
		}
	})

	t.Run("timers", func(t *testing.T) {
		holdS := int(defHold / time.Second)
		for name, r := range timerRules {
			b := docBlock(t, name)
			holds := ints(r.hold, b)
			if len(holds) == 0 {
				t.Errorf("%s: no hold time; set it to %d (vipcast's default)", name, holdS)
			}
			for _, h := range holds {
				// The session takes the lower hold time offered: vipcast's,
				// as long as the router offers at least as much. 10 is the
				// Junos EX Series minimum; more would only mislead.
				if h < holdS || h > holdS+1 {
					t.Errorf("%s: hold time %d, want %d (vipcast's default; %d where the platform's minimum is 10)", name, h, holdS, holdS+1)
				}
			}
			if r.keepalive != nil {
				for _, k := range ints(r.keepalive, b) {
					if k != holdS/3 {
						t.Errorf("%s: keepalive %d, want %d (a third of vipcast's hold time)", name, k, holdS/3)
					}
				}
			}
			ivs, mults := ints(r.bfdInterval, b), ints(r.bfdMult, b)
			if len(ivs) == 0 || len(mults) == 0 {
				t.Errorf("%s: no BFD interval or multiplier", name)
			}
			for _, iv := range ivs {
				if time.Duration(iv)*time.Millisecond != sample.bfdInterval {
					t.Errorf("%s: BFD interval %d ms, the sample's vipcast config has %v", name, iv, sample.bfdInterval)
				}
			}
			for _, m := range mults {
				if m != sample.bfdMult {
					t.Errorf("%s: BFD multiplier %d, the sample's vipcast config has %d", name, m, sample.bfdMult)
				}
			}
		}
	})
}

// TestVIPProblems: the prefix check itself catches what it is for.
func TestVIPProblems(t *testing.T) {
	vips := []netip.Prefix{netip.MustParsePrefix("203.0.113.10/32"), netip.MustParsePrefix("2001:db8:ffff::10/128")}
	for _, tt := range []struct {
		block string
		bad   int
	}{
		{"ip prefix-list A seq 5 permit 203.0.113.10/32\nipv6 prefix-list B seq 5 permit 2001:db8:ffff::10/128", 0},
		{"ip prefix-list A seq 5 permit 203.0.113.0/24 ge 32\nipv6 prefix-list B seq 5 permit 2001:db8:ffff::10/128", 2}, // wider, and so no exact filter
		{"ip prefix-list A seq 5 permit 203.0.113.10/32 le 32\nipv6 prefix-list B seq 5 permit 2001:db8:ffff::10/128", 1},
		{"set ... route-filter 203.0.113.10/32 orlonger\nset ... route-filter 2001:db8:ffff::10/128 exact", 1},
		{"if net !~ [ 203.0.113.0/24{32,32} ] then reject;\nif net !~ [ 2001:db8:ffff::10/128 ] then reject;", 2},
		{"ip prefix-list A seq 5 permit 203.0.113.10/32", 1}, // no IPv6 filter
		{"ip prefix-list A seq 5 permit 192.0.2.0/24\nip prefix-list A seq 5 permit 203.0.113.10/32\nX 2001:db8:ffff::10/128", 1},
		{"bgp listen range 192.0.2.0/24 peer group V\nA 203.0.113.10/32\nB 2001:db8:ffff::10/128\ninterface Ethernet1/1", 0},
	} {
		if got := vipProblems(tt.block, vips, true); len(got) != tt.bad {
			t.Errorf("vipProblems(%q) = %q, want %d problems", tt.block, got, tt.bad)
		}
	}
}
