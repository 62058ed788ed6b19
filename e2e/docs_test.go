package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// The router configs in docs/network-team.md are meant to be pasted as they
// are, so they are tested as they are: the fenced block after each
// `<!-- verify: NAME -->` marker is extracted verbatim, checked by the
// router's own parser, then loaded into the FRR or BIRD of a real lab
// (vipcast nodes configured like the doc's sample) in place of the lab's own
// router config.

const (
	docPath     = "docs/network-team.md" // relative to the repository root
	docPassword = "vipcast-md5-secret"   // the doc's sample MD5 key
)

func docFile(t *testing.T) string {
	t.Helper()
	return repoFile(docPath)
}

// repoFile is path (relative to the repository root) as a file name.
func repoFile(path string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(filepath.Dir(file)), path)
}

// docBlock returns the fenced code block that follows the marker
// `<!-- verify: name -->` in docs/network-team.md.
func docBlock(t *testing.T, name string) string {
	t.Helper()
	return docBlockIn(t, docPath, name)
}

// docBlockIn returns the fenced code block that follows the marker
// `<!-- verify: name -->` in the doc at docPath (relative to the
// repository root).
func docBlockIn(t *testing.T, docPath, name string) string {
	t.Helper()
	b, err := os.ReadFile(repoFile(docPath))
	if err != nil {
		t.Fatal(err)
	}
	marker := "<!-- verify: " + name + " -->"
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != marker {
			continue
		}
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "```") {
			t.Fatalf("%s: marker %q is not followed by a fenced code block", docPath, marker)
		}
		for j := i + 2; j < len(lines); j++ {
			if strings.TrimSpace(lines[j]) == "```" {
				return strings.Join(lines[i+2:j], "\n") + "\n"
			}
		}
		t.Fatalf("%s: the block after %q is not closed", docPath, marker)
	}
	t.Fatalf("%s: no marker %q", docPath, marker)
	return ""
}

func writeTemp(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// needTool skips without the tool, unless the e2e suite was asked for, where
// a missing router is a failure.
func needTool(t *testing.T, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		if os.Getenv("VIPCAST_E2E") == "1" {
			t.Fatalf("%s not found (apt-get install frr bird2)", tool)
		}
		t.Skipf("%s not found; skipping the doc's %s check", tool, tool)
	}
}

// vtyshErrors returns the lines of vtysh output that report a rejected command.
func vtyshErrors(out string) []string {
	var bad []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "%") || strings.Contains(strings.ToLower(l), "error") {
			bad = append(bad, l)
		}
	}
	return bad
}

func TestNetworkTeamDoc(t *testing.T) {
	frrConf := docBlock(t, "frr-config")
	frrPerNodeASN := docBlock(t, "frr-per-node-asn")
	birdConf := docBlock(t, "bird-config")

	t.Run("frr-dryrun", func(t *testing.T) {
		needTool(t, "vtysh")
		for name, conf := range map[string]string{"frr-config": frrConf, "frr-config + frr-per-node-asn": frrConf + frrPerNodeASN} {
			f := writeTemp(t, "frr.conf", conf)
			out, err := exec.Command("vtysh", "-C", "-f", f).CombinedOutput()
			if err != nil || len(vtyshErrors(string(out))) > 0 {
				t.Fatalf("vtysh -C -f (FRR dry run) rejects the doc's %s: %v\n%s", name, err, out)
			}
		}
	})
	t.Run("bird-parse", func(t *testing.T) {
		needTool(t, "bird")
		f := writeTemp(t, "bird.conf", birdConf)
		if out, err := exec.Command("bird", "-p", "-c", f).CombinedOutput(); err != nil {
			t.Fatalf("bird -p rejects the doc's BIRD config: %v\n%s", err, out)
		}
	})

	for _, r := range routers {
		t.Run("live-"+string(r), func(t *testing.T) {
			lab.Require(t, r)
			// The doc's sample: 3 nodes, IPv4 + IPv6 sessions, MD5, BFD
			// 100ms x 3, hold 9s, community 64512:100.
			l := lab.New(t, lab.Options{Router: r, Nodes: 3, IPv6: true, MD5Password: docPassword,
				BFD:      &lab.BFDOptions{Interval: 100 * time.Millisecond, Multiplier: 3},
				HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second})
			l.DumpOnFailure(t)
			switch r {
			case lab.FRR:
				loadFRR(t, l, frrConf)
			case lab.BIRD:
				loadBIRD(t, l, birdConf)
			}
			// Every session comes back under the doc's config: 3-way ECMP
			// for both VIPs in the router's kernel.
			v6 := lab.VIP6
			l.WaitNexthops(t, v4, l.AllAddrs(v4), 20*time.Second)
			l.WaitNexthops(t, v6, l.AllAddrs(v6), 20*time.Second)
			l.HoldNexthops(t, v4, l.AllAddrs(v4), time.Second)

			// RFC 8326: a drained node re-announces with 65535:0; its path
			// stays in the BGP table but leaves the ECMP set (local-pref
			// 0). A long wait keeps it there until the undrain.
			gshutNode := l.Node(3)
			restartVipcast(t, gshutNode, func(c string) string {
				out := strings.Replace(c, "gracefulShutdown: {enabled: false}", "gracefulShutdown: {enabled: true, wait: 5m}", 1)
				if out == c {
					t.Fatalf("no gracefulShutdown in the lab's vipcast config:\n%s", c)
				}
				return out
			})
			t.Cleanup(func() {
				_, _ = gshutNode.Vipcast("undrain")
				// SIGKILL: a SIGTERM would hold GSHUT for the 5m wait.
				if _, err := gshutNode.KillVipcast(syscall.SIGKILL); err == nil {
					_ = gshutNode.WaitVipcastExit(5 * time.Second)
				}
				if err := gshutNode.StartVipcast(); err != nil {
					t.Error(err)
				}
			})
			l.WaitNexthops(t, v4, l.AllAddrs(v4), 20*time.Second)
			if out, err := gshutNode.Vipcast("drain", "--reason", "docs test"); err != nil {
				t.Fatalf("vipcast drain: %v\n%s", err, out)
			}
			rest := l.Addrs(v4, l.Node(1), l.Node(2))
			// By next hop: the doc's BIRD protocol names are not the lab's.
			lab.WaitFor(t, "the GSHUT-tagged path in the router's BGP table", 15*time.Second, func() bool {
				paths, _ := l.RouterBGPPaths(v4)
				return slices.ContainsFunc(paths, func(pa lab.Path) bool { return pa.NextHop == gshutNode.Addr4 && hasGshut(pa) })
			})
			l.WaitNexthops(t, v4, rest, 5*time.Second)
			l.HoldNexthops(t, v4, rest, 2*time.Second)
			l.WaitNexthops(t, v6, l.Addrs(v6, l.Node(1), l.Node(2)), 5*time.Second)
			if ps, err := l.RouterBGPPaths(v4); err != nil || len(ps) != 3 {
				t.Errorf("router BGP paths during the drain: %+v (%v), want all 3 (the GSHUT one kept)", ps, err)
			}

			// Undrained: untagged again, back into ECMP.
			if out, err := gshutNode.Vipcast("undrain"); err != nil {
				t.Fatalf("vipcast undrain: %v\n%s", err, out)
			}
			l.WaitNexthops(t, v4, l.AllAddrs(v4), 15*time.Second)

			if r == lab.FRR {
				perNodeASNs(t, l, frrPerNodeASN)
			}
		})
	}
}

// perNodeASNs moves nodes 1 and 2 to their own ASNs (node 3, drained
// above, keeps 64512), loads the doc's per-node-ASN lines into FRR, and
// expects 3-way ECMP for both VIPs: with the group's single remote-as the
// moved nodes would fail at OPEN, and without multipath-relax only one path
// would be installed.
func perNodeASNs(t *testing.T, l *lab.Lab, conf string) {
	t.Helper()
	vtysh(t, l, "-f", writeTemp(t, "frr-per-node-asn.conf", conf))
	for i, n := range []*lab.Node{l.Node(1), l.Node(2)} {
		asn := lab.NodeASN + 1 + i
		restartVipcast(t, n, func(c string) string {
			from := fmt.Sprintf("bgp: {asn: %d,", lab.NodeASN)
			out := strings.Replace(c, from, fmt.Sprintf("bgp: {asn: %d,", asn), 1)
			if out == c {
				t.Fatalf("no %q in the lab's vipcast config:\n%s", from, c)
			}
			return out
		})
	}
	l.WaitNexthops(t, v4, l.AllAddrs(v4), 30*time.Second)
	l.WaitNexthops(t, lab.VIP6, l.AllAddrs(lab.VIP6), 20*time.Second)
	paths, err := l.RouterBGPPaths(v4)
	if err != nil {
		t.Fatal(err)
	}
	asns := map[string]bool{}
	for _, pa := range paths {
		asns[pa.ASPath] = true
	}
	if len(asns) != 3 {
		t.Errorf("router paths %+v: AS paths %v, want three different ones", paths, asns)
	}
}

func vtysh(t *testing.T, l *lab.Lab, args ...string) string {
	t.Helper()
	sock := filepath.Join(l.Dir, "frr") // the lab's --vty_socket directory
	out, err := exec.Command("vtysh", append([]string{"--vty_socket", sock}, args...)...).CombinedOutput()
	if err != nil || len(vtyshErrors(string(out))) > 0 {
		t.Fatalf("vtysh %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// loadFRR replaces the lab router's BGP configuration by the doc's.
func loadFRR(t *testing.T, l *lab.Lab, conf string) {
	t.Helper()
	vtysh(t, l, "-c", "configure terminal", "-c", "no router bgp 65000")
	vtysh(t, l, "-f", writeTemp(t, "frr.conf", conf))
	t.Logf("FRR running the doc's config:\n%s", vtysh(t, l, "-c", "show running-config bgpd"))
}

// loadBIRD makes the lab's BIRD reconfigure itself from the doc's config.
func loadBIRD(t *testing.T, l *lab.Lab, conf string) {
	t.Helper()
	ctl := filepath.Join(l.Dir, "bird", "bird.ctl") // the lab's control socket
	f := writeTemp(t, "bird.conf", conf)
	out, err := exec.Command("birdc", "-s", ctl, "configure", `"`+f+`"`).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Reconfigur") || strings.Contains(strings.ToLower(string(out)), "error") {
		t.Fatalf("birdc configure with the doc's config: %v\n%s", err, out)
	}
}
