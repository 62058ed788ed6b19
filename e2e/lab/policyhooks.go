package lab

import (
	"fmt"
	"os"
)

// RouterVtysh runs vtysh commands on the FRR router, e.g.
// RouterVtysh("-c", "show bgp summary json"). BIRD labs return an error.
func (l *Lab) RouterVtysh(args ...string) (string, error) {
	r, ok := l.router.(*frrRouter)
	if !ok {
		return "", fmt.Errorf("router %s has no vtysh", l.Opts.Router)
	}
	return r.vtysh(args...)
}

// NodeExec runs a command inside node n's network namespace, e.g.
// NodeExec(n, "ip", "route", "show", "table", "all").
func (l *Lab) NodeExec(n *Node, args ...string) (string, error) { return nsExec(n.NS, args...) }

// StartVipcastEdited is StartVipcast with the generated config passed
// through edit first (e.g. to add peers[].nodeCIDRs). The next StartVipcast
// (or Restore restarting a dead vipcast) writes the plain config again.
func (n *Node) StartVipcastEdited(edit func(config string) string) error {
	if err := n.writeVipcastConfig(); err != nil {
		return err
	}
	b, err := os.ReadFile(n.ConfigFile())
	if err != nil {
		return err
	}
	if err := os.WriteFile(n.ConfigFile(), []byte(edit(string(b))), 0o644); err != nil {
		return err
	}
	if n.vipcast == nil {
		return fmt.Errorf("%s: vipcast was never started", n.Name)
	}
	return n.vipcast.start()
}
