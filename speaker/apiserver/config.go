// Package apiserver serves vipcast's operator API (speaker/api/v1) on a unix
// socket and, optionally, on TCP with mutual TLS, plus a health-only gRPC
// listener for Kubernetes probes.
package apiserver

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// Config is the api section of the configuration file.
type Config struct {
	// Socket is the unix socket of the full API (mode 0600); "" disables it.
	Socket string `mapstructure:"socket"`
	// SocketReadOnly refuses Drain and Undrain on the socket.
	SocketReadOnly bool `mapstructure:"socketReadOnly"`
	// StateFile keeps a drain across restarts; "" keeps it in memory only.
	StateFile string `mapstructure:"stateFile"`
	// HealthListen is a plain-TCP address serving only grpc.health.v1, for
	// Kubernetes gRPC probes; "" disables it.
	HealthListen string `mapstructure:"healthListen"`
	// TCP is the optional network listener, always with mutual TLS.
	TCP TCPConfig `mapstructure:"tcp"`
}

// TCPConfig is the mTLS listener.
type TCPConfig struct {
	// Listen is host:port; "" (default) opens no TCP listener.
	Listen string `mapstructure:"listen"`
	// CAFile verifies client certificates, which are required.
	CAFile string `mapstructure:"caFile"`
	// CertFile and KeyFile are the server's certificate.
	CertFile string `mapstructure:"certFile"`
	KeyFile  string `mapstructure:"keyFile"`
	// ReadOnly refuses Drain and Undrain on this listener.
	ReadOnly bool `mapstructure:"readOnly"`
}

// Defaults.
const (
	DefaultSocket    = "/run/vipcast/vipcast.sock"
	DefaultStateFile = "/var/lib/vipcast/state.json"
)

// Default returns the defaults: the unix socket only.
func Default() Config {
	return Config{Socket: DefaultSocket, StateFile: DefaultStateFile}
}

// Validate returns every problem at once, each naming the field, the value
// and the fix.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Socket != "" && !filepath.IsAbs(c.Socket) {
		add("api.socket: %q is not an absolute path; use e.g. %s, or \"\" to disable the socket", c.Socket, DefaultSocket)
	} else if len(c.Socket) > 107 {
		add("api.socket: %q is longer than 107 bytes, the limit for a unix socket path; use a shorter path", c.Socket)
	}
	if c.StateFile != "" && !filepath.IsAbs(c.StateFile) {
		add("api.stateFile: %q is not an absolute path; use e.g. %s, or \"\" to keep drains in memory only", c.StateFile, DefaultStateFile)
	} else if fi, err := os.Stat(c.StateFile); c.StateFile != "" && err == nil && fi.IsDir() {
		add("api.stateFile: %q is a directory; remove it (rmdir) or set api.stateFile to a file path such as %s", c.StateFile, filepath.Join(c.StateFile, "state.json"))
	}
	if c.HealthListen != "" {
		if _, _, err := net.SplitHostPort(c.HealthListen); err != nil {
			add("api.healthListen: %q is not host:port; use e.g. 0.0.0.0:9181, or \"\" to disable", c.HealthListen)
		}
	}
	t := c.TCP
	if t.Listen != "" {
		if _, _, err := net.SplitHostPort(t.Listen); err != nil {
			add("api.tcp.listen: %q is not host:port; use e.g. 127.0.0.1:9179, or \"\" to disable", t.Listen)
		}
		for _, f := range []struct{ name, path string }{{"api.tcp.caFile", t.CAFile}, {"api.tcp.certFile", t.CertFile}, {"api.tcp.keyFile", t.KeyFile}} {
			if f.path == "" {
				add("%s: empty with api.tcp.listen set; the TCP listener needs mutual TLS, set caFile (for client certificates), certFile and keyFile", f.name)
				continue
			}
			if fh, err := os.Open(f.path); err != nil {
				add("%s: %q cannot be read (%v); point it at a readable file", f.name, f.path, errors.Unwrap(err))
			} else {
				fh.Close()
			}
		}
		if c.HealthListen != "" && c.HealthListen == t.Listen {
			add("api.healthListen: %q is also api.tcp.listen; use another port", c.HealthListen)
		}
	} else if t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ReadOnly {
		add("api.tcp: TLS settings without api.tcp.listen; set listen (e.g. 127.0.0.1:9179) or remove them")
	}
	return errors.Join(errs...)
}
