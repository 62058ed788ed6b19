package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vipcast/vipcast/peers"
	"github.com/vipcast/vipcast/speaker"
)

func newRunCmd(environ []string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the speaker: probe the local apiserver and advertise the VIPs while it is healthy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Signals are caught from here on (from main's first line when
			// run as the program); they are acted on once the speaker runs.
			sigs := takeSignals()
			defer signal.Stop(sigs)
			log, err := newLogger(cmd, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			// The lock first, then the stale VIPs, then what can fail.
			lock, err := lockNode(cmd, log)
			if err != nil {
				return err
			}
			defer lock.Close()
			cfg, set, err := loadSettings(cmd.Flags(), environ)
			removeStaleVIPs(cfg, log)
			if err == nil {
				err = preflight(cfg, resolveRouterID)
			}
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), problems(err))
				return exitError{code: 2}
			}
			prober, err := speaker.NewHTTPProber(cfg.Speaker.Health)
			if err != nil {
				return fmt.Errorf("health check: %w", err)
			}
			defer prober.Close()
			addrs, err := speaker.NewLoopback(cfg.Speaker.Loopback.Interface, log)
			if err != nil {
				return fmt.Errorf("loopback: %w", err)
			}
			// Optional: nothing in the routing path waits for the Kubernetes API.
			kapi := newKubeAPI(cfg, log, envLookup(environ))
			defer kapi.close()
			router, err := peers.NewGoBGP(selectPeers(cmd.Context(), set.peering, kapi.nodeInfo, log), set.vips, log)
			if err != nil {
				return fmt.Errorf("bgp: %w", err)
			}
			ops := newOperator(cfg, set.vips, log)
			scfg := cfg.Speaker
			scfg.Attributes, scfg.StateFile, scfg.GracefulShutdown, scfg.LastResort = set.attrs, cfg.API.StateFile, cfg.Policy.GracefulShutdown, cfg.Policy.LastResort
			sp, err := speaker.New(scfg, speaker.Deps{
				Router: router, Addresses: addrs, Prober: prober, Log: log,
				Observer: speaker.Observers{ops.observer(), kapi.observer()},
			})
			if err != nil {
				return err
			}
			// The API and metrics listeners outlive the speaker's shutdown
			// sequence (status stays readable during the drain period).
			kapi.startStatus(sp)
			stopOps, err := ops.start(sp)
			if err != nil {
				return err
			}
			defer stopOps()

			// First SIGTERM/SIGINT: graceful (withdraw, drain, remove, close).
			// Second: cancel the context, which skips the drain.
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			hup, stop := splitSignals(ctx, sigs)
			go watchReload(ctx, hup, cmd.Flags(), environ, cfg, router, kapi.nodeInfo, log)
			go func() {
				select {
				case s := <-stop:
					log.Info("signal received: graceful shutdown", "signal", s.String())
					sp.Shutdown()
				case <-ctx.Done():
					return
				}
				select {
				case s := <-stop:
					log.Warn("second signal: exiting at once", "signal", s.String())
					cancel()
				case <-ctx.Done():
				}
			}()
			log.Info("vipcast starting", "version", version, "vips", cfg.Speaker.VIPs, "peers", len(cfg.Peering.Peers))
			return sp.Run(ctx)
		},
	}
	addConfigFlags(cmd.Flags())
	return cmd
}

// splitSignals sorts sigs into reloads (SIGHUP) and stops (SIGTERM,
// SIGINT) until ctx ends. Repeated reloads merge into one; stops keep the
// first two (graceful, then at once).
func splitSignals(ctx context.Context, sigs <-chan os.Signal) (hup, stop <-chan os.Signal) {
	h, st := make(chan os.Signal, 1), make(chan os.Signal, 2)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-sigs:
				c := st
				if s == syscall.SIGHUP {
					c = h
				}
				select {
				case c <- s:
				default:
				}
			}
		}
	}()
	return h, st
}
