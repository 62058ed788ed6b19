package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// The FRR and BIRD blocks of docs/last-resort.md (mapping the last-resort
// community to a low local-pref) are meant to be added to the configs of
// docs/network-team.md, so each is parsed by the router's own parser in
// that place: FRR's after network-team.md's frr-config (it names its
// prefix-list and route-map), BIRD's filter in place of network-team.md's
// filter vipcast_in4. A deliberately broken copy must fail the same check,
// so a parser that accepts anything cannot pass the test.

const lastResortDoc = "docs/last-resort.md"

func TestLastResortDoc(t *testing.T) {
	frrBase := docBlock(t, "frr-config")
	frrLast := docBlockIn(t, lastResortDoc, "lastresort-frr")
	birdBase := docBlock(t, "bird-config")
	birdLast := docBlockIn(t, lastResortDoc, "lastresort-bird")

	t.Run("frr-dryrun", func(t *testing.T) {
		needTool(t, "vtysh")
		check := func(conf string) (string, bool) {
			out, err := exec.Command("vtysh", "-C", "-f", writeTemp(t, "frr.conf", frrBase+conf)).CombinedOutput()
			return string(out), err == nil && len(vtyshErrors(string(out))) == 0
		}
		if out, ok := check(frrLast); !ok {
			t.Fatalf("vtysh -C -f (FRR dry run) rejects %s's FRR block after network-team.md's frr-config:\n%s", lastResortDoc, out)
		}
		broken := strings.Replace(frrLast, "set local-preference 50", "set local-preferance 50", 1)
		if broken == frrLast {
			t.Fatalf("%s's FRR block sets no local-preference 50:\n%s", lastResortDoc, frrLast)
		}
		if out, ok := check(broken); ok {
			t.Fatalf("vtysh -C accepted a misspelt command: the check proves nothing:\n%s", out)
		}
	})

	t.Run("bird-parse", func(t *testing.T) {
		needTool(t, "bird")
		conf, ok := replaceBlock(birdBase, "filter vipcast_in4 {", birdLast)
		if !ok {
			t.Fatalf("network-team.md's bird-config has no filter vipcast_in4 to replace:\n%s", birdBase)
		}
		if !strings.HasPrefix(strings.TrimSpace(birdLast), "filter vipcast_in4 {") {
			t.Fatalf("%s's BIRD block is not filter vipcast_in4:\n%s", lastResortDoc, birdLast)
		}
		check := func(conf string) (string, bool) {
			out, err := exec.Command("bird", "-p", "-c", writeTemp(t, "bird.conf", conf)).CombinedOutput()
			return string(out), err == nil
		}
		if out, ok := check(conf); !ok {
			t.Fatalf("bird -p rejects %s's BIRD filter in network-team.md's bird-config:\n%s\n%s", lastResortDoc, out, conf)
		}
		broken := strings.Replace(conf, "bgp_local_pref = 50;", "bgp_local_pref = 50", 1)
		if broken == conf {
			t.Fatalf("%s's BIRD block sets no bgp_local_pref = 50:\n%s", lastResortDoc, birdLast)
		}
		if out, ok := check(broken); ok {
			t.Fatalf("bird -p accepted a missing semicolon: the check proves nothing:\n%s", out)
		}
	})
}

// replaceBlock replaces the block of conf that starts with the line
// beginning with head and ends at the next line "}" with repl.
func replaceBlock(conf, head, repl string) (string, bool) {
	lines := strings.Split(conf, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, head) {
			continue
		}
		for j := i + 1; j < len(lines); j++ {
			if lines[j] == "}" {
				out := append(append(append([]string{}, lines[:i]...), strings.TrimRight(repl, "\n")), lines[j+1:]...)
				return strings.Join(out, "\n"), true
			}
		}
		return "", false
	}
	return "", false
}
