package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// LoadOptions describe a steady client load on the VIP.
type LoadOptions struct {
	Rate     int           // requests per second, default 200
	Timeout  time.Duration // per request, default 1.5s
	MaxTime  time.Duration // hard bound on the run, default 5m
	MaxCount int           // hard bound on requests, default Rate*MaxTime
}

// Request is one client request's outcome.
type Request struct {
	Start   time.Time
	Latency time.Duration
	Code    int    // HTTP status, 0 if none
	Err     string // "" when the request succeeded (200)
	Class   string // ok, connect, timeout, reset, tls, http-<code>, other
}

// Load sends GET /version to https://VIP:6443 from the client namespace,
// every request over a new TCP connection (no keep-alive), at a fixed rate,
// until Stop or its bounds. Only the lab's VIP is ever dialled.
type Load struct {
	opts   LoadOptions
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	reqs   []Request
	client *http.Client
}

// StartLoad starts a client load against the lab's IPv4 VIP.
func (l *Lab) StartLoad(o LoadOptions) (*Load, error) {
	if o.Rate <= 0 {
		o.Rate = 200
	}
	if o.Timeout <= 0 {
		o.Timeout = 1500 * time.Millisecond
	}
	if o.MaxTime <= 0 {
		o.MaxTime = 5 * time.Minute
	}
	if o.MaxCount <= 0 {
		o.MaxCount = int(float64(o.Rate) * o.MaxTime.Seconds())
	}
	client, err := l.vipClient(o.Timeout)
	if err != nil {
		return nil, err
	}
	ld := &Load{opts: o, stop: make(chan struct{}), done: make(chan struct{}), client: client}
	url := "https://" + netip.AddrPortFrom(VIP4.Addr(), APIServerPort).String() + "/version"
	go func() {
		defer close(ld.done)
		var wg sync.WaitGroup
		defer wg.Wait()
		interval := time.Second / time.Duration(o.Rate)
		tk := time.NewTicker(interval)
		defer tk.Stop()
		end := time.After(o.MaxTime)
		for sent := 0; sent < o.MaxCount; sent++ {
			select {
			case <-ld.stop:
				return
			case <-end:
				return
			case <-tk.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ld.add(ld.one(url))
			}()
		}
	}()
	return ld, nil
}

// vipClient is an HTTPS client in the client namespace that dials only
// the lab's IPv4 VIP and trusts every node's apiserver certificate, one
// new connection per request.
func (l *Lab) vipClient(timeout time.Duration) (*http.Client, error) {
	pool := x509.NewCertPool()
	for _, n := range l.nodes {
		pem, err := os.ReadFile(n.CertFile())
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: apiserver certificate: %v", n.Name, err)
		}
	}
	vip := netip.AddrPortFrom(VIP4.Addr(), APIServerPort).String()
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "kubernetes"},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if addr != vip {
					return nil, fmt.Errorf("VIP client only dials the VIP, not %s", addr)
				}
				return dialIn(ctx, l.clientNS, network, addr)
			},
			DisableKeepAlives: true,
		},
	}, nil
}

// ClientGet sends one GET for path to https://VIP:6443 from the client
// namespace and returns the HTTP status and the start of the body; any
// status is an answer.
func (l *Lab) ClientGet(path string, timeout time.Duration) (code int, body string, err error) {
	c, err := l.vipClient(timeout)
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Get("https://" + netip.AddrPortFrom(VIP4.Addr(), APIServerPort).String() + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return resp.StatusCode, string(b), nil
}

func (ld *Load) one(url string) Request {
	r := Request{Start: time.Now()}
	resp, err := ld.client.Get(url)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		r.Code = resp.StatusCode
	}
	r.Latency = time.Since(r.Start)
	switch {
	case err != nil:
		r.Err = err.Error()
		r.Class = classify(err)
	case r.Code != http.StatusOK:
		r.Err = fmt.Sprintf("HTTP %d", r.Code)
		r.Class = fmt.Sprintf("http-%d", r.Code)
	default:
		r.Class = "ok"
	}
	return r
}

func classify(err error) string {
	s := err.Error()
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout(), strings.Contains(s, "Timeout"), strings.Contains(s, "deadline exceeded"):
		return "timeout"
	case strings.Contains(s, "connection refused"):
		return "connect-refused"
	case strings.Contains(s, "dial"), strings.Contains(s, "no route"), strings.Contains(s, "unreachable"):
		return "connect"
	case strings.Contains(s, "reset by peer"):
		return "reset"
	case strings.Contains(s, "EOF"):
		return "eof"
	case strings.Contains(s, "tls"), strings.Contains(s, "x509"):
		return "tls"
	}
	return "other"
}

func (ld *Load) add(r Request) {
	ld.mu.Lock()
	ld.reqs = append(ld.reqs, r)
	ld.mu.Unlock()
}

// Stop stops sending, waits for the requests in flight and returns every
// request's outcome, in completion order.
func (ld *Load) Stop() []Request {
	select {
	case <-ld.stop:
	default:
		close(ld.stop)
	}
	<-ld.done
	ld.client.CloseIdleConnections()
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return append([]Request(nil), ld.reqs...)
}
