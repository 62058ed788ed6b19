package lab

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// VipcastConfig is the node's generated vipcast configuration, as
// StartVipcast writes it.
func (n *Node) VipcastConfig() (string, error) {
	if err := n.writeVipcastConfig(); err != nil {
		return "", err
	}
	b, err := os.ReadFile(n.ConfigFile())
	return string(b), err
}

// RunVipcastOnce runs another `vipcast run` in the node's namespace with
// config (written to a file of its own), next to whatever the node runs
// already, and waits up to timeout for it to exit. It returns the combined
// output and the exit code; a vipcast still running at the timeout gets
// SIGTERM (then SIGKILL after 10 s) and the code is -1.
func (n *Node) RunVipcastOnce(config string, timeout time.Duration) (string, int, error) {
	path := filepath.Join(n.Dir, "vipcast-once.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		return "", 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.NS, VipcastBin(), "run", "--config", path, "--log-format", "json")
	cmd.Env = childEnv()
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), -1, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode(), nil
	}
	if err != nil {
		return string(out), 0, err
	}
	return string(out), 0, nil
}

// DeleteVIP removes vip from the node's lo behind vipcast's back, as an
// admin or a network tool would.
func (n *Node) DeleteVIP(vip string) error {
	_, err := run("ip", "-n", n.NS, "addr", "del", vip, "dev", "lo")
	return err
}
