package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vipcast/vipcast/peers/testutil"
)

// TestContainerdImport imports the tarball into a private containerd, the
// way `ctr -n k8s.io images import` and `kind load image-archive` do, and
// runs it: without NET_ADMIN in the bounding set the kernel refuses to exec
// the binary (its file capability cap_net_admin+ep cannot be granted), with
// it the binary runs as the image's non-root USER. That proves the xattr
// survived containerd's unpacking. Needs root and Debian's containerd and
// runc (make deps).
func TestContainerdImport(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run containerd")
	}
	for _, b := range []string{"containerd", "ctr"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (apt-get install containerd runc)", b)
		}
	}
	archive, printed := build(t, capEffProgram(t), "1700000000")
	digest := strings.Fields(printed)[2]

	dir, err := os.MkdirTemp("", "vipcast-containerd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "containerd.sock")
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// containerd writes from exec's copying goroutines while the test reads.
	var log testutil.SyncBuffer
	d := exec.CommandContext(ctx, "containerd", "--config", filepath.Join(dir, "config.toml"))
	d.Stdout, d.Stderr = &log, &log
	if err := d.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = d.Wait()
		// Snapshots of the run below may still be mounted under root.
		_ = exec.Command("sh", "-c", "grep -o '"+dir+"[^ ]*' /proc/self/mounts | sort -r | xargs -r umount -l").Run()
		if t.Failed() {
			t.Logf("containerd log:\n%s", log.String())
		}
	})

	ctr := func(timeout time.Duration, args ...string) (string, error) {
		c, stop := context.WithTimeout(ctx, timeout)
		defer stop()
		out, err := exec.CommandContext(c, "ctr", append([]string{"--address", sock, "--namespace", "k8s.io"}, args...)...).CombinedOutput()
		return string(out), err
	}
	testutil.EventuallyWithin(t, 60*time.Second, "containerd to answer", func() bool {
		_, err := ctr(10*time.Second, "version")
		return err == nil
	}, log.String)

	// kind load image-archive runs exactly this import.
	if out, err := ctr(2*time.Minute, "images", "import", "--all-platforms", archive); err != nil {
		t.Fatalf("ctr images import: %v\n%s", err, out)
	}
	out, err := ctr(30*time.Second, "images", "ls")
	if err != nil {
		t.Fatalf("ctr images ls: %v\n%s", err, out)
	}
	var listed bool
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == testRef && f[2] == digest {
			listed = true
		}
	}
	if !listed {
		t.Fatalf("%s %s not in ctr images ls:\n%s", testRef, digest, out)
	}

	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc not installed: import checked, run skipped")
	}
	// The "vipcast" here prints its effective capabilities. Without NET_ADMIN
	// in the bounding set the kernel refuses the exec (the file capability
	// cannot be granted); with it, as the image's USER 65532, the process
	// has CAP_NET_ADMIN (bit 12) effective: what the chart's non-root mode
	// relies on.
	// runc keeps its state under /run/containerd/runc/<namespace> whatever
	// containerd's state directory, so the container IDs are made unique:
	// two runs of this test at once (two suites on one machine) collided.
	runOut := func(id string, extra ...string) string {
		args := append([]string{"run", "--rm"}, extra...)
		args = append(args, testRef, id+"-"+filepath.Base(dir), "/usr/local/bin/vipcast")
		out, _ := ctr(2*time.Minute, args...)
		return out
	}
	if out := runOut("no-cap"); !strings.Contains(out, "operation not permitted") {
		t.Errorf("run without NET_ADMIN: want the kernel's EPERM for an ungrantable file capability, got:\n%s", out)
	}
	if out := runOut("cap", "--cap-add", "CAP_NET_ADMIN", "--allow-new-privs"); !strings.Contains(out, "uid=65532 capeff=0000000000001000") {
		t.Errorf("run with NET_ADMIN: want uid=65532 capeff=0000000000001000 (NET_ADMIN only), got:\n%s", out)
	}
}

// capEffProgram builds a static binary that prints its UID and CapEff.
func capEffProgram(t *testing.T) []byte {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go toolchain in PATH to build the probe binary: %v", err)
	}
	dir := t.TempDir()
	src := `package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			fmt.Printf("uid=%d capeff=%s\n", os.Getuid(), strings.TrimSpace(v))
		}
	}
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module capeff\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gobin, "build", "-o", "capeff", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the probe binary: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "capeff"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
