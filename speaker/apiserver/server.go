package apiserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vipcast/vipcast/peers"
	"github.com/vipcast/vipcast/speaker"
	apiv1 "github.com/vipcast/vipcast/speaker/api/v1"
)

// Options are what the server reports besides the speaker's status.
type Options struct {
	// Version of the binary, returned by GetStatus.
	Version string
	// ConfigDigest identifies the effective configuration.
	ConfigDigest string
	// Rise, Fall and TimeoutFall are the health thresholds, for status.
	Rise, Fall, TimeoutFall int
	Log                     *slog.Logger
	// Limits bound connections and streams; zero fields take DefaultLimits.
	Limits Limits
}

// Server owns the listeners and their gRPC servers.
type Server struct {
	cfg      Config
	sp       *speaker.Speaker
	opt      Options
	health   *health.Server
	limits   Limits
	counters *counters

	mu        sync.Mutex
	servers   []*grpc.Server
	addrs     map[string]net.Addr
	socket    string // the socket file to remove on Stop
	wg        sync.WaitGroup
	stopWatch chan struct{}
	stopped   bool
}

// New prepares a server; Start opens the listeners.
func New(cfg Config, sp *speaker.Speaker, opt Options) *Server {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	h := health.NewServer()
	// NOT_SERVING until the speaker's loop runs.
	h.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	h.SetServingStatus(apiv1.VipcastService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	return &Server{cfg: cfg, sp: sp, opt: opt, health: h, limits: opt.Limits.withDefaults(), counters: newCounters(),
		addrs: map[string]net.Addr{}, stopWatch: make(chan struct{})}
}

// Addr returns the bound address of a listener ("socket", "tcp", "health"),
// or nil if it is not open. Useful with port 0.
func (s *Server) Addr(name string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[name]
}

// Start opens every configured listener and serves in owned goroutines. On
// error nothing is left open.
func (s *Server) Start() (err error) {
	defer func() {
		if err != nil {
			s.Stop(context.Background())
		}
	}()
	if s.cfg.Socket != "" {
		ln, err := listenUnix(s.cfg.Socket)
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.socket = s.cfg.Socket
		s.mu.Unlock()
		s.serve("socket", ln, s.apiServer(s.cfg.SocketReadOnly, "api.socketReadOnly"))
	}
	if t := s.cfg.TCP; t.Listen != "" {
		tc, err := serverTLS(t)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", t.Listen)
		if err != nil {
			return fmt.Errorf("api.tcp.listen: %w", err)
		}
		s.serve("tcp", ln, s.apiServer(t.ReadOnly, "api.tcp.readOnly", grpc.Creds(credentials.NewTLS(tc))))
	}
	if s.cfg.HealthListen != "" {
		ln, err := net.Listen("tcp", s.cfg.HealthListen)
		if err != nil {
			return fmt.Errorf("api.healthListen: %w", err)
		}
		// grpc.health.v1 only: the kubelet's probe needs nothing else, and
		// this listener is reachable from the network without credentials.
		g := grpc.NewServer(s.limits.serverOptions()...)
		healthpb.RegisterHealthServer(g, healthService{s.health, s})
		s.serve("health", ln, g)
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.followSpeaker() }()
	return nil
}

// followSpeaker drives the health service: SERVING once the loop runs,
// NOT_SERVING from the start of the shutdown.
func (s *Server) followSpeaker() {
	select {
	case <-s.sp.Started():
		s.setHealth(healthpb.HealthCheckResponse_SERVING)
	case <-s.sp.Stopping():
	case <-s.stopWatch:
		return
	}
	select {
	case <-s.sp.Stopping():
		s.setHealth(healthpb.HealthCheckResponse_NOT_SERVING)
	case <-s.stopWatch:
	}
}

func (s *Server) setHealth(st healthpb.HealthCheckResponse_ServingStatus) {
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(apiv1.VipcastService_ServiceDesc.ServiceName, st)
}

func (s *Server) apiServer(readOnly bool, readOnlyKey string, opts ...grpc.ServerOption) *grpc.Server {
	g := grpc.NewServer(append(s.limits.serverOptions(), opts...)...)
	apiv1.RegisterVipcastServiceServer(g, &service{s: s, readOnly: readOnly, readOnlyKey: readOnlyKey})
	healthpb.RegisterHealthServer(g, healthService{s.health, s})
	reflection.Register(g)
	return g
}

func (s *Server) serve(name string, ln net.Listener, g *grpc.Server) {
	ln = newLimitListener(ln, name, s.limits, s.counters, s.opt.Log)
	s.counters.mu.Lock()
	s.counters.conns[name] = 0
	s.counters.mu.Unlock()
	s.mu.Lock()
	s.servers = append(s.servers, g)
	s.addrs[name] = ln.Addr()
	s.mu.Unlock()
	s.opt.Log.Info("API listening", "listener", name, "addr", ln.Addr().String())
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := g.Serve(ln); err != nil {
			s.opt.Log.Error("API listener failed", "listener", name, "err", err)
		}
	}()
}

// Stop reports NOT_SERVING, ends the streams and closes the listeners,
// waiting for calls in flight until ctx ends. Safe to call more than once.
func (s *Server) Stop(ctx context.Context) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	servers, socket := s.servers, s.socket
	s.mu.Unlock()
	close(s.stopWatch)
	s.health.Shutdown()
	var wg sync.WaitGroup
	for _, g := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := make(chan struct{})
			go func() { g.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				g.Stop()
				<-done
			}
		}()
	}
	wg.Wait()
	s.wg.Wait()
	if socket != "" {
		os.Remove(socket)
	}
}

// listenUnix binds path with mode 0600 from the first moment: the socket
// is bound in a private (0700) directory, chmodded, then renamed into
// place. A stale socket is removed only if nothing answers on it.
func listenUnix(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("api.socket: %w", err)
		}
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("api.socket: %s exists and is not a socket; remove it or choose another path", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("api.socket: another process (another vipcast?) is listening at %s; stop it or choose another path", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("api.socket: removing stale socket: %w", err)
		}
	}
	tmp, err := os.MkdirTemp(dir, ".vipcast-sock-")
	if err != nil {
		return nil, fmt.Errorf("api.socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	tmpSock := filepath.Join(tmp, "s")
	ln, err := net.Listen("unix", tmpSock)
	if err != nil {
		return nil, fmt.Errorf("api.socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // Stop removes path
	if err := os.Chmod(tmpSock, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api.socket: %w", err)
	}
	if err := os.Rename(tmpSock, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api.socket: %w", err)
	}
	return &namedUnixListener{Listener: ln, addr: &net.UnixAddr{Name: path, Net: "unix"}}, nil
}

// namedUnixListener reports the socket's final path.
type namedUnixListener struct {
	net.Listener
	addr net.Addr
}

func (l *namedUnixListener) Addr() net.Addr { return l.addr }

func serverTLS(t TCPConfig) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("api.tcp.certFile/keyFile: %w", err)
	}
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, fmt.Errorf("api.tcp.caFile: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("api.tcp.caFile: %s holds no PEM certificate", t.CAFile)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// service implements the API for one listener.
type service struct {
	apiv1.UnimplementedVipcastServiceServer
	s           *Server
	readOnly    bool
	readOnlyKey string
}

func (v *service) GetStatus(context.Context, *apiv1.GetStatusRequest) (*apiv1.GetStatusResponse, error) {
	return v.s.snapshot(time.Now()), nil
}

func (v *service) WatchStatus(_ *apiv1.WatchStatusRequest, stream grpc.ServerStreamingServer[apiv1.WatchStatusResponse]) error {
	if err := acquireWatch(&v.s.counters.watches, v.s.limits.MaxWatches, "WatchStatus"); err != nil {
		v.s.rejectWatch(stream.Context(), "watch")
		return err
	}
	defer v.s.counters.watches.Add(-1)
	sub := v.s.sp.Subscribe(stream.Context())
	// Headers now tell the client it is subscribed: every later transition
	// reaches it (stream.Header() returns once this arrives).
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	var seen uint64
	for tr := range sub.C {
		d := sub.Dropped()
		if err := stream.Send(&apiv1.WatchStatusResponse{Transition: transitionPB(tr), Dropped: d - seen}); err != nil {
			return err
		}
		seen = d
	}
	if err := stream.Context().Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Unavailable, "vipcast stopped")
}

func (v *service) Drain(ctx context.Context, req *apiv1.DrainRequest) (*apiv1.DrainResponse, error) {
	p, w, err := v.setDrained(ctx, true, req.GetReason())
	if err != nil {
		return nil, err
	}
	return &apiv1.DrainResponse{Persisted: p, Warning: w}, nil
}

func (v *service) Undrain(ctx context.Context, req *apiv1.UndrainRequest) (*apiv1.UndrainResponse, error) {
	p, w, err := v.setDrained(ctx, false, req.GetReason())
	if err != nil {
		return nil, err
	}
	return &apiv1.UndrainResponse{Persisted: p, Warning: w}, nil
}

// StateFileDisabled is the warning of a Drain or Undrain answered with
// persisted false because api.stateFile is "" on purpose, as opposed to a
// state file that could not be written. Clients match it exactly.
const StateFileDisabled = "api.stateFile is empty: this will not survive a restart of vipcast"

func (v *service) setDrained(ctx context.Context, drained bool, reason string) (persisted bool, warning string, err error) {
	verb := "undrain"
	if drained {
		verb = "drain"
	}
	if v.readOnly {
		return false, "", status.Errorf(codes.PermissionDenied, "this listener is read-only (%s: true): %s refused; use a listener without readOnly (e.g. the unix socket)", v.readOnlyKey, verb)
	}
	if err := speaker.CheckDrainReason(reason); err != nil {
		return false, "", status.Errorf(codes.InvalidArgument, "%s refused: %v", verb, err)
	}
	v.s.opt.Log.Info("operator request", "action", verb, "reason", reason, "client", clientName(ctx))
	err = v.s.sp.SetDrainedReason(ctx, drained, reason)
	var pe *speaker.PersistError
	switch {
	case errors.As(err, &pe):
		return false, pe.Error(), nil
	case err != nil:
		if ctx.Err() != nil {
			return false, "", status.FromContextError(ctx.Err()).Err()
		}
		return false, "", status.Errorf(codes.Unavailable, "%s: %v", verb, err)
	}
	if v.s.cfg.StateFile == "" {
		return false, StateFileDisabled, nil
	}
	return true, "", nil
}

// clientName names the caller for the log: its certificate's subject on
// TCP, "unix socket" otherwise.
func clientName(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "unknown"
	}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
		return ti.State.PeerCertificates[0].Subject.String()
	}
	return p.Addr.Network() + " " + p.Addr.String()
}

func (s *Server) snapshot(now time.Time) *apiv1.GetStatusResponse {
	st := s.sp.Status()
	out := &apiv1.GetStatusResponse{
		Version:        s.opt.Version,
		ConfigDigest:   s.opt.ConfigDigest,
		Drained:        st.Drained,
		DrainReason:    st.DrainReason,
		DampingPenalty: st.Penalty,
		Health: &apiv1.HealthStatus{
			OkRun: int32(st.OKRun), FailRun: int32(st.FailRun),
			Rise: int32(s.opt.Rise), Fall: int32(s.opt.Fall), TimeoutFall: int32(s.opt.TimeoutFall),
		},
	}
	for _, d := range st.Decisions {
		out.Vips = append(out.Vips, &apiv1.VipStatus{
			Prefix: d.VIP.String(), Announce: d.Announce, Advertised: d.Advertised,
			Reason: string(d.Reason), Since: ts(d.Since),
		})
	}
	for _, r := range st.RecentProbes {
		out.Health.Recent = append(out.Health.Recent, &apiv1.ProbeResult{
			At: ts(r.At), Latency: durationpb.New(r.Latency), Ok: r.OK, HttpCode: int32(r.Code), Reason: r.Reason, TimedOut: r.TimedOut,
		})
	}
	for _, p := range st.Peers {
		ps := &apiv1.PeerStatus{
			Address: p.Address.String(), Asn: p.ASN, State: SessionStatePB(p.State),
			Since: ts(p.Since), PrefixesSent: uint32(max(p.PrefixesSent, 0)), LastError: p.LastError,
		}
		if p.State == peers.StateEstablished && !p.Since.IsZero() {
			ps.Uptime = durationpb.New(now.Sub(p.Since).Truncate(time.Second))
		}
		ps.Bfd = bfdPB(p.BFD)
		out.Peers = append(out.Peers, ps)
	}
	for _, t := range st.Transitions {
		out.Transitions = append(out.Transitions, transitionPB(t))
	}
	return out
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// bfdPB converts a peer's BFD session; nil (BFD off) stays unset. States
// are lower case (admindown, down, init, up), as the API documents.
func bfdPB(b *peers.BFDStatus) *apiv1.BFDStatus {
	if b == nil {
		return nil
	}
	return &apiv1.BFDStatus{
		State: strings.ToLower(b.State), RemoteState: strings.ToLower(b.RemoteState), Diag: b.Diag, Since: ts(b.Since),
		TxInterval: durationpb.New(b.TxInterval), DetectTime: durationpb.New(b.DetectTime),
		RxPackets: b.RxPackets, TxPackets: b.TxPackets, Flaps: b.Flaps,
	}
}

func transitionPB(t speaker.Transition) *apiv1.Transition {
	return &apiv1.Transition{At: ts(t.At), Announce: t.Announce, FromReason: string(t.From), ToReason: string(t.To), Detail: t.Detail}
}

// SessionStatePB maps a session state to the API's enum.
func SessionStatePB(s peers.SessionState) apiv1.SessionState {
	switch s {
	case peers.StateIdle:
		return apiv1.SessionState_SESSION_STATE_IDLE
	case peers.StateConnect:
		return apiv1.SessionState_SESSION_STATE_CONNECT
	case peers.StateActive:
		return apiv1.SessionState_SESSION_STATE_ACTIVE
	case peers.StateOpenSent:
		return apiv1.SessionState_SESSION_STATE_OPENSENT
	case peers.StateOpenConfirm:
		return apiv1.SessionState_SESSION_STATE_OPENCONFIRM
	case peers.StateEstablished:
		return apiv1.SessionState_SESSION_STATE_ESTABLISHED
	}
	return apiv1.SessionState_SESSION_STATE_UNSPECIFIED
}
