package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/vipcast/vipcast/speaker"
	apiv1 "github.com/vipcast/vipcast/speaker/api/v1"
	"github.com/vipcast/vipcast/speaker/apiserver"
)

// operatorCmds talk to a running vipcast over its API.
func operatorCmds(environ []string) []*cobra.Command {
	cmds := []*cobra.Command{newStatusCmd(environ), newWatchCmd(), newDrainCmd(true), newDrainCmd(false)}
	for _, c := range cmds {
		c.PreRunE = func(cmd *cobra.Command, _ []string) error { return resolveSocket(cmd, environ) }
	}
	return cmds
}

// resolveSocket sets --socket, when not given, from VIPCAST_API_SOCKET or
// else from api.socket in the file named by --config: the same precedence
// as run's (flag > environment > file > default), so a speaker with a
// non-default socket is found without repeating it.
func resolveSocket(cmd *cobra.Command, environ []string) error {
	fs := cmd.Flags()
	if fs.Changed("socket") {
		return nil
	}
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, envPrefix+"_API_SOCKET="); ok {
			return fs.Set("socket", v)
		}
	}
	path, _ := fs.GetString("config")
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w; pass vipcast's readable configuration file, or --socket", err)
	}
	var f struct {
		API struct {
			Socket *string `yaml:"socket"`
		} `yaml:"api"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("--config %s: %w; fix the YAML syntax, or pass --socket", path, err)
	}
	if f.API.Socket != nil {
		return fs.Set("socket", *f.API.Socket)
	}
	return nil
}

func addClientFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringP("config", "c", "", "vipcast's configuration file, to take api.socket from")
	fs.String("socket", apiserver.DefaultSocket, "vipcast's API socket (default: VIPCAST_API_SOCKET, else api.socket from --config, else this)")
	fs.String("addr", "", "host:port of vipcast's TCP API (mutual TLS) instead of the socket")
	fs.String("ca", "", "with --addr: CA bundle that signed the server's certificate")
	fs.String("cert", "", "with --addr: client certificate")
	fs.String("key", "", "with --addr: client key")
	fs.Duration("timeout", 10*time.Second, "time limit of the call")
}

func dial(cmd *cobra.Command) (apiv1.VipcastServiceClient, func(), error) {
	fs := cmd.Flags()
	var c apiserver.ClientConfig
	c.Socket, _ = fs.GetString("socket")
	c.Addr, _ = fs.GetString("addr")
	c.CAFile, _ = fs.GetString("ca")
	c.CertFile, _ = fs.GetString("cert")
	c.KeyFile, _ = fs.GetString("key")
	conn, client, err := apiserver.Dial(c)
	if err != nil {
		return nil, nil, err
	}
	return client, func() { conn.Close() }, nil
}

func callCtx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	d, _ := cmd.Flags().GetDuration("timeout")
	return context.WithTimeout(cmd.Context(), d)
}

// rpcError turns a gRPC status into a plain message.
func rpcError(err error, cmd *cobra.Command) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	where, _ := cmd.Flags().GetString("addr")
	if where == "" {
		where, _ = cmd.Flags().GetString("socket")
	}
	switch st.Code() {
	case codes.PermissionDenied:
		return errors.New(st.Message())
	case codes.Unavailable:
		return fmt.Errorf("vipcast at %s is unavailable: %s", where, st.Message())
	case codes.Unimplemented:
		return fmt.Errorf("vipcast at %s does not support this call (another version?): %s", where, st.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("vipcast at %s did not answer within --timeout", where)
	}
	return fmt.Errorf("%s: %s", strings.ToLower(st.Code().String()), st.Message())
}

func checkVersion(w io.Writer, server string) {
	if server != version {
		fmt.Fprintf(w, "warning: the vipcast serving the API is version %q, this command is %q; fields may be missing or unknown\n", server, version)
	}
}

func newStatusCmd(environ []string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show what the running speaker does and why: VIPs, health, BGP sessions, drain, transitions (--all: every node's, from the API)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, _ := cmd.Flags().GetString("output")
			if format != "table" && format != "json" && format != "yaml" {
				return fmt.Errorf("-o: %q is not a format; use table, json or yaml", format)
			}
			if all, _ := cmd.Flags().GetBool("all"); all {
				return runStatusAll(cmd, format, envLookup(environ))
			}
			client, closeConn, err := dial(cmd)
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := callCtx(cmd)
			defer cancel()
			st, err := client.GetStatus(ctx, &apiv1.GetStatusRequest{})
			if err != nil {
				return rpcError(err, cmd)
			}
			checkVersion(cmd.ErrOrStderr(), st.GetVersion())
			return printMessage(cmd.OutOrStdout(), format, st, func(w io.Writer) { printStatus(w, st, time.Now()) })
		},
	}
	addClientFlags(cmd)
	addAllFlags(cmd)
	cmd.Flags().StringP("output", "o", "table", "table, json or yaml")
	return cmd
}

func printMessage(w io.Writer, format string, m proto.Message, table func(io.Writer)) error {
	if format != "json" && format != "yaml" {
		table(w)
		return nil
	}
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	return printEncoded(w, format, b)
}

// printEncoded prints the JSON document b as format, json or yaml.
func printEncoded(w io.Writer, format string, b []byte) error {
	if format == "json" {
		_, err := fmt.Fprintln(w, string(b))
		return err
	}
	// JSON is YAML: decode into a node to keep the field order, then
	// print it in block style.
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return err
	}
	blockStyle(&n)
	out, err := yaml.Marshal(&n)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

func blockStyle(n *yaml.Node) {
	n.Style &^= yaml.FlowStyle
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		n.Style &^= yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}

func ago(now time.Time, t interface{ AsTime() time.Time }, valid bool) string {
	if !valid {
		return "-"
	}
	at := t.AsTime()
	return fmt.Sprintf("%s (%s ago)", at.Local().Format(time.DateTime), now.Sub(at).Truncate(time.Second))
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func printStatus(w io.Writer, st *apiv1.GetStatusResponse, now time.Time) {
	fmt.Fprintf(w, "vipcast %s  config %s\n", st.GetVersion(), st.GetConfigDigest())
	if st.GetDrained() {
		r := st.GetDrainReason()
		if r == "" {
			r = "no reason given"
		}
		fmt.Fprintf(w, "DRAINED: %s (vipcast undrain to put the node back)\n", r)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VIP\tADVERTISED\tANNOUNCED\tREASON\tSINCE")
	for _, v := range st.GetVips() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.GetPrefix(), yesNo(v.GetAdvertised()), yesNo(v.GetAnnounce()), v.GetReason(), ago(now, v.GetSince(), v.GetSince() != nil))
	}
	tw.Flush()

	h := st.GetHealth()
	fmt.Fprintln(w)
	var marks strings.Builder
	var last *apiv1.ProbeResult
	for _, r := range h.GetRecent() {
		if r.GetOk() {
			marks.WriteByte('+')
		} else {
			marks.WriteByte('x')
		}
		last = r
	}
	thresholds := fmt.Sprintf("rise %d, fall %d", h.GetRise(), h.GetFall())
	if h.GetTimeoutFall() > h.GetFall() {
		thresholds += fmt.Sprintf(", %d if all timeouts", h.GetTimeoutFall())
	}
	fmt.Fprintf(w, "health: %d ok / %d failed in a row (%s); last %d probes, oldest first: %s\n",
		h.GetOkRun(), h.GetFailRun(), thresholds, len(h.GetRecent()), marks.String())
	if last != nil {
		fmt.Fprintf(w, "last probe: %s in %s at %s\n", last.GetReason(), last.GetLatency().AsDuration(), last.GetAt().AsTime().Local().Format(time.TimeOnly+".000"))
	}
	if p := st.GetDampingPenalty(); p > 0 {
		fmt.Fprintf(w, "damping penalty: %.2f\n", p)
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tASN\tSTATE\tSINCE\tUPTIME\tSENT\tBFD\tLAST ERROR")
	for _, p := range st.GetPeers() {
		up := "-"
		if p.GetUptime() != nil {
			up = p.GetUptime().AsDuration().String()
		}
		lastErr := p.GetLastError()
		if lastErr == "" {
			lastErr = "-"
		}
		state := strings.ToLower(strings.TrimPrefix(p.GetState().String(), "SESSION_STATE_"))
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\n", p.GetAddress(), p.GetAsn(), state, ago(now, p.GetSince(), p.GetSince() != nil), up, p.GetPrefixesSent(), bfdCell(p.GetBfd()), lastErr)
	}
	tw.Flush()

	if trs := st.GetTransitions(); len(trs) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "recent transitions:")
		for _, t := range trs[max(0, len(trs)-10):] {
			printTransition(w, t)
		}
	}
}

// bfdCell is a peer's BFD session in one table cell: "up 100ms/300ms" is
// the state, the negotiated transmit interval and the detection time; "-"
// when BFD is off.
func bfdCell(b *apiv1.BFDStatus) string {
	if b == nil {
		return "-"
	}
	state := b.GetState()
	if state == "" {
		state = "unknown"
	}
	return fmt.Sprintf("%s %s/%s", state, b.GetTxInterval().AsDuration(), b.GetDetectTime().AsDuration())
}

func printTransition(w io.Writer, t *apiv1.Transition) {
	verb := "withdraw"
	if t.GetAnnounce() {
		verb = "announce"
	}
	line := fmt.Sprintf("  %s  %-8s  %s -> %s", t.GetAt().AsTime().Local().Format(time.DateTime+".000"), verb, t.GetFromReason(), t.GetToReason())
	if d := t.GetDetail(); d != "" {
		line += ": " + d
	}
	fmt.Fprintln(w, line)
}

func newWatchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Print each transition of the running speaker as it happens, until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, _ := cmd.Flags().GetString("output")
			if format != "text" && format != "json" {
				return fmt.Errorf("-o: %q is not a format; use text or json", format)
			}
			client, closeConn, err := dial(cmd)
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			vctx, cancel := callCtx(cmd)
			st, err := client.GetStatus(vctx, &apiv1.GetStatusRequest{})
			cancel()
			if err != nil {
				return rpcError(err, cmd)
			}
			checkVersion(cmd.ErrOrStderr(), st.GetVersion())
			stream, err := client.WatchStatus(ctx, &apiv1.WatchStatusRequest{})
			if err != nil {
				return rpcError(err, cmd)
			}
			out := cmd.OutOrStdout()
			if format == "text" {
				fmt.Fprintf(out, "watching vipcast %s (now: drained=%v); Ctrl-C to stop\n", st.GetVersion(), st.GetDrained())
			}
			for {
				msg, err := stream.Recv()
				if err != nil {
					if ctx.Err() != nil || errors.Is(err, io.EOF) {
						return nil
					}
					return rpcError(err, cmd)
				}
				if n := msg.GetDropped(); n > 0 && format == "text" {
					fmt.Fprintf(out, "  (missed %d transition(s): this client read too slowly)\n", n)
				}
				if format == "json" {
					b, err := protojson.Marshal(msg)
					if err != nil {
						return err
					}
					fmt.Fprintln(out, string(b))
					continue
				}
				printTransition(out, msg.GetTransition())
			}
		},
	}
	addClientFlags(cmd)
	cmd.Flags().StringP("output", "o", "text", "text, or json (one object per line)")
	return cmd
}

func newDrainCmd(drain bool) *cobra.Command {
	use, short := "undrain", "Put the node back in rotation (the VIPs return once the apiserver is healthy)"
	if drain {
		use, short = "drain", "Withdraw the VIPs until undrain, whatever the health; survives a restart of vipcast"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			reason, _ := cmd.Flags().GetString("reason")
			if err := speaker.CheckDrainReason(reason); err != nil {
				return fmt.Errorf("--%w", err)
			}
			client, closeConn, err := dial(cmd)
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := callCtx(cmd)
			defer cancel()
			var warning string
			var persisted bool
			if drain {
				r, err := client.Drain(ctx, &apiv1.DrainRequest{Reason: reason})
				if err != nil {
					return rpcError(err, cmd)
				}
				warning, persisted = r.GetWarning(), r.GetPersisted()
			} else {
				r, err := client.Undrain(ctx, &apiv1.UndrainRequest{Reason: reason})
				if err != nil {
					return rpcError(err, cmd)
				}
				warning, persisted = r.GetWarning(), r.GetPersisted()
			}
			out := cmd.OutOrStdout()
			if drain {
				fmt.Fprintln(out, drainedMessage(ctx, client))
			} else {
				fmt.Fprintln(out, "undrained: the VIPs are announced again while the apiserver is healthy")
			}
			switch {
			case persisted:
			case warning == apiserver.StateFileDisabled:
				// Chosen by the configuration: nothing failed.
				fmt.Fprintln(out, "note: api.stateFile is \"\", so this lasts until vipcast restarts")
			default:
				if warning == "" {
					warning = "the server did not say why"
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "vipcast: %s is in effect now, but it was NOT saved to the state file: %s\n"+
					"a restart of vipcast would undo it; fix the state file (vipcast's log names the problem) and run vipcast %s again\n", use, warning, use)
				return exitError{code: exitNotPersisted}
			}
			return nil
		},
	}
	addClientFlags(cmd)
	cmd.Flags().String("reason", "", "why, recorded in the status, the logs and the Node's events")
	return cmd
}

// exitNotPersisted is the exit code of drain and undrain when the change is
// in effect but not saved (the README's command table documents it).
const exitNotPersisted = 3

// drainedMessage says what a drain does right now: with RFC 8326 graceful
// shutdown the VIPs are still advertised (with GRACEFUL_SHUTDOWN) for
// policy.gracefulShutdown.wait before they are withdrawn.
func drainedMessage(ctx context.Context, client apiv1.VipcastServiceClient) string {
	const after = "; they stay withdrawn until vipcast undrain"
	// The Drain call returns once the speaker's loop has applied it, so
	// the status shows it.
	st, err := client.GetStatus(ctx, &apiv1.GetStatusRequest{})
	if err != nil {
		return "drained: the VIPs are being withdrawn" + after
	}
	withdrawing := false
	for _, v := range st.GetVips() {
		if !v.GetAdvertised() {
			continue
		}
		if v.GetReason() == string(speaker.ReasonGracefulShutdown) {
			return "drained: the VIPs are advertised with GRACEFUL_SHUTDOWN (65535:0) so routers move traffic away, then withdrawn" + after + " (vipcast status shows the progress)"
		}
		withdrawing = true
	}
	if withdrawing {
		return "drained: the VIPs are being withdrawn" + after
	}
	return "drained: the VIPs are withdrawn" + after
}
