package lab

import (
	"context"
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
