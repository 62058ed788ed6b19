//go:build !linux

package speaker

import (
	"errors"
	"log/slog"
	"net/netip"
)

// Loopback needs Linux netlink; elsewhere vipcast builds (for the CLI's
// validate) but cannot run.
type Loopback struct{}

// NewLoopback always fails off Linux.
func NewLoopback(string, *slog.Logger) (*Loopback, error) {
	return nil, errors.New("VIPs on the loopback need Linux")
}

func (*Loopback) Add(netip.Prefix) error       { return errors.ErrUnsupported }
func (*Loopback) Remove(netip.Prefix) error    { return errors.ErrUnsupported }
func (*Loopback) Cleanup([]netip.Prefix) error { return errors.ErrUnsupported }
func (*Loopback) Close() error                 { return nil }

func (*Loopback) Missing([]netip.Prefix) ([]netip.Prefix, error) { return nil, errors.ErrUnsupported }
