//go:build !linux

package speaker

import (
	"errors"
	"log/slog"
)

// InstanceName is the abstract unix socket of the one-speaker lock (Linux).
const InstanceName = "@vipcast/speaker"

// InstanceLock needs Linux's abstract unix sockets.
type InstanceLock struct{}

// LockInstance always fails off Linux, where vipcast cannot run anyway.
func LockInstance(string, string, *slog.Logger) (*InstanceLock, error) {
	return nil, errors.New("the one-speaker lock needs Linux")
}

// Close does nothing.
func (*InstanceLock) Close() error { return nil }
