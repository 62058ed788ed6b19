package main

import (
	"bufio"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
)

// tcpTrace records, in the router namespace, which node accepted each
// client connection (its SYN-ACK's link) and which node link a RST for it came from, so a
// failed request can be explained: "accepted by n1, RST from n3" is a connection
// an ECMP change moved to a node that never saw it.
type tcpTrace struct {
	cmd  *exec.Cmd
	wg   sync.WaitGroup
	mu   sync.Mutex
	syn  map[string]string // client port -> node link of the latest SYN
	rst  map[string]string // client port -> node link of the latest RST
	err  error
	link map[string]string // v1 -> n1
}

var (
	// The SYN-ACK, not the SYN: a SYN the bridge floods (unknown MAC)
	// leaves on every port, the SYN-ACK comes in only from the node that
	// accepted the connection.
	synRe = regexp.MustCompile(`^(\S+)\s+In\s+IP 203\.0\.113\.10\.6443 > 198\.51\.100\.2\.(\d+): Flags \[S\.\]`)
	rstRe = regexp.MustCompile(`^(\S+)\s+In\s+IP 203\.0\.113\.10\.6443 > 198\.51\.100\.2\.(\d+): Flags \[R`)
)

func startTCPTrace(routerNS string, links map[string]string) *tcpTrace {
	t := &tcpTrace{syn: map[string]string{}, rst: map[string]string{}, link: links}
	t.cmd = exec.Command("ip", "netns", "exec", routerNS, "tcpdump", "-i", "any", "-nn", "-l", "-t",
		"tcp port 6443 and host 203.0.113.10 and (tcp[tcpflags] & (tcp-syn|tcp-rst) != 0)")
	t.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := t.cmd.StdoutPipe()
	if err != nil {
		t.err = err
		return t
	}
	if err := t.cmd.Start(); err != nil {
		t.err = fmt.Errorf("tcpdump: %w", err)
		return t
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if m := synRe.FindStringSubmatch(line); m != nil {
				if n, ok := t.link[m[1]]; ok {
					t.mu.Lock()
					t.syn[m[2]] = n
					t.mu.Unlock()
				}
			} else if m := rstRe.FindStringSubmatch(line); m != nil {
				if n, ok := t.link[m[1]]; ok {
					t.mu.Lock()
					t.rst[m[2]] = n
					t.mu.Unlock()
				}
			}
		}
	}()
	return t
}

var portRe = regexp.MustCompile(`198\.51\.100\.2:(\d+)->`)

// explain describes the path of the failed request whose error is err.
func (t *tcpTrace) explain(err string) string {
	if t == nil || t.err != nil {
		return ""
	}
	m := portRe.FindStringSubmatch(err)
	if m == nil {
		return ""
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var parts []string
	if n := t.syn[m[1]]; n != "" {
		parts = append(parts, "accepted by "+n)
	}
	if n := t.rst[m[1]]; n != "" {
		parts = append(parts, "RST from "+n)
	}
	return strings.Join(parts, ", ")
}

func (t *tcpTrace) stop() {
	if t == nil || t.cmd == nil || t.cmd.Process == nil {
		return
	}
	_ = t.cmd.Process.Signal(syscall.SIGINT)
	t.wg.Wait()
	_ = t.cmd.Wait()
}
