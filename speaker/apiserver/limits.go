package apiserver

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// Limits bound what clients can make vipcast hold. Without them 20,000
// WatchStatus streams took one vipcast to 20,626 goroutines and 264 MiB,
// twice the chart's memory limit. With the defaults the worst case is a few
// MiB (docs/hardening.md, "The API").
type Limits struct {
	// MaxConns is the concurrent connections per listener from other
	// hosts (all connections on the unix socket). Above it a new connection
	// is closed at once, so it fails fast instead of waiting.
	MaxConns int
	// MaxConnsPerHost is the concurrent connections per client IP on a TCP
	// listener. The node itself (a connection whose source is its
	// destination address, as the kubelet's probe of a hostNetwork pod) has
	// this quota outside MaxConns: remote hosts cannot starve the probe.
	MaxConnsPerHost int
	// MaxStreams is the concurrent calls per connection (HTTP/2
	// SETTINGS_MAX_CONCURRENT_STREAMS).
	MaxStreams uint32
	// MaxWatches is the open WatchStatus streams of the whole server, and
	// separately the open grpc.health.v1 Watch streams. A call above it
	// fails with ResourceExhausted.
	MaxWatches int
}

// DefaultLimits are generous for operators (a handful of `vipcast status
// --watch`, one kubelet) and small enough to stay far below 128 MiB.
func DefaultLimits() Limits {
	return Limits{MaxConns: 64, MaxConnsPerHost: 16, MaxStreams: 16, MaxWatches: 32}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxConns <= 0 {
		l.MaxConns = d.MaxConns
	}
	if l.MaxConnsPerHost <= 0 {
		l.MaxConnsPerHost = d.MaxConnsPerHost
	}
	if l.MaxStreams == 0 {
		l.MaxStreams = d.MaxStreams
	}
	if l.MaxWatches <= 0 {
		l.MaxWatches = d.MaxWatches
	}
	return l
}

// serverOptions are the transport limits every listener gets. Keepalive
// pings find clients that vanished without closing (a host that rebooted)
// so their connections and streams are released; the enforcement policy
// closes clients that ping faster than every 10 s; ConnectionTimeout closes
// a connection that does not finish its handshake (TLS and HTTP/2 preface).
func (l Limits) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(l.MaxStreams),
		grpc.ConnectionTimeout(10 * time.Second),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: 5 * time.Minute,
			Time:              time.Minute,
			Timeout:           20 * time.Second,
		}),
	}
}

// counters are the limits' live state, exported as metrics.
type counters struct {
	watches       atomic.Int64 // open WatchStatus streams
	healthWatches atomic.Int64 // open grpc.health.v1 Watch streams

	mu       sync.Mutex
	conns    map[string]int    // open connections by listener
	rejected map[[2]string]int // by listener and what was refused (connection, watch)
	lastWarn map[string]time.Time
}

func newCounters() *counters {
	return &counters{conns: map[string]int{}, rejected: map[[2]string]int{}, lastWarn: map[string]time.Time{}}
}

// reject counts a refusal and says whether to log it: at most once a
// minute per listener and kind, because a flood would otherwise flood the
// log too.
func (c *counters) reject(listener, what string) (log bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rejected[[2]string{listener, what}]++
	k := listener + "/" + what
	if now := time.Now(); now.Sub(c.lastWarn[k]) >= time.Minute {
		c.lastWarn[k] = now
		return true
	}
	return false
}

// acquireWatch takes one of max slots of n, or returns the
// ResourceExhausted error the client sees.
func acquireWatch(n *atomic.Int64, max int, what string) error {
	if n.Add(1) > int64(max) {
		n.Add(-1)
		return status.Errorf(codes.ResourceExhausted, "%d %s streams are open, vipcast's limit: close unused watchers (vipcast status --watch) and retry", max, what)
	}
	return nil
}

// limitListener closes connections above the per-listener and per-host
// limits right after accepting them, so the kernel's backlog never fills
// and a refused client fails at once rather than hanging.
type limitListener struct {
	net.Listener
	name    string
	max     int
	perHost int
	c       *counters
	log     *slog.Logger

	mu     sync.Mutex
	open   int
	byHost map[string]int
}

func newLimitListener(ln net.Listener, name string, l Limits, c *counters, log *slog.Logger) *limitListener {
	return &limitListener{Listener: ln, name: name, max: l.MaxConns, perHost: l.MaxConnsPerHost, c: c, log: log, byHost: map[string]int{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host, local := remoteHost(conn)
		if why := l.take(host, local); why != "" {
			conn.Close()
			if l.c.reject(l.name, "connection") {
				l.log.Warn("API connection refused: too many connections (logged once a minute)", "listener", l.name, "client", host, "limit", why)
			}
			continue
		}
		return &limitConn{Conn: conn, release: func() { l.release(host, local) }}, nil
	}
}

// take reserves a slot for a connection from host, or names the limit hit.
func (l *limitListener) take(host string, local bool) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !local && l.open >= l.max {
		return fmt.Sprintf("%d connections on the listener", l.max)
	}
	if host != "" && l.byHost[host] >= l.perHost {
		return fmt.Sprintf("%d connections from one host", l.perHost)
	}
	if !local {
		l.open++
	}
	if host != "" {
		l.byHost[host]++
	}
	l.count(1)
	return ""
}

func (l *limitListener) release(host string, local bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !local {
		l.open--
	}
	if host != "" {
		if l.byHost[host]--; l.byHost[host] <= 0 {
			delete(l.byHost, host)
		}
	}
	l.count(-1)
}

func (l *limitListener) count(d int) {
	l.c.mu.Lock()
	l.c.conns[l.name] += d
	l.c.mu.Unlock()
}

// remoteHost is the client's IP on TCP, and whether it is the node itself
// (the source is the destination address); "" on a unix socket, where the
// owner is local but only root can connect, so the listener's limit
// applies.
func remoteHost(c net.Conn) (host string, local bool) {
	r, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return "", false
	}
	l, ok := c.LocalAddr().(*net.TCPAddr)
	return r.IP.String(), ok && l.IP.Equal(r.IP)
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// healthService is grpc.health.v1 with its Watch streams counted: Check is
// what the kubelet calls; Watch holds a stream open and is capped.
type healthService struct {
	*health.Server
	s *Server
}

func (h healthService) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	if err := acquireWatch(&h.s.counters.healthWatches, h.s.limits.MaxWatches, "health Watch"); err != nil {
		h.s.rejectWatch(stream.Context(), "health-watch")
		return err
	}
	defer h.s.counters.healthWatches.Add(-1)
	return h.Server.Watch(req, stream)
}

func (s *Server) rejectWatch(ctx context.Context, what string) {
	if s.counters.reject("*", what) {
		s.opt.Log.Warn("API watch refused: too many open watch streams (logged once a minute)", "kind", what, "limit", s.limits.MaxWatches, "client", clientName(ctx))
	}
}

// Collector exports the limits' state: open connections and watch streams,
// and what was refused.
func (s *Server) Collector() prometheus.Collector { return (*collector)(s) }

var (
	descConns = prometheus.NewDesc("vipcast_api_connections",
		"Open connections to vipcast's API, by listener (socket, tcp, health).", []string{"listener"}, nil)
	descWatches = prometheus.NewDesc("vipcast_api_watch_streams",
		"Open watch streams, by kind (status: WatchStatus, health: grpc.health.v1 Watch).", []string{"kind"}, nil)
	descRejected = prometheus.NewDesc("vipcast_api_rejected_total",
		"Connections and watch streams refused because a limit was reached, by listener (* for the server-wide watch limits) and kind.",
		[]string{"listener", "kind"}, nil)
)

type collector Server

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descConns
	ch <- descWatches
	ch <- descRejected
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	k := c.counters
	ch <- prometheus.MustNewConstMetric(descWatches, prometheus.GaugeValue, float64(k.watches.Load()), "status")
	ch <- prometheus.MustNewConstMetric(descWatches, prometheus.GaugeValue, float64(k.healthWatches.Load()), "health")
	k.mu.Lock()
	defer k.mu.Unlock()
	for name, n := range k.conns {
		ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(n), name)
	}
	for key, n := range k.rejected {
		ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(n), key[0], key[1])
	}
}
