package main

import (
	"github.com/spf13/cobra"
)

func newRunCmd(environ []string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the speaker",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return nil
		},
	}
	addConfigFlags(cmd.Flags())
	return cmd
}
