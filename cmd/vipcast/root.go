package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries a process exit code through cobra.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func execute(args, environ []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:           "vipcast",
		Short:         "BGP anycast for the Kubernetes API VIP, gated on the local apiserver's health",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			if cmd.Name() != "run" {
				releaseSignals()
			}
		},
	}
	root.PersistentFlags().String("log-level", "info", "debug, info, warn or error")
	root.PersistentFlags().String("log-format", "text", "text or json")
	root.AddCommand(newRunCmd(environ), newValidateCmd(environ), newManifestCmd())
	root.AddCommand(operatorCmds(environ)...)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		fmt.Fprintln(stderr, "vipcast:", err)
		return 1
	}
	return 0
}

// newLogger builds the one logger every package gets, and routes klog
// (client-go) into it.
func newLogger(cmd *cobra.Command, w io.Writer) (*slog.Logger, error) {
	levelName, _ := cmd.Flags().GetString("log-level")
	format, _ := cmd.Flags().GetString("log-format")
	var level slog.Level
	if err := level.UnmarshalText([]byte(levelName)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not a level; use debug, info, warn or error", levelName)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("--log-format: %q is not a format; use text or json", format)
	}
	log := slog.New(h)
	klog.SetSlogLogger(log.With("component", "klog"))
	return log, nil
}

// problems formats joined errors one per line for humans.
func problems(err error) string {
	var lines []string
	for _, e := range flatten(err) {
		lines = append(lines, "  - "+e.Error())
	}
	return fmt.Sprintf("%d problem(s) in the configuration:\n%s", len(lines), strings.Join(lines, "\n"))
}
