package speaker

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Re-exec helper for TestStaleVIPsFromKilledPredecessor: the test binary
// runs itself with helperEnv set and -test.run=^TestNetnsHelperProcess$,
// hands over the network namespace as fd 3 (exec.Cmd.ExtraFiles), and reads
// helperReady from the child's stdout before it SIGKILLs it.
const (
	helperEnv     = "VIPCAST_NETNS_HELPER"      // "1" in the child
	helperVIPsEnv = "VIPCAST_NETNS_HELPER_VIPS" // comma-separated prefixes to add
	helperIfEnv   = "VIPCAST_NETNS_HELPER_IF"   // interface, default lo
	helperReady   = "VIPCAST-NETNS-HELPER-READY"
	helperNSFD    = 3 // first of ExtraFiles
)

// TestNetnsHelperProcess is not a test: in a normal run it returns at once.
// As the re-exec'd child it plays a vipcast that added its VIPs and then
// hangs until it is killed (or its stdin closes, so it never outlives the
// parent).
func TestNetnsHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		return
	}
	fail := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "netns helper: "+format+"\n", a...)
		os.Exit(2)
	}
	// Only ever the namespace the parent passed: never fall back to the
	// current one, which is the host's.
	h, err := netlink.NewHandleAt(netns.NsHandle(helperNSFD))
	if err != nil {
		fail("netlink handle in namespace fd %d: %v", helperNSFD, err)
	}
	ifname := os.Getenv(helperIfEnv)
	if ifname == "" {
		ifname = "lo"
	}
	l, err := newLoopbackAt(h, ifname, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		fail("%v", err)
	}
	if l.rt, err = routeSocketAt(netns.NsHandle(helperNSFD)); err != nil {
		fail("%v", err)
	}
	for _, s := range strings.Split(os.Getenv(helperVIPsEnv), ",") {
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			fail("vip %q: %v", s, err)
		}
		if err := l.Add(p); err != nil {
			fail("%v", err)
		}
	}
	fmt.Println(helperReady)
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}
