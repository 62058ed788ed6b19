package speaker

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// InstanceName is the abstract unix socket (Linux; "@" is Go's spelling of
// the leading NUL) that makes one speaker per network namespace. Abstract
// sockets belong to the network namespace, need no writable file system
// (static pods and read-only root file systems), and vanish with the
// process, even after a SIGKILL, so a crash never leaves a stale lock.
const InstanceName = "@vipcast/speaker"

// instanceAnswerTimeout bounds how long a second instance waits for the
// running one's self-description.
const instanceAnswerTimeout = time.Second

// InstanceLock is held for the life of a speaker; a second LockInstance
// in the same network namespace fails until Close (or the process ends).
type InstanceLock struct {
	ln   *net.UnixListener
	info string
	log  *slog.Logger
	wg   sync.WaitGroup
}

// RunningError says another speaker holds the lock.
type RunningError struct {
	Name string
	// PID is the holder's process ID as the kernel reports it (SO_PEERCRED)
	// in the caller's PID namespace; 0 if it is in another one (e.g. a
	// static pod and a DaemonSet pod on one node).
	PID int32
	// Info is what the holder says about itself (its own PID, version,
	// configuration and start time); empty if it did not answer.
	Info string
}

func (e *RunningError) Error() string {
	who := "another vipcast"
	if e.PID > 0 {
		who = fmt.Sprintf("another vipcast (pid %d)", e.PID)
	}
	if e.Info != "" {
		who += " [" + e.Info + "]"
	}
	return fmt.Sprintf("%s already runs in this network namespace (it holds the abstract socket %s): only one speaker per node may manage the VIPs on the loopback; this one exits without touching them. Stop the other one first (e.g. remove the static-pod manifest before the DaemonSet takes over)", who, e.Name)
}

// LockInstance takes the lock name (normally InstanceName) before anything
// touches the loopback. info is a line a second instance shows to say who
// holds it. If another process holds it, the error is a *RunningError.
func LockInstance(name, info string, log *slog.Logger) (*InstanceLock, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		if errors.Is(err, unix.EADDRINUSE) {
			return nil, holder(name)
		}
		return nil, fmt.Errorf("instance lock %s: %w", name, err)
	}
	l := &InstanceLock{ln: ln, info: strings.ReplaceAll(info, "\n", " "), log: log}
	l.wg.Add(1)
	go l.serve()
	return l, nil
}

// serve answers each second instance with l.info until Close.
func (l *InstanceLock) serve() {
	defer l.wg.Done()
	for {
		c, err := l.ln.AcceptUnix()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				l.log.Warn("instance lock: accept", "err", err)
			}
			return
		}
		l.log.Warn("another vipcast tried to start in this network namespace; it was refused")
		_ = c.SetWriteDeadline(time.Now().Add(instanceAnswerTimeout))
		_, _ = c.Write([]byte(l.info + "\n"))
		c.Close()
	}
}

// Close releases the lock and stops answering.
func (l *InstanceLock) Close() error {
	if l == nil {
		return nil
	}
	err := l.ln.Close()
	l.wg.Wait()
	return err
}

// holder describes the process holding name.
func holder(name string) error {
	e := &RunningError{Name: name}
	c, err := net.DialTimeout("unix", name, instanceAnswerTimeout)
	if err != nil {
		return e
	}
	defer c.Close()
	if raw, err := c.(*net.UnixConn).SyscallConn(); err == nil {
		_ = raw.Control(func(fd uintptr) {
			if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
				e.PID = cred.Pid
			}
		})
	}
	_ = c.SetReadDeadline(time.Now().Add(instanceAnswerTimeout))
	if line, err := bufio.NewReader(c).ReadString('\n'); err == nil || line != "" {
		e.Info = strings.TrimSpace(line)
	}
	return e
}
