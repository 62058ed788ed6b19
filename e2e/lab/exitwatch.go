package lab

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sysPidfdOpen is pidfd_open(2): 434 on every architecture (it postdates
// the split syscall tables).
const sysPidfdOpen = 434

// ExitWatch times the exit of a process that is not the test's child (a
// container's task): a pidfd becomes readable the moment the process is
// dead, so a measurement can start there rather than when the command that
// killed it was run (ctr or crictl take hundreds of milliseconds on a
// loaded host).
type ExitWatch struct {
	pid  int
	done chan struct{}
	at   time.Time
	err  error
}

// WatchExit starts watching pid; the watch ends with the process or after
// timeout, whichever comes first (Wait reports which).
func WatchExit(pid int, timeout time.Duration) (*ExitWatch, error) {
	fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
	if errno != 0 {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, errno)
	}
	w := &ExitWatch{pid: pid, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer syscall.Close(int(fd))
		deadline := time.Now().Add(timeout)
		for {
			left := time.Until(deadline)
			if left <= 0 {
				w.err = fmt.Errorf("pid %d still alive after %v", pid, timeout)
				return
			}
			var rd syscall.FdSet
			rd.Bits[fd/64] |= 1 << (fd % 64)
			tv := syscall.NsecToTimeval(min(left, 100*time.Millisecond).Nanoseconds())
			n, err := syscall.Select(int(fd)+1, &rd, nil, nil, &tv)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				w.err = fmt.Errorf("select on the pidfd of %d: %w", pid, err)
				return
			}
			if n > 0 {
				w.at = time.Now()
				return
			}
		}
	}()
	return w, nil
}

// Wait returns when the process died.
func (w *ExitWatch) Wait() (time.Time, error) {
	<-w.done
	return w.at, w.err
}

// ContainerPID is the host PID of container id's task in the node's
// containerd (`ctr tasks ls`).
func (n *Node) ContainerPID(id string) (int, error) {
	out, err := n.Ctr("tasks", "ls")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == id {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("%s: container %s not in ctr tasks ls:\n%s", n.Name, id, out)
}

// RouterLastReset is FRR's reason for the last reset of the session with
// peer (lastResetDueTo in `show bgp neighbors PEER json`): "Peer closed the
// session" when the peer's TCP connection closed, "BGP Notification send"
// with a hold timer expiry.
func (l *Lab) RouterLastReset(peer string) (string, error) {
	r, ok := l.router.(*frrRouter)
	if !ok {
		return "", fmt.Errorf("RouterLastReset needs FRR")
	}
	out, err := r.vtysh("-c", "show bgp neighbors "+peer+" json")
	if err != nil {
		return "", err
	}
	return lastResetDueTo([]byte(out), peer)
}

func lastResetDueTo(out []byte, peer string) (string, error) {
	var doc map[string]struct {
		LastResetDueTo string `json:"lastResetDueTo"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return "", fmt.Errorf("show bgp neighbors %s json: %w", peer, err)
	}
	nb, ok := doc[peer]
	if !ok {
		return "", fmt.Errorf("show bgp neighbors %s json: no such neighbor", peer)
	}
	return nb.LastResetDueTo, nil
}
