//go:build !linux

package peers

import (
	"errors"
	"net/netip"
)

// globalIPv6Towards needs netlink; elsewhere set peers[].nextHopIPv6.
func globalIPv6Towards(netip.Addr) (netip.Addr, string, error) {
	return netip.Addr{}, "", errors.New("finding the interface towards the peer needs Linux")
}
