package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// asMainEnv makes the test binary run vipcast's main instead of the tests,
// so a test can start vipcast as a real process without building it.
const asMainEnv = "GO_TEST_RUN_VIPCAST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) == "1" {
		main()
	}
	os.Exit(m.Run())
}

// startVipcast runs this binary as vipcast with args.
func startVipcast(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer, <-chan error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix+"_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, asMainEnv+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		done <- cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	return cmd, &out, done
}

// A SIGHUP that reaches vipcast while it is still starting (here: waiting
// to read its configuration) must not kill it. The configuration is a FIFO:
// vipcast blocks opening it until the test opens the other end, so the
// signal is sent at a known point after main began, never before the Go
// runtime runs (no program can catch a signal then).
func TestSignalDuringStartIsCaught(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "vipcast.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no FIFO: %v", err)
	}
	cmd, out, done := startVipcast(t, "run", "-c", fifo)

	opened := make(chan *os.File, 1)
	go func() {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0) // blocks until vipcast opens it
		if err == nil {
			opened <- w
		}
		close(opened)
	}()
	var w *os.File
	select {
	case w = <-opened:
	case err := <-done:
		// Unblock the writer's open before failing.
		if r, oerr := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0); oerr == nil {
			defer r.Close()
		}
		t.Fatalf("vipcast exited before reading its configuration: %v\n%s", err, out)
	case <-time.After(time.Minute):
		t.Fatal("vipcast did not open its configuration within a minute")
	}
	if w == nil {
		t.Fatal("opening the FIFO failed")
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// Invalid on purpose: vipcast exits 2 right after loading it, without
	// touching the network.
	if _, err := w.WriteString("vips: [nonsense]\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatalf("vipcast did not exit within a minute\n%s", out)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("vipcast ended with %v, want exit 2 for the invalid configuration (a SIGHUP death reads \"signal: hangup\")\n%s", err, out)
	}
	if !strings.Contains(out.String(), "vips[0]") {
		t.Errorf("output does not name the bad field:\n%s", out)
	}
}
