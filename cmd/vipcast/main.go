// Command vipcast advertises the Kubernetes API VIP over BGP while the
// node's own kube-apiserver is healthy.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// Before anything else: until a channel is registered, the Go runtime
	// treats SIGHUP and SIGTERM as fatal, so a reload or stop sent just
	// after start (a config-management run, a quick pod delete) would kill
	// vipcast without its shutdown sequence. run takes these signals over;
	// the other commands give them back their default meaning.
	earlySignals = make(chan os.Signal, 8)
	signal.Notify(earlySignals, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	os.Exit(execute(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// earlySignals holds what arrived since main started; nil when execute
// runs without main (tests).
var earlySignals chan os.Signal

// takeSignals returns the channel that receives SIGHUP, SIGTERM and SIGINT:
// the one main registered, or a new one.
func takeSignals() chan os.Signal {
	if earlySignals != nil {
		return earlySignals
	}
	c := make(chan os.Signal, 8)
	signal.Notify(c, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	return c
}

// releaseSignals gives the signals back their default meaning, for the
// commands that do not handle them.
func releaseSignals() {
	if earlySignals != nil {
		signal.Stop(earlySignals)
	}
}
