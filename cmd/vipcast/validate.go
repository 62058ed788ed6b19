package main

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/spf13/cobra"

	"github.com/vipcast/vipcast/peers"
	"github.com/vipcast/vipcast/speaker"
)

func newValidateCmd(environ []string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check a configuration and report every problem at once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd.Flags(), environ)
			if err == nil {
				err = preflight(cfg, resolveRouterID)
			}
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), problems(err))
				return exitError{code: 2}
			}
			fmt.Fprintln(cmd.OutOrStdout(), "configuration is valid")
			return nil
		},
	}
	addConfigFlags(cmd.Flags())
	return cmd
}

// resolveRouterID is peers.ResolveRouterID; the tests replace it so they
// do not depend on the test machine's addresses.
var resolveRouterID = peers.ResolveRouterID

// preflight makes the checks run makes before it touches the network,
// which need the node (files' contents, its addresses) rather than the
// configuration alone: validate and run share them, so a configuration
// validate accepts is never one run refuses. It runs once the
// configuration itself is valid.
func preflight(cfg fileConfig, routerID func(string) (netip.Addr, error)) error {
	var errs []error
	// Loads the CA, the client certificate and the token as run does.
	if p, err := speaker.NewHTTPProber(cfg.Speaker.Health); err != nil {
		errs = append(errs, err)
	} else {
		p.Close()
	}
	if _, err := routerID(cfg.Peering.BGP.RouterID); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
