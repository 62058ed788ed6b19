package lab

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// proc is one daemon started inside a network namespace. `ip netns exec`
// execs the binary in place, so the PID is the daemon's own and signals
// reach it directly.
type proc struct {
	name    string
	ns      string
	argv    []string
	logPath string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	stopped bool // SIGSTOPped and not yet continued
	started time.Time

	// keepAlive restarts the process when it exits by itself, as a
	// kubelet restarts a static pod (restartPolicy Always). down is set
	// when the lab stops or kills it on purpose. restarts counts them.
	keepAlive bool
	down      bool
	restarts  int
}

// restartDelay is how long a kept-alive process stays down before it is
// started again (a kubelet's first back-off is 10 s; the lab is quicker).
const restartDelay = time.Second

// labDown is set when the test process is interrupted: nothing restarts.
var labDown atomic.Bool

func newProc(name, ns, logPath string, argv ...string) *proc {
	return &proc{name: name, ns: ns, argv: argv, logPath: logPath}
}

// start launches the process; its stdout and stderr are appended to logPath.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !isClosed(p.done) {
		return fmt.Errorf("%s: already running (pid %d)", p.name, p.cmd.Process.Pid)
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "==== %s start %s: %s\n", time.Now().Format(time.RFC3339Nano), p.name, strings.Join(p.argv, " "))
	// ns "" runs argv as given (it enters the namespace itself: nsenter).
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	if p.ns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", p.ns}, p.argv...)...)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = childEnv()
	// Own process group, and killed with the test binary's thread if the
	// test process dies without running its cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", p.name, err)
	}
	registerPID(cmd.Process.Pid)
	done := make(chan struct{})
	p.cmd, p.done, p.err, p.stopped, p.started, p.down = cmd, done, nil, false, time.Now(), false
	go func() {
		err := cmd.Wait()
		unregisterPID(cmd.Process.Pid)
		p.mu.Lock()
		p.err = err
		again := p.keepAlive && !p.down && !labDown.Load()
		p.mu.Unlock()
		if again {
			fmt.Fprintf(f, "==== %s %s exited (%v); restarting in %v\n", time.Now().Format(time.RFC3339Nano), p.name, err, restartDelay)
		}
		f.Close()
		close(done)
		if again {
			p.restartLater()
		}
	}()
	return nil
}

// restartLater starts a kept-alive process again after restartDelay unless
// the lab stopped it meanwhile (or started it itself).
func (p *proc) restartLater() {
	time.AfterFunc(restartDelay, func() {
		p.mu.Lock()
		skip := p.down || labDown.Load() || !isClosed(p.done)
		if !skip {
			p.restarts++
		}
		p.mu.Unlock()
		if !skip {
			_ = p.start() // a failure is in its log; alive() says it is down
		}
	})
}

// childEnv is this process's environment without VIPCAST_* variables:
// vipcast reads those as settings, and the test's own (VIPCAST_E2E...)
// would be rejected as unknown.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VIPCAST_") {
			env = append(env, kv)
		}
	}
	return env
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// alive reports whether the process has not exited (a stopped process is alive).
func (p *proc) alive() bool {
	if p == nil { // not started yet (a bootstrap lab's nodes before they join)
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !isClosed(p.done)
}

// signal sends sig to the process (not its group).
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || isClosed(p.done) {
		return fmt.Errorf("%s: not running", p.name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %v: %w", p.name, sig, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		p.stopped = true
	case syscall.SIGCONT:
		p.stopped = false
	}
	return nil
}

func (p *proc) isStopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopped && p.cmd != nil && !isClosed(p.done)
}

// wait waits up to timeout for the process to exit.
func (p *proc) wait(timeout time.Duration) error {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s: still running after %v", p.name, timeout)
	}
}

// exitErr is the process's exit status once it has exited.
func (p *proc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// kill SIGKILLs the process group and waits for it.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.down = true
	p.mu.Unlock()
	if cmd == nil || isClosed(done) {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

// stop sends SIGTERM (continuing a stopped process first) and SIGKILLs
// after grace.
func (p *proc) stop(grace time.Duration) {
	p.mu.Lock()
	p.down = true
	p.mu.Unlock()
	if !p.alive() {
		return
	}
	_ = p.signal(syscall.SIGCONT)
	_ = p.signal(syscall.SIGTERM)
	if p.wait(grace) != nil {
		p.kill()
	}
}

// Every PID this process started, so an interrupt can kill them all.
var (
	pidsMu sync.Mutex
	pids   = map[int]bool{}
)

func registerPID(pid int)   { pidsMu.Lock(); pids[pid] = true; pidsMu.Unlock() }
func unregisterPID(pid int) { pidsMu.Lock(); delete(pids, pid); pidsMu.Unlock() }

func killAllPIDs() {
	labDown.Store(true)
	pidsMu.Lock()
	defer pidsMu.Unlock()
	for pid := range pids {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
