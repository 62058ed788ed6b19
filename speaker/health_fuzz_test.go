package speaker

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// FuzzHealthResponse feeds raw bytes as the apiserver's answer. The
// reason ends up in status, logs and a metric label: it must stay short
// and printable, and only a 200 may count as healthy.
func FuzzHealthResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 55\r\n\r\n[+]ping ok\n[-]etcd failed: reason withheld\nreadyz failed\n",
		"HTTP/1.1 503 Service Unavailable\r\n\r\n\x00\x01\x1b[31mred\xff\xfe",
		"HTTP/1.1 301 Moved\r\nLocation: http://example.invalid/\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/1.1 \x01\x02 bad\r\n\r\n",
		"HTTP/9.9 200 OK\r\n\r\n",
		"garbage\n",
		"",
	} {
		f.Add([]byte(s))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { ln.Close() })
	answers := make(chan []byte)
	go func() { // owned by the listener: ends when Cleanup closes it
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b := <-answers
			// Read the request first, so the answer is not a reset.
			_, _ = http.ReadRequest(bufio.NewReader(c))
			_, _ = c.Write(b)
			c.Close()
		}
	}()
	p, err := NewHTTPProber(HealthConfig{URL: "http://" + ln.Addr().String() + "/readyz", Timeout: 2 * time.Second})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, resp []byte) {
		p.Close() // one connection per answer
		done := make(chan ProbeResult, 1)
		go func() { done <- p.Probe(context.Background()) }()
		select {
		case answers <- resp:
		case r := <-done:
			t.Fatalf("probe ended before the server answered: %+v", r)
		}
		r := <-done
		if !utf8.ValidString(r.Reason) || strings.IndexFunc(r.Reason, unicode.IsControl) >= 0 || len(r.Reason) > 200 {
			t.Fatalf("reason %q: not short, printable UTF-8", r.Reason)
		}
		if r.OK && (r.Code != http.StatusOK || !strings.Contains(string(resp), " 200")) {
			t.Fatalf("healthy from %q: %+v", resp, r)
		}
	})
}

// FuzzTokenFile: whatever the token file holds, the prober refuses it
// with an error naming health.tokenFile, or sends it as a valid header.
func FuzzTokenFile(f *testing.F) {
	for _, s := range []string{"eyJhbGciOiJSUzI1NiJ9.e30.sig\n", "", "\n\n", "  tok  \r\n", "a\nb", "tok\x00", "\xff\xfe", strings.Repeat("t", 9000)} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "token")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := NewHTTPProber(HealthConfig{URL: "http://127.0.0.1:1/readyz", Timeout: time.Second, TokenFile: path})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "health.tokenFile: ") {
				t.Fatalf("error does not name the field: %v", err)
			}
			return
		}
		defer p.Close()
		tok, err := p.token.get()
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:1/", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if tok == "" || strings.TrimSpace(tok) != tok || !validHeaderValue("Bearer "+tok) {
			t.Fatalf("token %q accepted but not sendable", tok)
		}
	})
}

// validHeaderValue is net/http's rule (httpguts.ValidHeaderFieldValue).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b < ' ' && b != '\t' || b == 0x7f {
			return false
		}
	}
	return true
}
