package apiserver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	apiv1 "github.com/vipcast/vipcast/speaker/api/v1"
)

// ClientConfig says how to reach a vipcast: its unix socket, or Addr with
// mutual TLS.
type ClientConfig struct {
	Socket string
	// Addr (host:port) selects TCP with mTLS instead of the socket.
	Addr                      string
	CAFile, CertFile, KeyFile string
}

// Dial connects to the API. For the socket it first checks that something
// listens there, so a stopped vipcast or missing permission is reported
// plainly instead of as a gRPC transport error.
func Dial(c ClientConfig) (*grpc.ClientConn, apiv1.VipcastServiceClient, error) {
	var target string
	var creds credentials.TransportCredentials
	if c.Addr != "" {
		if c.CAFile == "" || c.CertFile == "" || c.KeyFile == "" {
			return nil, nil, fmt.Errorf("--addr %s needs --ca, --cert and --key: the TCP API only accepts mutual TLS", c.Addr)
		}
		tc, err := clientTLS(c)
		if err != nil {
			return nil, nil, err
		}
		target, creds = "dns:///"+c.Addr, credentials.NewTLS(tc)
	} else {
		if err := checkSocket(c.Socket); err != nil {
			return nil, nil, err
		}
		target, creds = "unix://"+c.Socket, insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, nil, err
	}
	return conn, apiv1.NewVipcastServiceClient(conn), nil
}

func checkSocket(path string) error {
	if path == "" {
		return errors.New("no socket given: set --socket, or --addr for TCP")
	}
	conn, err := net.DialTimeout("unix", path, 2*time.Second)
	switch {
	case err == nil:
		conn.Close()
		return nil
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("no vipcast listening at %s: is it running? set --socket", path)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("permission denied on %s: run as root or the socket's owner", path)
	}
	return fmt.Errorf("connecting to %s: %w", path, err)
}

func clientTLS(c ClientConfig) (*tls.Config, error) {
	cert, pool, err := loadMTLS(c.CertFile, c.KeyFile, c.CAFile, "--cert/--key", "--ca")
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS13}, nil
}
