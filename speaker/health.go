package speaker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"
)

// HTTPProber GETs the apiserver's readiness endpoint over one kept-alive
// connection, so a healthy probe costs a request rather than a TCP and TLS
// handshake, ten times a second. It is safe for concurrent use.
type HTTPProber struct {
	url     string
	timeout time.Duration
	client  *http.Client
	token   *reloader[string] // nil without a token file
	closed  chan struct{}     // the apiserver closed a connection; cap 1
}

var _ ClosingProber = (*HTTPProber)(nil)

// NewHTTPProber reads the CA, client certificate and token now, so a broken
// file stops the speaker at start instead of failing every probe.
func NewHTTPProber(cfg HealthConfig) (*HTTPProber, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("health.url %q: not an http(s) URL", cfg.URL)
	}
	if cfg.Timeout <= 0 {
		return nil, fmt.Errorf("health.timeout %v: must be positive", cfg.Timeout)
	}
	tlsCfg := &tls.Config{
		ServerName:         cfg.ServerName,
		InsecureSkipVerify: cfg.InsecureSkipVerify,
		MinVersion:         tls.VersionTLS12,
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("health.caFile: %w", err)
		}
		tlsCfg.RootCAs = x509.NewCertPool()
		if !tlsCfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("health.caFile: %q holds no PEM certificate; point it at the CA that signed the apiserver's serving certificate, e.g. /etc/kubernetes/pki/ca.crt", cfg.CAFile)
		}
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		// Client certificates are renewed under a running speaker; loading
		// once would fail every node's probe together when the old one expires.
		cert := &reloader[*tls.Certificate]{paths: []string{cfg.CertFile, cfg.KeyFile}, load: func() (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
			return &c, err
		}}
		if _, err := cert.get(); err != nil {
			return nil, fmt.Errorf("health.certFile %q, health.keyFile %q: %w; point them at a PEM client certificate and its key", cfg.CertFile, cfg.KeyFile, err)
		}
		tlsCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert.get() }
	}
	p := &HTTPProber{url: cfg.URL, timeout: cfg.Timeout, closed: make(chan struct{}, 1)}
	if cfg.TokenFile != "" {
		p.token = &reloader[string]{paths: []string{cfg.TokenFile}, load: func() (string, error) {
			b, err := os.ReadFile(cfg.TokenFile)
			tok := strings.TrimSpace(string(b))
			if err == nil && tok == "" {
				err = fmt.Errorf("%s is empty", cfg.TokenFile)
			}
			// A token that cannot go in a header would fail every probe
			// with a transport error that does not name the file.
			if err == nil && strings.IndexFunc(tok, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) >= 0 {
				err = fmt.Errorf("%s holds a line break or control character inside the token; it must hold the token alone", cfg.TokenFile)
			}
			return tok, err
		}}
		if _, err := p.token.get(); err != nil {
			return nil, fmt.Errorf("health.tokenFile: %w; point it at a file holding the bearer token", err)
		}
	}

	// HTTP/1.1 only: a timed-out request then closes its connection, so the
	// next probe tests a fresh dial and handshake instead of queueing another
	// stream behind a wedged one on a shared HTTP/2 connection.
	var protos http.Protocols
	protos.SetHTTP1(true)
	// The connections are dialled here, not by the transport, to watch
	// them: an idle kept-alive connection that the apiserver closes is the
	// first sign of a crash, long before the next probe is due.
	var dialer net.Dialer
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &watchedConn{Conn: c, peerClosed: p.notifyClosed}, nil
	}
	dialTLS := func(ctx context.Context, network, addr string) (net.Conn, error) {
		raw, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c := tlsCfg.Clone()
		if c.ServerName == "" {
			c.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(raw, c)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, err
		}
		// Watched above TLS, so a close_notify counts as well as a FIN.
		return &watchedConn{Conn: tc, peerClosed: p.notifyClosed}, nil
	}
	p.client = &http.Client{
		Transport: &http.Transport{
			Proxy:       nil, // the apiserver is local; HTTP_PROXY must not reroute it
			DialContext: dial,
			// dialTLS does the TLS, so the transport ignores its
			// TLSClientConfig and TLSHandshakeTimeout: the handshake is
			// bounded by the probe's deadline (get), like the dial.
			DialTLSContext:        dialTLS,
			ResponseHeaderTimeout: cfg.Timeout,
			DisableCompression:    true,
			MaxIdleConns:          1,
			MaxIdleConnsPerHost:   1,
			// 2, not 1: a timed-out connection may still be counted while it
			// tears down, and the next probe must not wait for it.
			MaxConnsPerHost: 2,
			IdleConnTimeout: 30 * time.Second,
			Protocols:       &protos,
		},
		// A redirect is not readiness; report it as its status code.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return p, nil
}

// Probe returns within the timeout; only HTTP 200 is healthy.
func (p *HTTPProber) Probe(ctx context.Context) ProbeResult {
	start := time.Now()
	code, detail, err := p.get(ctx)
	r := ProbeResult{At: start, Latency: time.Since(start), Code: code}
	switch {
	case err != nil:
		r.Reason = classify(err, p.timeout)
		r.TimedOut = isTimeout(err)
		r.Refused = errors.Is(err, syscall.ECONNREFUSED)
	case code != http.StatusOK:
		r.Reason = "HTTP " + strconv.Itoa(code)
		if detail != "" {
			r.Reason += ": " + detail
		}
	default:
		r.OK, r.Reason = true, "ok"
	}
	return r
}

// Close drops the kept-alive connection; a probe still running ends at its
// timeout and closes its own.
func (p *HTTPProber) Close() { p.client.CloseIdleConnections() }

// Closed receives when the apiserver closed or reset one of the prober's
// connections: a crashed apiserver's sockets are closed by the kernel at
// once, so the idle kept-alive connection hears of it within a millisecond.
func (p *HTTPProber) Closed() <-chan struct{} { return p.closed }

func (p *HTTPProber) notifyClosed() {
	select {
	case p.closed <- struct{}{}:
	default: // one pending notice says it all
	}
}

// watchedConn reports a read that ends because the other side closed or
// reset the connection, not because this side closed it.
type watchedConn struct {
	net.Conn
	peerClosed func()
	closing    atomic.Bool
}

func (c *watchedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && !c.closing.Load() && closedByPeer(err) {
		c.peerClosed()
	}
	return n, err
}

func (c *watchedConn) Close() error {
	c.closing.Store(true)
	return c.Conn.Close()
}

func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNABORTED)
}

func (p *HTTPProber) get(ctx context.Context) (code int, detail string, err error) {
	// The body is read under the same deadline: an apiserver that sends
	// headers and then stalls is as unhealthy as one that never answers.
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("User-Agent", "vipcast")
	if p.token != nil {
		tok, err := p.token.get()
		if err != nil {
			return 0, "", fmt.Errorf("token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	// Headers that raced our own cancellation (e.g. the implicit 200 a
	// server writes once we hang up) arrived too late to count at all.
	if err := ctx.Err(); err != nil {
		return 0, "", err
	}
	var head []byte
	if resp.StatusCode != http.StatusOK {
		if head, err = io.ReadAll(io.LimitReader(resp.Body, 4<<10)); err != nil {
			return resp.StatusCode, "", err
		}
	}
	// Reading to EOF puts the connection back for the next probe; a body
	// larger than any readyz answer is cut, costing one redial.
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)); err != nil {
		return resp.StatusCode, "", err
	}
	// The transport can still hand over a response that raced our own
	// cancellation, e.g. one the server wrote because we hung up; it came
	// too late to count.
	if err := ctx.Err(); err != nil {
		return resp.StatusCode, "", err
	}
	return resp.StatusCode, summarize(head), nil
}

// summarize picks the line an operator needs from an error body. A failing
// /readyz lists passing checks ("[+]ping ok") before the failed one
// ("[-]etcd failed: reason withheld"), so the first "[-]" line wins.
func summarize(body []byte) string {
	var pick string
	for line := range strings.Lines(string(body)) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[-]") {
			pick = line
			break
		}
		if pick == "" {
			pick = line
		}
	}
	pick = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(pick, "?"))
	if r := []rune(pick); len(r) > 120 {
		pick = string(r[:120]) + "..."
	}
	return pick
}

func isTimeout(err error) bool {
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout()
}

// classify turns a probe error into a short, stable reason for logs, status
// and metrics labels, without the URL and addresses the raw errors carry.
func classify(err error, timeout time.Duration) string {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		verify   *tls.CertificateVerificationError
		urlErr   *url.Error
	)
	switch {
	case err == nil:
		return "ok"
	case isTimeout(err):
		return "timeout after " + timeout.String()
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by server"
	case errors.As(err, &unknown):
		// Its text may name a candidate CA; the reason stays fixed.
		return "tls: certificate signed by unknown authority"
	case errors.As(err, &hostname):
		return "tls: " + strings.TrimPrefix(hostname.Error(), "x509: ")
	case errors.As(err, &verify):
		return "tls: " + strings.TrimPrefix(verify.Err.Error(), "x509: ")
	case errors.As(err, &urlErr):
		return urlErr.Err.Error()
	}
	return err.Error()
}

// reloader caches what load makes of paths until one of them changes size
// or mtime: projected tokens and client certificates are replaced under a
// running speaker, and a stat is cheaper than a read and parse per probe.
type reloader[T any] struct {
	paths []string
	load  func() (T, error)
	mu    sync.Mutex
	stamp string
	val   T
}

func (r *reloader[T]) get() (T, error) {
	// Stat before reading: content at least as new as the stamp is cached,
	// and a change during the read shows up as a new stamp next time.
	var stamp strings.Builder
	for _, path := range r.paths {
		fi, err := os.Stat(path)
		if err != nil {
			var zero T
			return zero, err
		}
		fmt.Fprintf(&stamp, "%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := stamp.String(); s != r.stamp {
		v, err := r.load()
		if err != nil {
			return v, err
		}
		r.val, r.stamp = v, s
	}
	return r.val, nil
}
