package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/vipcast/vipcast/speaker"
)

// lockNode makes this the one speaker of the network namespace, before
// anything touches the loopback: a second vipcast (a static pod and a
// DaemonSet pod during a migration, or a stray manual run) would otherwise
// remove the first one's VIPs at its start and at its exit. The lock is
// an abstract unix socket, so it needs no writable file system and dies
// with the process.
func lockNode(cmd *cobra.Command, log *slog.Logger) (*speaker.InstanceLock, error) {
	path, _ := cmd.Flags().GetString("config")
	if path == "" {
		path = "(none)"
	}
	info := fmt.Sprintf("pid %d, vipcast %s, config %s, started %s", os.Getpid(), version, path, time.Now().UTC().Format(time.RFC3339))
	lock, err := speaker.LockInstance(speaker.InstanceName, info, log)
	if err != nil {
		return nil, err
	}
	return lock, nil
}

// removeStaleVIPs takes off the loopback what a killed predecessor left
// there, before anything that can fail (a missing CA file, a bad config, a
// socket that does not bind): a vipcast that never gets to run must not
// leave the node answering for a VIP nobody advertises. cfg may come from a
// configuration that failed validation, or be empty (unreadable YAML); it
// removes every address vipcast marked as its own on the configured
// interface (lo if unknown): IPv4 by the label "lo:vip", IPv6 (no labels)
// by the address protocol (Linux 5.18+; older kernels drop the mark, and a
// stale IPv6 VIP there goes only when the configuration names it), and
// every configured VIP that parses.
func removeStaleVIPs(cfg fileConfig, log *slog.Logger) {
	ifname := cfg.Speaker.Loopback.Interface
	if ifname == "" {
		ifname = "lo"
	}
	var vips []netip.Prefix
	for _, p := range cfg.Speaker.Prefixes() {
		if p.IsSingleIP() {
			vips = append(vips, p)
		}
	}
	l, err := speaker.NewLoopback(ifname, log)
	if err != nil {
		log.Error("stale VIPs not removed", "err", err)
		return
	}
	defer l.Close()
	if err := l.Cleanup(vips); err != nil {
		log.Error("stale VIPs not removed", "err", err)
	}
}
