package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"k8s.io/client-go/rest"

	apiv1 "github.com/vipcast/vipcast/speaker/api/v1"
	"github.com/vipcast/vipcast/speaker/kube"
	"github.com/vipcast/vipcast/speaker/kube/nodestatus"
)

// Exit codes of `status --all` (the README's command table documents them).
const (
	// exitAPIUnreachable: no answer from the Kubernetes API (refused,
	// timed out, no route, TLS failure, 5xx); nothing was read from it.
	exitAPIUnreachable = 4
	// exitAPIRefused: the API answered but refused the read (401, 403, ...).
	exitAPIRefused = 5
)

// allTimeout is status --all's default time limit: one LIST; an API that
// has not answered in this time is reported unreachable.
const allTimeout = 3 * time.Second

// clusterStatus is `status --all`'s output.
type clusterStatus struct {
	Namespace string `json:"namespace"`
	// Source is where the API was found (kubeconfig, in-cluster, ...).
	Source string `json:"source"`
	// APIError says why the API could not be read; "" when it was.
	APIError string       `json:"apiError,omitempty"`
	Nodes    []kube.Entry `json:"nodes"`
	// NoWritesFor is how long ago the newest Lease was written, set only
	// when that is over half the Lease duration (quietFor): no vipcast
	// has renewed for two renewals or more, so every vipcast stopped, or
	// the API cannot store writes (etcd down or without quorum) and the
	// list came from its cache. Every row is then an old report.
	NoWritesFor nodestatus.Duration `json:"noWritesFor,omitempty"`
	// Local is this node's status from its API socket, read when the
	// Kubernetes API could not be (LocalError says why it is missing).
	Local      *nodestatus.Status `json:"local,omitempty"`
	LocalError string             `json:"localError,omitempty"`
}

func addAllFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.Bool("all", false, "every node's vipcast, from the status Leases in the Kubernetes API (kubectl get leases -l "+kube.StatusSelector+")")
	fs.String("kubeconfig", "", "with --all: kubeconfig (default: kubernetes.kubeconfig from --config, else in-cluster, else $KUBECONFIG)")
	fs.StringP("namespace", "n", "", "with --all: namespace of the Leases (default: VIPCAST_KUBERNETES_NAMESPACE, else kubernetes.namespace from --config, else "+kube.DefaultNamespace+")")
}

// allSettings resolves --all's kubeconfig and namespace: flag, then
// VIPCAST_KUBERNETES_*, then the file given with --config, then defaults
// (run's precedence).
func allSettings(cmd *cobra.Command, getenv func(string) string) (kube.Config, error) {
	fs := cmd.Flags()
	c := kube.Default()
	if path, _ := fs.GetString("config"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("--config: %w; pass vipcast's readable configuration file, or --kubeconfig and -n", err)
		}
		var f struct {
			Kubernetes struct {
				Kubeconfig *string `yaml:"kubeconfig"`
				Namespace  *string `yaml:"namespace"`
			} `yaml:"kubernetes"`
		}
		if err := yaml.Unmarshal(b, &f); err != nil {
			return c, fmt.Errorf("--config %s: %w; fix the YAML syntax, or pass --kubeconfig and -n", path, err)
		}
		if f.Kubernetes.Kubeconfig != nil {
			c.Kubeconfig = *f.Kubernetes.Kubeconfig
		}
		if f.Kubernetes.Namespace != nil {
			c.Namespace = *f.Kubernetes.Namespace
		}
	}
	if v := getenv(envPrefix + "_KUBERNETES_KUBECONFIG"); v != "" {
		c.Kubeconfig = v
	}
	if v := getenv(envPrefix + "_KUBERNETES_NAMESPACE"); v != "" {
		c.Namespace = v
	}
	if fs.Changed("kubeconfig") {
		c.Kubeconfig, _ = fs.GetString("kubeconfig")
	}
	if fs.Changed("namespace") {
		c.Namespace, _ = fs.GetString("namespace")
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("%w (flags: --kubeconfig, -n)", err)
	}
	return c, nil
}

// runStatusAll reads every node's status Lease and prints them.
func runStatusAll(cmd *cobra.Command, format string, getenv func(string) string) error {
	cfg, err := allSettings(cmd, getenv)
	if err != nil {
		return err
	}
	timeout := allTimeout
	if cmd.Flags().Changed("timeout") {
		timeout, _ = cmd.Flags().GetDuration("timeout")
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	out := clusterStatus{Namespace: cfg.Namespace, Nodes: []kube.Entry{}}
	rc, source, err := kube.RESTConfig(cfg, getenv)
	if err != nil {
		return fmt.Errorf("status --all: %w; pass --kubeconfig", err)
	}
	out.Source = source + " (" + rc.Host + ")"
	api, err := kube.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("status --all: kubernetes client (%s): %w", source, err)
	}
	now := time.Now()
	leases, err := kube.Leases(api).ListLeases(ctx, cfg.Namespace, kube.StatusSelector)
	code := 0
	if err != nil {
		code = exitAPIUnreachable
		var se *kube.StatusError
		if errors.As(err, &se) && se.Code < 500 {
			code = exitAPIRefused
		}
		out.APIError = apiProblem(err, rc, timeout)
		// Show what can be shown: this node's own vipcast, over its socket.
		out.Local, out.LocalError = localStatus(cmd, getenv)
	}
	for i := range leases {
		out.Nodes = append(out.Nodes, kube.EntryFromLease(&leases[i], now))
	}
	slices.SortFunc(out.Nodes, func(a, b kube.Entry) int { return strings.Compare(a.Node, b.Node) })
	out.NoWritesFor = nodestatus.Duration(quietFor(out.Nodes, now))
	if err := printAll(cmd.OutOrStdout(), format, out, now); err != nil {
		return err
	}
	if code != 0 {
		return exitError{code: code}
	}
	return nil
}

// quietFor is how long ago the newest of the Leases was written, if that
// is longer than half the longest Lease duration, else 0. Every running
// vipcast renews its Lease every 10 s (a quarter of the 40 s duration), so
// with even one node able to write, the newest renewal is never that old;
// the margin covers clocks apart by a few seconds. It is the one sign the
// list carries that the API is not storing writes: a LIST with
// resourceVersion=0 is answered from the apiserver's cache even while etcd
// is down, with the Leases as they were when it went.
func quietFor(nodes []kube.Entry, now time.Time) time.Duration {
	var newest time.Time
	var dur time.Duration
	for _, e := range nodes {
		if e.Renewed.After(newest) {
			newest = e.Renewed
		}
		dur = max(dur, time.Duration(e.Duration))
	}
	if newest.IsZero() || dur == 0 {
		return 0
	}
	if d := now.Sub(newest); d > dur/2 {
		return d
	}
	return 0
}

// apiProblem says plainly why the API could not be read.
func apiProblem(err error, rc *rest.Config, timeout time.Duration) string {
	var se *kube.StatusError
	var ne net.Error
	switch {
	case errors.As(err, &se) && se.Code < 500:
		return fmt.Sprintf("the Kubernetes API at %s refused to list the Leases: %v", rc.Host, err)
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return fmt.Sprintf("the Kubernetes API at %s is unreachable: no answer within %v (%v)", rc.Host, timeout, err)
	}
	return fmt.Sprintf("the Kubernetes API at %s is unreachable: %v", rc.Host, err)
}

// localStatus reads this node's vipcast over its API socket (briefly).
func localStatus(cmd *cobra.Command, getenv func(string) string) (*nodestatus.Status, string) {
	client, closeConn, err := dial(cmd)
	if err != nil {
		return nil, "this node's vipcast: " + err.Error()
	}
	defer closeConn()
	ctx, cancel := context.WithTimeout(cmd.Context(), time.Second)
	defer cancel()
	st, err := client.GetStatus(ctx, &apiv1.GetStatusRequest{})
	if err != nil {
		return nil, "this node's vipcast: " + rpcError(err, cmd).Error()
	}
	node := getenv(envPrefix + "_NODE_NAME")
	if node == "" {
		node = kube.DefaultNode().Name
	}
	ns := statusFromAPI(node, st)
	return &ns, ""
}

// statusFromAPI is the status API's answer in the Leases' form.
func statusFromAPI(node string, st *apiv1.GetStatusResponse) nodestatus.Status {
	ns := nodestatus.Status{Node: node, Version: st.GetVersion(), Drained: st.GetDrained(), DrainReason: st.GetDrainReason(),
		OKRun: int(st.GetHealth().GetOkRun()), FailRun: int(st.GetHealth().GetFailRun()), VIPs: []nodestatus.VIP{}, Sessions: []nodestatus.Session{}}
	for _, v := range st.GetVips() {
		ns.Advertised = ns.Advertised || v.GetAdvertised()
		vs := nodestatus.VIP{Prefix: v.GetPrefix(), Advertised: v.GetAdvertised(), Announce: v.GetAnnounce(), Reason: v.GetReason()}
		if v.GetSince() != nil {
			vs.Since = v.GetSince().AsTime()
		}
		ns.VIPs = append(ns.VIPs, vs)
	}
	if r := st.GetHealth().GetRecent(); len(r) > 0 {
		last := r[len(r)-1]
		ns.LastProbe = &nodestatus.Probe{At: last.GetAt().AsTime(), OK: last.GetOk(), Reason: last.GetReason(), Latency: nodestatus.Duration(last.GetLatency().AsDuration())}
	}
	for _, p := range st.GetPeers() {
		ss := nodestatus.Session{Peer: p.GetAddress(), ASN: p.GetAsn(),
			State: strings.ToLower(strings.TrimPrefix(p.GetState().String(), "SESSION_STATE_")), LastError: p.GetLastError()}
		if p.GetSince() != nil {
			ss.Since = p.GetSince().AsTime()
		}
		ns.Sessions = append(ns.Sessions, ss)
	}
	return ns
}

func printAll(w io.Writer, format string, st clusterStatus, now time.Time) error {
	if format != "json" && format != "yaml" {
		printAllTable(w, st, now)
		return nil
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return printEncoded(w, format, b)
}

func printAllTable(w io.Writer, st clusterStatus, now time.Time) {
	if st.APIError != "" {
		fmt.Fprintf(w, "KUBERNETES API UNREACHABLE: %s\n", st.APIError)
		fmt.Fprintln(w, "no node's status can be read from the Leases (the routing does not depend on the API).")
		switch {
		case st.Local != nil:
			fmt.Fprintln(w, "\nthis node's vipcast, from its API socket:")
			printAllRows(w, []kube.Entry{{Node: st.Local.Node, Status: st.Local}}, now, false)
		case st.LocalError != "":
			fmt.Fprintf(w, "%s\n", st.LocalError)
		}
		return
	}
	fmt.Fprintf(w, "namespace %s, %s\n\n", st.Namespace, st.Source)
	if len(st.Nodes) == 0 {
		fmt.Fprintf(w, "no vipcast status Leases (label %s) in namespace %s: is vipcast running with kubernetes.statusLease on, and is this its namespace (-n)?\n", kube.StatusSelector, st.Namespace)
		return
	}
	if st.NoWritesFor > 0 {
		fmt.Fprintf(w, "NO LEASE WRITTEN FOR %s: no vipcast has renewed its Lease (every %v) for that long. Either every vipcast\n"+
			"stopped, or the API cannot store writes (etcd down or without quorum) and answered from its cache: every row\n"+
			"below is that node's last report from before, not its present state.\n\n", time.Duration(st.NoWritesFor).Round(time.Second), kube.DefaultPublisher("", "", "").Renew)
	}
	printAllRows(w, st.Nodes, now, true)
	stale := 0
	for _, e := range st.Nodes {
		if e.Stale {
			stale++
		}
		if e.Problem != "" {
			fmt.Fprintf(w, "\n%s: Lease %s: %s\n", e.Node, e.Lease, e.Problem)
		}
	}
	if stale > 0 {
		fmt.Fprintf(w, "\nSTALE: %d node(s) did not renew their Lease within its duration: vipcast there stopped, or cannot reach the API;\nthe row is its last report, not its present state.\n", stale)
	}
}

func printAllRows(w io.Writer, entries []kube.Entry, now time.Time, lease bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := "NODE\tADVERTISED\tREASON\tSINCE\tLAST PROBE\tSESSIONS\tDRAINED"
	if lease {
		head += "\tUPDATED"
	}
	fmt.Fprintln(tw, head)
	for _, e := range entries {
		var row []string
		if s := e.Status; s != nil {
			row = []string{e.Node, advertisedCell(s), reasonCell(s), agoShort(now, sinceCell(s)), probeCell(s, now), sessionsCell(s), drainCell(s)}
		} else {
			row = []string{e.Node, "?", "unreadable (below)", "-", "-", "-", "-"}
		}
		if lease {
			upd := agoShort(now, e.Renewed)
			if e.Stale {
				upd = "STALE " + upd
			}
			row = append(row, upd)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
}

// advertisedCell: yes, no, or "1/2" when only some VIPs are.
func advertisedCell(s *nodestatus.Status) string {
	n := 0
	for _, v := range s.VIPs {
		if v.Advertised {
			n++
		}
	}
	switch {
	case n == 0:
		return "no"
	case n == len(s.VIPs) && s.MoreVIPs == 0:
		return "yes"
	}
	return fmt.Sprintf("%d/%d", n, len(s.VIPs)+s.MoreVIPs)
}

// reasonCell: the VIPs' reasons, each once.
func reasonCell(s *nodestatus.Status) string {
	var rs []string
	for _, v := range s.VIPs {
		if !slices.Contains(rs, v.Reason) {
			rs = append(rs, v.Reason)
		}
	}
	if len(rs) == 0 {
		return "-"
	}
	return strings.Join(rs, ",")
}

// sinceCell: the latest change of any VIP.
func sinceCell(s *nodestatus.Status) time.Time {
	var t time.Time
	for _, v := range s.VIPs {
		if v.Since.After(t) {
			t = v.Since
		}
	}
	return t
}

func probeCell(s *nodestatus.Status, now time.Time) string {
	p := s.LastProbe
	if p == nil {
		return "-"
	}
	what := p.Reason
	if p.OK {
		what = "ok " + time.Duration(p.Latency).String()
	}
	return fmt.Sprintf("%s, %s", what, agoShort(now, p.At))
}

// sessionsCell: established/total, and the states of the others.
func sessionsCell(s *nodestatus.Status) string {
	total := len(s.Sessions) + s.MoreSessions
	if total == 0 {
		return "none"
	}
	up := 0
	var other []string
	for _, x := range s.Sessions {
		if x.State == "established" {
			up++
		} else {
			other = append(other, x.Peer+" "+x.State)
		}
	}
	out := fmt.Sprintf("%d/%d established", up, total)
	if len(other) > 0 {
		out += " (" + strings.Join(other, ", ") + ")"
	}
	return out
}

func drainCell(s *nodestatus.Status) string {
	if !s.Drained {
		return "no"
	}
	if s.DrainReason == "" {
		return "yes"
	}
	return "yes: " + s.DrainReason
}

// agoShort: "850ms ago", "12s ago", "3m4s ago"; "-" for no time.
func agoShort(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "now" // clocks apart by less than it takes to notice
	case d < time.Second:
		d = d.Round(10 * time.Millisecond)
	case d < time.Minute:
		d = d.Round(100 * time.Millisecond)
	default:
		d = d.Round(time.Second)
	}
	return d.String() + " ago"
}
