package lab

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// T is the part of testing.TB the lab uses. *testing.T satisfies it;
// Program provides one for commands (e2e/cmd/demo, e2e/cmd/bench).
type T interface {
	Helper()
	Name() string
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Failed() bool
	Cleanup(func())
}

// Program is a T for a command: logs go to stdout with the elapsed time,
// a fatal error runs the cleanups (tearing the labs down) and exits 1, and
// SIGINT/SIGTERM do the same.
type Program struct {
	name  string
	start time.Time

	mu       sync.Mutex
	failed   bool
	cleanups []func()
	closed   bool
}

// NewProgram returns a Program; defer its Close.
func NewProgram(name string) *Program {
	p := &Program{name: name, start: time.Now()}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "%s: %v: tearing down\n", name, s)
		Interrupted()
		os.Exit(130)
	}()
	return p
}

func (p *Program) Helper()      {}
func (p *Program) Name() string { return p.name }

func (p *Program) Logf(format string, args ...any) {
	fmt.Printf("[%7.3fs] %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

func (p *Program) Errorf(format string, args ...any) {
	p.mu.Lock()
	p.failed = true
	p.mu.Unlock()
	p.Logf("ERROR: "+format, args...)
}

func (p *Program) Fatal(args ...any) { p.Fatalf("%s", fmt.Sprint(args...)) }

func (p *Program) Fatalf(format string, args ...any) {
	p.Errorf(format, args...)
	p.Close()
	os.Exit(1)
}

func (p *Program) Skipf(format string, args ...any) {
	p.Logf("cannot run: "+format, args...)
	p.Close()
	os.Exit(2)
}

func (p *Program) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

func (p *Program) Cleanup(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanups = append(p.cleanups, f)
}

// Close runs the cleanups, last registered first.
func (p *Program) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	cs := p.cleanups
	p.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}
