package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newValidateCmd(environ []string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check a configuration and report every problem at once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := loadConfig(cmd.Flags(), environ); err != nil {
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
