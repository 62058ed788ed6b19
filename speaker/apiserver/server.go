package apiserver

import (
	"context"
	"log/slog"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vipcast/vipcast/speaker"
	apiv1 "github.com/vipcast/vipcast/speaker/api/v1"
)

// Options are what the server reports besides the speaker's status.
type Options struct {
	// Version of the binary, returned by GetStatus.
	Version string
	// ConfigDigest identifies the effective configuration.
	ConfigDigest string
	Log          *slog.Logger
	// Limits bound connections and streams; zero fields take DefaultLimits.
	Limits Limits
}

// Speaker is what the API needs of the reconcile loop. *speaker.Speaker
// is the one implementation; the interface keeps the API's view of it
// small and lets a test stand in for it.
type Speaker interface {
	// Status is a copy of the speaker's state, thresholds included.
	Status() speaker.Status
	// SetDrainedReason drains or undrains; a *speaker.PersistError means
	// done but not saved.
	SetDrainedReason(ctx context.Context, drained bool, reason string) error
	// Subscribe streams transitions until ctx ends or the speaker stops.
	Subscribe(ctx context.Context) *speaker.Subscription
	// Started closes once the loop runs; Stopping once it shuts down.
	Started() <-chan struct{}
	Stopping() <-chan struct{}
}

var _ Speaker = (*speaker.Speaker)(nil)

// Server owns the listeners and their gRPC servers.
type Server struct {
	cfg      Config
	sp       Speaker
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
func New(cfg Config, sp Speaker, opt Options) *Server {
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
