package speaker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vipcast/vipcast/peers/testutil"
)

// probeCA issues the certificates of the tests' servers and clients.
type probeCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the CA certificate as PEM, for HealthConfig.CAFile
	pool *x509.CertPool
}

func newProbeCA(t *testing.T) *probeCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &probeCA{cert: cert, key: key, file: filepath.Join(t.TempDir(), "ca.crt"), pool: x509.NewCertPool()}
	ca.pool.AddCert(cert)
	writeProbeFile(t, ca.file, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	return ca
}

func (ca *probeCA) issue(t *testing.T, cn string, dns []string, ips []net.IP, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     dns,
		IPAddresses:  ips,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func writeProbeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeKeyPair stores cert as the PEM files HealthConfig.CertFile and KeyFile name.
func writeKeyPair(t *testing.T, cert tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	writeProbeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})))
	writeProbeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	return certFile, keyFile
}

// connCounter counts a server's connections as the server sees them.
type connCounter struct {
	mu             sync.Mutex
	opened, closed int
}

func (c *connCounter) track(_ net.Conn, s http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch s {
	case http.StateNew:
		c.opened++
	case http.StateClosed, http.StateHijacked:
		c.closed++
	}
}

func (c *connCounter) counts() (opened, closed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opened, c.closed
}

// startProbeServer serves h over TLS with cert; clientCAs, if set, demand a
// client certificate.
func startProbeServer(t *testing.T, h http.HandlerFunc, cert tls.Certificate, clientCAs *x509.CertPool) (*httptest.Server, *connCounter) {
	t.Helper()
	conns := &connCounter{}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	if clientCAs != nil {
		srv.TLS.ClientCAs, srv.TLS.ClientAuth = clientCAs, tls.RequireAndVerifyClientCert
	}
	srv.Config.ConnState = conns.track
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // rejected handshakes are the point of some tests
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, conns
}

func newTestProber(t *testing.T, cfg HealthConfig) *HTTPProber {
	t.Helper()
	p, err := NewHTTPProber(cfg)
	if err != nil {
		t.Fatalf("NewHTTPProber: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// Handlers of the tests' apiservers. Hanging ones also end with the test so
// a failing test cannot block the server's Close. When the prober hangs up
// they return, which sends an implicit 200 that can still reach the prober
// (the transport races its own cancellation); it must not count.
var (
	okHandler = func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }
	hangFor   = func(t *testing.T) http.HandlerFunc {
		return func(_ http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-t.Context().Done():
			}
		}
	}
	slowBodyFor = func(t *testing.T) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "o")
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-t.Context().Done():
			}
		}
	}
	statusHandler = func(code int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(code)
			io.WriteString(w, body)
		}
	}
)

// probeOutcome is a ProbeResult without its timing.
type probeOutcome struct {
	OK       bool
	Code     int
	Reason   string
	TimedOut bool
	Refused  bool
}

func outcome(r ProbeResult) probeOutcome {
	return probeOutcome{r.OK, r.Code, r.Reason, r.TimedOut, r.Refused}
}

func TestHTTPProberProbe(t *testing.T) {
	ca, other := newProbeCA(t), newProbeCA(t)
	lo := []net.IP{net.IPv4(127, 0, 0, 1)}
	serving := ca.issue(t, "kube-apiserver", []string{"kubernetes"}, lo, x509.ExtKeyUsageServerAuth)
	noIPSAN := ca.issue(t, "kube-apiserver", []string{"kubernetes"}, nil, x509.ExtKeyUsageServerAuth)
	foreign := other.issue(t, "kube-apiserver", []string{"kubernetes"}, lo, x509.ExtKeyUsageServerAuth)

	const short = 50 * time.Millisecond
	readyzFailed := "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n[+]informer-sync ok\nreadyz check failed\n"
	long := strings.Repeat("x", 200)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		cert    tls.Certificate
		refused bool // probe a closed port instead of the server
		cfg     func(*HealthConfig)
		want    probeOutcome
	}{
		{name: "200", handler: okHandler, cert: serving,
			want: probeOutcome{OK: true, Code: 200, Reason: "ok"}},
		{name: "500 names the failed readyz check", handler: statusHandler(500, readyzFailed), cert: serving,
			want: probeOutcome{Code: 500, Reason: "HTTP 500: [-]etcd failed: reason withheld"}},
		{name: "503 with one line", handler: statusHandler(503, "  not ready  \r\n"), cert: serving,
			want: probeOutcome{Code: 503, Reason: "HTTP 503: not ready"}},
		{name: "long body line is cut", handler: statusHandler(500, long), cert: serving,
			want: probeOutcome{Code: 500, Reason: "HTTP 500: " + long[:120] + "..."}},
		{name: "404 without body", handler: statusHandler(404, ""), cert: serving,
			want: probeOutcome{Code: 404, Reason: "HTTP 404"}},
		{name: "redirect is not followed", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://elsewhere.example/", http.StatusFound)
		}, cert: serving,
			want: probeOutcome{Code: 302, Reason: `HTTP 302: <a href="https://elsewhere.example/">Found</a>.`}},
		{name: "hang", handler: hangFor(t), cert: serving, cfg: func(c *HealthConfig) { c.Timeout = short },
			want: probeOutcome{Reason: "timeout after 50ms", TimedOut: true}},
		// The headers must arrive before the timeout for this case to test
		// the body's deadline; a starved CI core can take longer than 50ms.
		{name: "slow body", handler: slowBodyFor(t), cert: serving, cfg: func(c *HealthConfig) { c.Timeout = time.Second },
			want: probeOutcome{Code: 200, Reason: "timeout after 1s", TimedOut: true}},
		{name: "refused", refused: true,
			want: probeOutcome{Reason: "connection refused", Refused: true}},
		{name: "unknown authority", handler: okHandler, cert: foreign,
			want: probeOutcome{Reason: "tls: certificate signed by unknown authority"}},
		{name: "wrong server name", handler: okHandler, cert: serving, cfg: func(c *HealthConfig) { c.ServerName = "apiserver.example" },
			want: probeOutcome{Reason: "tls: certificate is valid for kubernetes, not apiserver.example"}},
		{name: "no IP SAN and no server name", handler: okHandler, cert: noIPSAN, cfg: func(c *HealthConfig) { c.ServerName = "" },
			want: probeOutcome{Reason: "tls: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs"}},
		{name: "no IP SAN verified as kubernetes", handler: okHandler, cert: noIPSAN,
			want: probeOutcome{OK: true, Code: 200, Reason: "ok"}},
		{name: "insecure skip verify", handler: okHandler, cert: foreign, cfg: func(c *HealthConfig) { c.CAFile, c.InsecureSkipVerify = "", true },
			want: probeOutcome{OK: true, Code: 200, Reason: "ok"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var addr string
			if tt.refused {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				addr = l.Addr().String()
				l.Close()
			} else {
				srv, _ := startProbeServer(t, tt.handler, tt.cert, nil)
				addr = srv.Listener.Addr().String()
			}
			cfg := HealthConfig{URL: "https://" + addr + "/readyz", CAFile: ca.file, ServerName: "kubernetes", Timeout: okTimeout}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			p := newTestProber(t, cfg)

			before := time.Now()
			got := p.Probe(t.Context())
			if diff := cmp.Diff(tt.want, outcome(got)); diff != "" {
				t.Errorf("Probe() mismatch (-want +got):\n%s", diff)
			}
			if got.At.Before(before) || got.At.After(time.Now()) {
				t.Errorf("At = %v, not within the call starting %v", got.At, before)
			}
			if strings.HasPrefix(tt.want.Reason, "timeout") && (got.Latency < cfg.Timeout || got.Latency > cfg.Timeout+time.Second) {
				t.Errorf("Latency = %v, want about the timeout %v", got.Latency, cfg.Timeout)
			}
		})
	}
}

func TestHTTPProberToken(t *testing.T) {
	ca := newProbeCA(t)
	var (
		mu   sync.Mutex
		auth string
	)
	srv, _ := startProbeServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = r.Header.Get("Authorization")
		mu.Unlock()
	}, ca.issue(t, "kube-apiserver", []string{"kubernetes"}, nil, x509.ExtKeyUsageServerAuth), nil)

	file := filepath.Join(t.TempDir(), "token")
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	write := func(content string, mtime time.Time) {
		writeProbeFile(t, file, content)
		if err := os.Chtimes(file, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	write("first-token\n", t0)
	p := newTestProber(t, HealthConfig{URL: srv.URL, CAFile: ca.file, ServerName: "kubernetes", TokenFile: file, Timeout: okTimeout})

	steps := []struct {
		name    string
		content string // written with mtime unless empty
		mtime   time.Time
		want    string
	}{
		{name: "initial token, trimmed", want: "Bearer first-token"},
		{name: "same size and mtime is not re-read", content: "other-token\n", mtime: t0, want: "Bearer first-token"},
		{name: "rotated", content: "second-token-longer\n", mtime: t0.Add(time.Minute), want: "Bearer second-token-longer"},
		{name: "same size, new mtime", content: "SECOND-TOKEN-LONGER\n", mtime: t0.Add(2 * time.Minute), want: "Bearer SECOND-TOKEN-LONGER"},
	}
	for _, s := range steps {
		if s.content != "" {
			write(s.content, s.mtime)
		}
		r := p.Probe(t.Context())
		mu.Lock()
		got := auth
		mu.Unlock()
		if !r.OK || got != s.want {
			t.Errorf("%s: Probe() = %+v with Authorization %q, want OK with %q", s.name, r, got, s.want)
		}
	}

	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	r := p.Probe(t.Context())
	if r.OK || r.Code != 0 || !strings.HasPrefix(r.Reason, "token: ") || !strings.Contains(r.Reason, file) || strings.Contains(r.Reason, "TOKEN") {
		t.Errorf("Probe() with the token file gone = %+v, want a failure naming the file and not the token", r)
	}
}

func TestHTTPProberClientCert(t *testing.T) {
	ca := newProbeCA(t)
	srv, _ := startProbeServer(t, func(w http.ResponseWriter, r *http.Request) {
		if cn := r.TLS.PeerCertificates[0].Subject.CommonName; cn != "vipcast" {
			http.Error(w, "client "+cn, http.StatusForbidden)
		}
	}, ca.issue(t, "kube-apiserver", []string{"kubernetes"}, nil, x509.ExtKeyUsageServerAuth), ca.pool)
	certFile, keyFile := writeKeyPair(t, ca.issue(t, "vipcast", nil, nil, x509.ExtKeyUsageClientAuth))

	tests := []struct {
		name              string
		certFile, keyFile string
		wantOK            bool
	}{
		{name: "presented", certFile: certFile, keyFile: keyFile, wantOK: true},
		{name: "missing", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestProber(t, HealthConfig{URL: srv.URL, CAFile: ca.file, ServerName: "kubernetes", CertFile: tt.certFile, KeyFile: tt.keyFile, Timeout: okTimeout})
			r := p.Probe(t.Context())
			if r.OK != tt.wantOK || (!tt.wantOK && r.Code != 0) {
				t.Errorf("Probe() = %+v, want OK %v", r, tt.wantOK)
			}
		})
	}
}

func TestNewHTTPProberErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newProbeCA(t)
	certFile, _ := writeKeyPair(t, ca.issue(t, "vipcast", nil, nil, x509.ExtKeyUsageClientAuth))
	garbage, empty, missing := filepath.Join(dir, "garbage.crt"), filepath.Join(dir, "empty-token"), filepath.Join(dir, "missing")
	writeProbeFile(t, garbage, "not a certificate\n")
	writeProbeFile(t, empty, " \n")

	tests := []struct {
		name string
		cfg  func(*HealthConfig)
		want string // in the error
	}{
		{name: "CA file without certificates", cfg: func(c *HealthConfig) { c.CAFile = garbage }, want: garbage},
		{name: "CA file missing", cfg: func(c *HealthConfig) { c.CAFile = missing }, want: missing},
		{name: "client key missing", cfg: func(c *HealthConfig) { c.CertFile, c.KeyFile = certFile, missing }, want: missing},
		{name: "client key is not the certificate's", cfg: func(c *HealthConfig) { c.CertFile, c.KeyFile = certFile, certFile }, want: certFile},
		{name: "token file empty", cfg: func(c *HealthConfig) { c.TokenFile = empty }, want: empty},
		{name: "token file missing", cfg: func(c *HealthConfig) { c.TokenFile = missing }, want: missing},
		{name: "not an http URL", cfg: func(c *HealthConfig) { c.URL = "ftp://127.0.0.1/readyz" }, want: "ftp://127.0.0.1/readyz"},
		{name: "no timeout", cfg: func(c *HealthConfig) { c.Timeout = 0 }, want: "health.timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := HealthConfig{URL: "https://127.0.0.1:6443/readyz", CAFile: ca.file, ServerName: "kubernetes", Timeout: time.Second}
			tt.cfg(&cfg)
			p, err := NewHTTPProber(cfg)
			if err == nil {
				p.Close()
				t.Fatalf("NewHTTPProber() succeeded, want an error naming %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewHTTPProber() error %q does not name %q", err, tt.want)
			}
		})
	}
}

type fakeTimeout struct{}

func (fakeTimeout) Error() string   { return "net/http: timeout awaiting response headers" }
func (fakeTimeout) Timeout() bool   { return true }
func (fakeTimeout) Temporary() bool { return true }

func TestProbeClassify(t *testing.T) {
	inURL := func(err error) error { return &url.Error{Op: "Get", URL: "https://127.0.0.1:6443/readyz", Err: err} }
	opErr := func(op string, errno syscall.Errno) error {
		return inURL(&net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, errno)})
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, "ok"},
		{"deadline", inURL(context.DeadlineExceeded), "timeout after 80ms"},
		{"net timeout", inURL(fakeTimeout{}), "timeout after 80ms"},
		{"canceled", inURL(context.Canceled), "canceled"},
		{"refused", opErr("dial", syscall.ECONNREFUSED), "connection refused"},
		{"reset", opErr("read", syscall.ECONNRESET), "connection reset"},
		{"closed", inURL(io.EOF), "connection closed by server"},
		{"unknown authority", inURL(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), "tls: certificate signed by unknown authority"},
		{"expired", inURL(&tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.Expired, Detail: "current time is after"}}),
			"tls: certificate has expired or is not yet valid: current time is after"},
		{"other, without the URL", inURL(errors.New("net/http: invalid header field value")), "net/http: invalid header field value"},
		{"plain", errors.New("token: open /t: permission denied"), "token: open /t: permission denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err, 80*time.Millisecond); got != tt.want {
				t.Errorf("classify() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestHTTPProberNoLeaks probes like hours of operation in miniature: healthy
// probes must share one connection, timed-out ones must close theirs, and
// nothing may outlive Close.
func TestHTTPProberNoLeaks(t *testing.T) {
	base := runtime.NumGoroutine()
	ca := newProbeCA(t)
	cert := ca.issue(t, "kube-apiserver", []string{"kubernetes"}, []net.IP{net.IPv4(127, 0, 0, 1)}, x509.ExtKeyUsageServerAuth)
	okSrv, okConns := startProbeServer(t, okHandler, cert, nil)
	hangSrv, hangConns := startProbeServer(t, hangFor(t), cert, nil)
	okProber := newTestProber(t, HealthConfig{URL: okSrv.URL, CAFile: ca.file, ServerName: "kubernetes", Timeout: okTimeout})
	hangProber := newTestProber(t, HealthConfig{URL: hangSrv.URL, CAFile: ca.file, ServerName: "kubernetes", Timeout: 20 * time.Millisecond})

	const okProbes, hangProbes = 300, 50
	for i := range okProbes {
		if r := okProber.Probe(t.Context()); !r.OK {
			t.Fatalf("probe %d: %+v", i, r)
		}
	}
	if opened, _ := okConns.counts(); opened != 1 {
		t.Errorf("%d healthy probes opened %d connections, want 1", okProbes, opened)
	}
	for i := range hangProbes {
		if r := hangProber.Probe(t.Context()); r.Reason != "timeout after 20ms" {
			t.Fatalf("probe %d: %+v, want a timeout", i, r)
		}
	}
	// Under load a probe can time out before it dials, and a dial that
	// finishes after its probe gave up may park its connection in the idle
	// pool (MaxIdleConns 1). So the count of connections is not exact; what
	// must hold is that timed-out connections do not pile up.
	hangCounts := func() string {
		o, c := hangConns.counts()
		return fmt.Sprintf("hang server: %d opened, %d closed", o, c)
	}
	testutil.EventuallyWithin(t, 20*time.Second, "timed-out connections to be closed, at most one idle one left", func() bool {
		opened, closed := hangConns.counts()
		return opened <= hangProbes && opened-closed <= 1
	}, hangCounts, goroutines)

	okProber.Close()
	hangProber.Close()
	okSrv.Close()
	hangSrv.Close()
	testutil.EventuallyWithin(t, 20*time.Second, "goroutines to return to the baseline", func() bool { return runtime.NumGoroutine() <= base }, goroutines)
}

// okTimeout is the probe timeout of tests whose subject is not the
// timeout: long, because under -race on two busy cores a TLS handshake
// alone has taken over 2 s.
const okTimeout = 10 * time.Second

// goroutines is a dump of every goroutine, which is what a leak needs to
// be found.
func goroutines() string {
	buf := make([]byte, 1<<20)
	return "goroutines:\n" + string(buf[:runtime.Stack(buf, true)])
}

// TestHTTPProberHearsClose: the apiserver closing the idle kept-alive
// connection is news at once; the prober closing its own is not.
func TestHTTPProberHearsClose(t *testing.T) {
	ca := newProbeCA(t)
	cert := ca.issue(t, "kube-apiserver", []string{"kubernetes"}, []net.IP{net.IPv4(127, 0, 0, 1)}, x509.ExtKeyUsageServerAuth)
	srv, conns := startProbeServer(t, okHandler, cert, nil)
	p := newTestProber(t, HealthConfig{URL: srv.URL, CAFile: ca.file, ServerName: "kubernetes", Timeout: okTimeout})
	pending := func() bool {
		select {
		case <-p.Closed():
			return true
		default:
			return false
		}
	}
	probeOK := func() {
		t.Helper()
		if r := p.Probe(t.Context()); !r.OK {
			t.Fatalf("probe: %+v", r)
		}
	}

	probeOK()
	p.Close() // our own close
	testutil.Eventually(t, "the server to see the prober's close", func() bool { _, c := conns.counts(); return c == 1 })
	if pending() {
		t.Fatal("Closed() fired for a connection the prober closed itself")
	}

	probeOK()
	srv.CloseClientConnections() // what a crash does to the idle connection
	testutil.Eventually(t, "Closed() to fire after the server closed the idle connection", pending)

	// The next probe dials afresh and still works.
	probeOK()
	if opened, _ := conns.counts(); opened != 3 {
		t.Errorf("%d connections opened, want 3", opened)
	}
}

// TestHTTPProberHearsCloseOverHTTP is the same over plain HTTP, which the
// transport dials without TLS.
func TestHTTPProberHearsCloseOverHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(okHandler))
	t.Cleanup(srv.Close)
	p := newTestProber(t, HealthConfig{URL: srv.URL, Timeout: okTimeout})
	if r := p.Probe(t.Context()); !r.OK {
		t.Fatalf("probe: %+v", r)
	}
	srv.CloseClientConnections()
	testutil.Eventually(t, "Closed() to fire", func() bool {
		select {
		case <-p.Closed():
			return true
		default:
			return false
		}
	})
}

// TestHTTPProberTLSHandshakeTimesOut: an apiserver that accepts the
// connection and never answers the ClientHello fails the probe at its
// deadline. The prober does the TLS itself, so the transport's own
// handshake timeout does not apply; the probe's deadline must.
func TestHTTPProberTLSHandshakeTimesOut(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepting := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-accepting })
	go func() { // accepts and stays silent until the test ends
		var conns []net.Conn
		defer close(accepting)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	p := newTestProber(t, HealthConfig{URL: "https://" + l.Addr().String() + "/readyz", InsecureSkipVerify: true, Timeout: 50 * time.Millisecond})
	got := make(chan ProbeResult, 1)
	go func() { got <- p.Probe(t.Context()) }()
	select {
	case r := <-got:
		if r.OK || r.Reason != "timeout after 50ms" {
			t.Errorf("probe of a server that never handshakes: %+v, want a timeout", r)
		}
	case <-time.After(testutil.Timeout):
		t.Fatalf("probe still waiting for the TLS handshake after %v (timeout 50ms)", testutil.Timeout)
	}
}
