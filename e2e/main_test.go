// Package e2e runs vipcast against real routers (FRR, BIRD 2), real
// kube-apiservers and etcd in network namespaces. See README.md.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"

	"github.com/vipcast/vipcast/e2e/lab"
)

func TestMain(m *testing.M) {
	if os.Getenv("VIPCAST_E2E") == "1" && os.Geteuid() == 0 {
		lab.SweepStale() // labs left by a run that was SIGKILLed
		buildBinaries()
	}
	// t.Cleanup does not run on ^C: tear every lab down here.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "e2e: %v: tearing down labs\n", s)
		lab.Interrupted()
		os.Exit(130)
	}()
	os.Exit(m.Run())
}

// buildBinaries runs tools/build.sh for the binaries not given by
// VIPCAST_BIN / VIPCAST_KUBE_APISERVER: kube-apiserver only when its module
// changed (the first time ~4 min, before the test timeout starts), vipcast
// always (seconds, from Go's cache). With VIPCAST_E2E_CLUSTER=1 the cluster
// lab's binaries too (kubelet, controllers, kubectl: ~9 min cold for all).
// A failed build ends the run: testing the binary a previous build left
// would be silently testing old code.
func buildBinaries() {
	var targets []string
	if os.Getenv("VIPCAST_E2E_CLUSTER") == "1" && os.Getenv("VIPCAST_E2E_BIN") == "" {
		targets = append(targets, "kube")
	} else if os.Getenv("VIPCAST_KUBE_APISERVER") == "" && os.Getenv("VIPCAST_E2E_BIN") == "" {
		targets = append(targets, "kube-apiserver")
	}
	if os.Getenv("VIPCAST_BIN") == "" && os.Getenv("VIPCAST_E2E_BIN") == "" {
		targets = append(targets, "vipcast")
	}
	if len(targets) == 0 {
		return
	}
	cmd := exec.Command("tools/build.sh", targets...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: tools/build.sh %v: %v\n", targets, err)
		os.Exit(1)
	}
}
