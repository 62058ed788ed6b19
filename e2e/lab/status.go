package lab

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"time"
)

// Socket is the node's vipcast API socket.
func (n *Node) Socket() string { return filepath.Join(n.Dir, "vipcast.sock") }

// Vipcast runs the vipcast CLI against this node's speaker, e.g.
// Vipcast("status") or Vipcast("drain", "--reason", "e2e"), and returns its
// combined output.
func (n *Node) Vipcast(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args = append(args, "--socket", n.Socket())
	out, err := exec.CommandContext(ctx, VipcastBin(), args...).CombinedOutput()
	return string(out), err
}

// StatusAll runs `vipcast status --all` as an operator outside the
// cluster would: in the client namespace, with the admin kubeconfig
// through the VIP (Options.ControlPlane or Cluster), plus args. It returns
// stdout and stderr together, the exit code (-1 if it did not run) and how
// long it took.
func (l *Lab) StatusAll(args ...string) (out string, code int, took time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args = append([]string{"netns", "exec", l.clientNS, VipcastBin(), "status", "--all", "--kubeconfig", l.ClusterKubeconfig()}, args...)
	start := time.Now()
	b, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	took = time.Since(start)
	var ee *exec.ExitError
	switch {
	case err == nil:
		code = 0
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		code = -1
	}
	return string(b), code, took
}
