// Package metrics exposes the speaker's behaviour to Prometheus on its own
// HTTP listener. Metrics implements speaker.Observer: the reconcile loop
// updates it directly, and every update is a few atomic operations.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vipcast/vipcast/peers"
	"github.com/vipcast/vipcast/speaker"
)

// Config is the metrics section of the configuration file.
type Config struct {
	// Listen is host:port for /metrics; "" disables the listener.
	Listen string `mapstructure:"listen"`
}

// Default listens on loopback only.
func Default() Config { return Config{Listen: "127.0.0.1:9180"} }

// Validate names the field, the value and the fix.
func (c Config) Validate() error {
	if c.Listen == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("metrics.listen: %q is not host:port; use e.g. 127.0.0.1:9180, or \"\" to disable", c.Listen)
	}
	return nil
}

// states are the session states exported by vipcast_bgp_peer_state.
var states = []peers.SessionState{
	peers.StateIdle, peers.StateConnect, peers.StateActive, peers.StateOpenSent,
	peers.StateOpenConfirm, peers.StateEstablished, peers.StateUnknown,
}

// Metrics holds the collectors in their own registry.
type Metrics struct {
	reg            *prometheus.Registry
	vipAdvertised  *prometheus.GaugeVec
	vipAnnounced   *prometheus.GaugeVec
	vipLastResort  *prometheus.GaugeVec
	checks         *prometheus.CounterVec
	checkDuration  prometheus.Histogram
	peerState      *prometheus.GaugeVec
	transitions    *prometheus.CounterVec
	lastTransition prometheus.Gauge
	loRemovals     *prometheus.CounterVec
	drained        atomic.Pointer[func() bool] // set by ObserveDrained
	bfd            *bfdCollector               // BFD sessions from the latest OnPeers
	prefixLimit    *prefixLimitCollector

	mu        sync.Mutex
	seenPeers map[string]bool
}

var _ speaker.Observer = (*Metrics)(nil)

// New registers the metrics; vips start at 0 (not advertised).
func New(version string, vips []netip.Prefix) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		vipAdvertised: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vipcast_vip_advertised",
			Help: "1 if the VIP is announced and at least one BGP session is established to carry it, else 0.",
		}, []string{"vip"}),
		vipAnnounced: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vipcast_vip_announced",
			Help: "1 if the VIP is in the local RIB and on the loopback, else 0.",
		}, []string{"vip"}),
		vipLastResort: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vipcast_vip_last_resort",
			Help: "1 while the VIP is announced as a last resort (the local apiserver fails its probes but answers; policy.lastResort), with attributes that lose to every healthy path, else 0.",
		}, []string{"vip"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipcast_health_checks_total",
			Help: "Health checks of the local apiserver, by result (ok, fail) and class of reason.",
		}, []string{"result", "reason_class"}),
		checkDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "vipcast_health_check_duration_seconds",
			Help:    "Latency of the health checks of the local apiserver.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .08, .1, .25, .5, 1},
		}),
		peerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vipcast_bgp_peer_state",
			Help: "1 for the BGP session's current state, 0 for the others.",
		}, []string{"peer", "state"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipcast_transitions_total",
			Help: "Changes of decision, by the reason entered.",
		}, []string{"reason"}),
		lastTransition: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vipcast_last_transition_timestamp_seconds",
			Help: "Unix time of the last change of decision.",
		}),
		loRemovals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipcast_vip_loopback_removals_total",
			Help: "VIPs found removed from the loopback behind vipcast's back, by result: restored (put back at once, the route stayed) or failed (could not be put back: withdrawn).",
		}, []string{"vip", "result"}),
		bfd:         newBFDCollector(),
		prefixLimit: newPrefixLimitCollector(),
		seenPeers:   map[string]bool{},
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "vipcast_build_info",
		Help:        "Always 1; the version label is the running vipcast's.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	build.Set(1)
	// Read at scrape time: a drain is a flag, not a decision, and a drained
	// node may show another reason (graceful-shutdown during the wait, or
	// unhealthy) while it stays drained.
	drained := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "vipcast_drained",
		Help: "1 while an operator has drained the node (vipcast drain), whatever the current reason.",
	}, func() float64 {
		if f := m.drained.Load(); f != nil {
			return b2f((*f)())
		}
		return 0
	})
	m.reg.MustRegister(m.vipAdvertised, m.vipAnnounced, m.vipLastResort, m.checks, m.checkDuration, m.peerState,
		m.transitions, m.lastTransition, m.loRemovals, drained, m.bfd, m.prefixLimit, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, v := range vips {
		m.vipAdvertised.WithLabelValues(v.String()).Set(0)
		m.vipAnnounced.WithLabelValues(v.String()).Set(0)
		m.vipLastResort.WithLabelValues(v.String()).Set(0)
		m.loRemovals.WithLabelValues(v.String(), "restored")
		m.loRemovals.WithLabelValues(v.String(), "failed")
	}
	return m
}

// Registry is where the metrics live, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// OnProbe implements speaker.Observer.
func (m *Metrics) OnProbe(r speaker.ProbeResult) {
	if m == nil {
		return
	}
	result := "fail"
	if r.OK {
		result = "ok"
	}
	m.checks.WithLabelValues(result, ReasonClass(r)).Inc()
	m.checkDuration.Observe(r.Latency.Seconds())
}

// ObserveDrained makes vipcast_drained report drained() at each scrape.
func (m *Metrics) ObserveDrained(drained func() bool) {
	if m != nil {
		m.drained.Store(&drained)
	}
}

// OnTransition implements speaker.Observer.
func (m *Metrics) OnTransition(t speaker.Transition, ds []speaker.Decision) {
	if m == nil {
		return
	}
	for _, v := range t.Loopback {
		result := "restored"
		if t.To == speaker.ReasonLoopbackFailed {
			result = "failed"
		}
		m.loRemovals.WithLabelValues(v.String(), result).Inc()
	}
	// A VIP put back on lo is reported, but is no change of decision.
	if t.From != t.To {
		m.transitions.WithLabelValues(string(t.To)).Inc()
		m.lastTransition.Set(float64(t.At.UnixNano()) / 1e9)
	}
	for _, d := range ds {
		m.vipAdvertised.WithLabelValues(d.VIP.String()).Set(b2f(d.Advertised))
		m.vipAnnounced.WithLabelValues(d.VIP.String()).Set(b2f(d.Announce))
		m.vipLastResort.WithLabelValues(d.VIP.String()).Set(b2f(d.LastResort))
	}
}

// OnPeers implements speaker.Observer.
func (m *Metrics) OnPeers(ps []peers.PeerStatus) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := map[string]bool{}
	for _, p := range ps {
		addr := p.Address.String()
		now[addr] = true
		for _, s := range states {
			m.peerState.WithLabelValues(addr, string(s)).Set(b2f(p.State == s))
		}
	}
	for addr := range m.seenPeers {
		if !now[addr] {
			m.peerState.DeletePartialMatch(prometheus.Labels{"peer": addr})
		}
	}
	m.seenPeers = now
	m.bfd.set(ps)
	m.prefixLimit.set(ps)
}

// ReasonClass buckets a probe's reason into a few stable label values:
// ok, timeout, refused, reset, closed, tls, http_4xx, http_5xx, http_other,
// canceled, other.
func ReasonClass(r speaker.ProbeResult) string {
	reason := r.Reason
	switch {
	case r.OK:
		return "ok"
	case r.Code >= 500 && r.Code < 600:
		return "http_5xx"
	case r.Code >= 400 && r.Code < 500:
		return "http_4xx"
	case r.Code != 0:
		return "http_other"
	case strings.HasPrefix(reason, "timeout"):
		return "timeout"
	case strings.Contains(reason, "connection refused"):
		return "refused"
	case strings.Contains(reason, "connection reset"):
		return "reset"
	case strings.Contains(reason, "connection closed"):
		return "closed"
	case strings.HasPrefix(reason, "tls:"):
		return "tls"
	case reason == "canceled":
		return "canceled"
	}
	return "other"
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Server is the metrics HTTP listener.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// Start listens on addr and serves /metrics in an owned goroutine.
func (m *Metrics) Start(addr string, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	s := &Server{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		ln:   ln,
		done: make(chan struct{}),
	}
	log.Info("metrics listening", "addr", ln.Addr().String())
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener failed", "err", err)
		}
	}()
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Stop closes the listener, waiting for scrapes in flight until ctx ends.
func (s *Server) Stop(ctx context.Context) {
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	<-s.done
}
