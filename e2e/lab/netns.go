package lab

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// run runs a command to completion and returns its combined output.
func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// runStdout runs a command and returns only its stdout (for JSON).
func runStdout(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// ipBatch runs several `ip` commands in namespace ns in one process.
func ipBatch(ns string, cmds []string) error {
	cmd := exec.Command("ip", "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip -batch: %w: %s\ncommands:\n%s", err, out, strings.Join(cmds, "\n"))
	}
	return nil
}

func nsExec(ns string, args ...string) (string, error) {
	return run("ip", append([]string{"netns", "exec", ns}, args...)...)
}

func sysctls(ns string, kv ...string) error {
	_, err := nsExec(ns, append([]string{"sysctl", "-qw"}, kv...)...)
	return err
}

// inNetns runs fn on an OS thread switched into network namespace ns.
// Sockets created by fn belong to ns and keep working after fn returns.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := setns(int(target.Fd())); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := setns(int(orig.Fd())); err != nil {
			// Leave the thread locked: the runtime then discards it
			// instead of reusing a thread in the wrong namespace.
			errc <- fmt.Errorf("setns back: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func setns(fd int) error {
	_, _, e := syscall.RawSyscall(sysSetns, uintptr(fd), syscall.CLONE_NEWNET, 0)
	if e != 0 {
		return e
	}
	return nil
}

// dialIn connects to addr from inside ns. The socket is created in ns; the
// connect itself may finish on any thread.
func dialIn(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(ns, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Namespaces of labs created by this process, for the interrupt handler.
var (
	nsMu       sync.Mutex
	namespaces = map[string]bool{}
)

func addNetns(name string) error {
	if _, err := run("ip", "netns", "add", name); err != nil {
		return err
	}
	nsMu.Lock()
	namespaces[name] = true
	nsMu.Unlock()
	return nil
}

// delNetns kills every process left in ns and deletes it.
func delNetns(name string) {
	killNetnsPIDs(name)
	_, _ = run("ip", "netns", "del", name)
	nsMu.Lock()
	delete(namespaces, name)
	nsMu.Unlock()
}

func killNetnsPIDs(name string) {
	out, err := run("ip", "netns", "pids", name)
	if err != nil {
		return
	}
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Interrupted tears down every lab of this process: call it from a
// SIGINT/SIGTERM handler in TestMain, where t.Cleanup does not run.
func Interrupted() {
	killAllPIDs()
	nsMu.Lock()
	names := make([]string, 0, len(namespaces))
	for n := range namespaces {
		names = append(names, n)
	}
	nsMu.Unlock()
	for _, n := range names {
		delNetns(n)
	}
	labsMu.Lock()
	for l := range labs {
		if os.Getenv("VIPCAST_E2E_KEEP") == "" {
			_ = os.RemoveAll(l.Dir)
		}
		_ = os.Remove(l.stateFile)
	}
	labsMu.Unlock()
}

// stateDir records which test process owns which lab, so a lab left by a
// crashed run (SIGKILL, OOM) is removed by the next one.
const stateDir = "/run/vipcast-e2e"

// SweepStale deletes namespaces and directories of labs whose owning test
// process no longer exists. Labs of other live runs are left alone.
func SweepStale() {
	entries, err := os.ReadDir(stateDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		path := filepath.Join(stateDir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		fields := strings.Fields(string(b))
		if len(fields) < 2 {
			continue
		}
		pid, _ := strconv.Atoi(fields[0])
		if pid > 0 && syscall.Kill(pid, 0) == nil {
			continue // owner alive
		}
		id, dir := e.Name(), fields[1]
		out, _ := run("ip", "netns", "list")
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], id) {
				delNetns(f[0])
			}
		}
		sweepStaleCgroups(id)
		if strings.HasPrefix(dir, os.TempDir()) {
			_ = os.RemoveAll(dir)
		}
		_ = os.Remove(path)
	}
}
