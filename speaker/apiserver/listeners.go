package apiserver

// The listeners: a unix socket, TCP with mutual TLS, and a health-only
// port, each with its own gRPC server.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	apiv1 "github.com/vipcast/vipcast/speaker/api/v1"
)

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
	cert, pool, err := loadMTLS(t.CertFile, t.KeyFile, t.CAFile, "api.tcp.certFile/keyFile", "api.tcp.caFile")
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// loadMTLS reads one side of mutual TLS: its key pair and the CA that
// verifies the other side. Errors name the setting (certField, caField)
// as the user wrote it: a config key for the server, a flag for the client.
func loadMTLS(certFile, keyFile, caFile, certField, caField string) (tls.Certificate, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("%s: %w", certField, err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("%s: %w", caField, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return tls.Certificate{}, nil, fmt.Errorf("%s: %s holds no PEM certificate", caField, caFile)
	}
	return cert, pool, nil
}
