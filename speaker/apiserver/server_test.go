package apiserver_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vipcast/vipcast/peers"
	"github.com/vipcast/vipcast/peers/testutil"
	"github.com/vipcast/vipcast/speaker"
	apiv1 "github.com/vipcast/vipcast/speaker/api/v1"
	"github.com/vipcast/vipcast/speaker/apiserver"
	"github.com/vipcast/vipcast/speaker/apiserver/apitest"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func dialSocket(t testing.TB, e *apitest.Env) apiv1.VipcastServiceClient {
	t.Helper()
	conn, c, err := apiserver.Dial(apiserver.ClientConfig{Socket: e.Config.Socket})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return c
}

func getStatus(t *testing.T, c apiv1.VipcastServiceClient) *apiv1.GetStatusResponse {
	t.Helper()
	st, err := c.GetStatus(ctx(t), &apiv1.GetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestUnixSocketStatusDrainWatch(t *testing.T) {
	e := apitest.Start(t, apitest.Options{Healthy: true})
	fi, err := os.Stat(e.Config.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want a socket with 0600", fi.Mode())
	}
	if di, _ := os.Stat(filepath.Dir(e.Config.Socket)); di.Mode().Perm() != 0o750 {
		t.Errorf("socket directory mode = %v, want 0750", di.Mode().Perm())
	}
	c := dialSocket(t, e)
	testutil.Eventually(t, "VIP advertised", func() bool {
		st := getStatus(t, c)
		return len(st.Vips) == 1 && st.Vips[0].Advertised && st.Vips[0].Reason == "healthy" && len(st.Peers) == 1
	})
	st := getStatus(t, c)
	if st.Version != "test" || st.ConfigDigest != "sha256:test" || st.Vips[0].Prefix != apitest.VIP.String() || st.Vips[0].Since == nil {
		t.Errorf("status header/VIP: %v", st)
	}
	h := st.Health
	if len(h.Recent) == 0 || len(h.Recent) > 20 || !h.Recent[len(h.Recent)-1].Ok || h.Rise != 3 || h.Fall != 2 || h.OkRun < 3 {
		t.Errorf("health: %v", h)
	}
	testutil.Eventually(t, "20 probes kept", func() bool { return len(getStatus(t, c).Health.Recent) == 20 })
	p := st.Peers[0]
	if p.Address != "192.0.2.1" || p.Asn != 65000 || p.State != apiv1.SessionState_SESSION_STATE_ESTABLISHED || p.Uptime.AsDuration() < time.Minute || p.PrefixesSent != 1 {
		t.Errorf("peer: %v", p)
	}
	if n := len(st.Transitions); n == 0 || st.Transitions[n-1].ToReason != "healthy" {
		t.Errorf("transitions: %v", st.Transitions)
	}
	if p.Bfd != nil {
		t.Errorf("peer without BFD has bfd %v, want it unset", p.Bfd)
	}

	// A peer with BFD round-trips; one without has the field unset.
	bfdSince := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	e.Router.SetPeers(
		peers.PeerStatus{
			Address: netip.MustParseAddr("192.0.2.1"), ASN: 65000, State: peers.StateEstablished,
			Since: time.Now().Add(-time.Minute), PrefixesSent: 1,
			BFD: &peers.BFDStatus{
				State: "Up", RemoteState: "Init", Diag: "control detection time expired", Since: bfdSince,
				TxInterval: 100 * time.Millisecond, DetectTime: 300 * time.Millisecond,
				RxPackets: 1 << 40, TxPackets: 7, Flaps: 3,
			},
		},
		peers.PeerStatus{Address: netip.MustParseAddr("192.0.2.2"), ASN: 65001, State: peers.StateActive},
	)
	testutil.Eventually(t, "BFD in the status", func() bool {
		ps := getStatus(t, c).Peers
		return len(ps) == 2 && ps[0].Bfd != nil
	})
	ps := getStatus(t, c).Peers
	want := &apiv1.BFDStatus{
		State: "up", RemoteState: "init", Diag: "control detection time expired", Since: timestamppb.New(bfdSince),
		TxInterval: durationpb.New(100 * time.Millisecond), DetectTime: durationpb.New(300 * time.Millisecond),
		RxPackets: 1 << 40, TxPackets: 7, Flaps: 3,
	}
	if !proto.Equal(ps[0].Bfd, want) {
		t.Errorf("bfd = %v, want %v", ps[0].Bfd, want)
	}
	if ps[1].Address != "192.0.2.2" || ps[1].Bfd != nil {
		t.Errorf("peer without BFD: %v", ps[1])
	}

	watchCtx, stopWatch := context.WithCancel(ctx(t))
	defer stopWatch()
	stream, err := c.WatchStatus(watchCtx, &apiv1.WatchStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// Headers arrive once the server has subscribed.
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Drain(ctx(t), &apiv1.DrainRequest{Reason: "kernel upgrade"}); err != nil {
		t.Fatal(err)
	}
	got, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got.Transition.ToReason != "drained" || got.Transition.Detail != "kernel upgrade" || got.Transition.Announce {
		t.Fatalf("watch: got %v, want the drain with its reason", got)
	}
	st = getStatus(t, c)
	if !st.Drained || st.DrainReason != "kernel upgrade" || st.Vips[0].Announce || st.Vips[0].Reason != "drained" {
		t.Errorf("after drain: %v", st)
	}
	if e.Router.IsAnnounced(apitest.VIP) {
		t.Error("VIP still announced after drain")
	}
	saved, err := speaker.ReadState(e.Config.StateFile)
	if err != nil || !saved.Drained || saved.Reason != "kernel upgrade" {
		t.Errorf("state file = %+v, %v", saved, err)
	}
	if _, err := c.Undrain(ctx(t), &apiv1.UndrainRequest{Reason: "done"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "announced after undrain", func() bool { return e.Router.IsAnnounced(apitest.VIP) })
	if saved, _ := speaker.ReadState(e.Config.StateFile); saved.Drained {
		t.Error("state file still drained after undrain")
	}
}

func TestDrainSurvivesRestart(t *testing.T) {
	dir := apitest.Dir(t)
	cfg := apiserver.Config{Socket: filepath.Join(dir, "s.sock"), StateFile: filepath.Join(dir, "lib", "state.json")}
	e := apitest.Start(t, apitest.Options{API: cfg, Healthy: true})
	c := dialSocket(t, e)
	testutil.Eventually(t, "announced", func() bool { return e.Router.IsAnnounced(apitest.VIP) })
	if r, err := c.Drain(ctx(t), &apiv1.DrainRequest{Reason: "maintenance"}); err != nil || !r.Persisted {
		t.Fatalf("drain: %v %v", r, err)
	}
	e.Stop()
	if _, err := os.Stat(cfg.Socket); !os.IsNotExist(err) {
		t.Errorf("socket left behind after Stop: %v", err)
	}

	e2 := apitest.Start(t, apitest.Options{API: cfg, Healthy: true})
	c2 := dialSocket(t, e2)
	st := getStatus(t, c2)
	if !st.Drained || st.DrainReason != "maintenance" {
		t.Fatalf("after restart: drained=%v reason=%q, want drained by the state file", st.Drained, st.DrainReason)
	}
	// Healthy probes must not announce a drained node.
	testutil.Eventually(t, "several good probes", func() bool { return getStatus(t, c2).Health.OkRun >= 5 })
	if e2.Router.IsAnnounced(apitest.VIP) {
		t.Fatal("announced after restart although drained")
	}
	if trs := getStatus(t, c2).Transitions; len(trs) == 0 || !strings.Contains(trs[0].Detail, "maintenance") {
		t.Errorf("first transition should say the drain was restored: %v", trs)
	}
	if _, err := c2.Undrain(ctx(t), &apiv1.UndrainRequest{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "announced after undrain", func() bool { return e2.Router.IsAnnounced(apitest.VIP) })
}

func TestStaleSocket(t *testing.T) {
	dir := apitest.Dir(t)
	path := filepath.Join(dir, "v.sock")
	// A socket file nobody listens on: left by a crash.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	e := apitest.Start(t, apitest.Options{API: apiserver.Config{Socket: path}})
	getStatus(t, dialSocket(t, e))

	// A live socket is never taken over.
	other := apiserver.New(apiserver.Config{Socket: path}, e.Speaker, apiserver.Options{})
	if err := other.Start(); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second server on a live socket: err = %v", err)
	}
	getStatus(t, dialSocket(t, e))

	// Not a socket: refused, not removed.
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, nil, 0o600)
	if err := apiserver.New(apiserver.Config{Socket: plain}, e.Speaker, apiserver.Options{}).Start(); err == nil {
		t.Fatal("a regular file was accepted as the socket path")
	}
	if _, err := os.Stat(plain); err != nil {
		t.Fatal("regular file removed")
	}
}

func TestMissingSocketError(t *testing.T) {
	_, _, err := apiserver.Dial(apiserver.ClientConfig{Socket: "/nonexistent/vipcast.sock"})
	if err == nil || !strings.Contains(err.Error(), "no vipcast listening at /nonexistent/vipcast.sock: is it running? set --socket") {
		t.Fatalf("err = %v", err)
	}
}

func TestMTLS(t *testing.T) {
	dir := apitest.Dir(t)
	certs := apitest.NewCerts(t, dir)
	tcp := func(ro bool) apiserver.TCPConfig {
		return apiserver.TCPConfig{Listen: "127.0.0.1:0", CAFile: certs.CA, CertFile: certs.ServerCert, KeyFile: certs.ServerKey, ReadOnly: ro}
	}
	e := apitest.Start(t, apitest.Options{API: apiserver.Config{Socket: filepath.Join(dir, "a.sock"), TCP: tcp(false)}, Healthy: true})
	addr := e.Server.Addr("tcp").String()

	conn, c, err := apiserver.Dial(apiserver.ClientConfig{Addr: addr, CAFile: certs.CA, CertFile: certs.ClientCert, KeyFile: certs.ClientKey})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if st := getStatus(t, c); st.Version != "test" {
		t.Errorf("status over mTLS: %v", st)
	}
	if _, err := c.Drain(ctx(t), &apiv1.DrainRequest{Reason: "via tcp"}); err != nil {
		t.Fatalf("drain over a read-write TCP listener: %v", err)
	}
	if _, err := c.Undrain(ctx(t), &apiv1.UndrainRequest{}); err != nil {
		t.Fatal(err)
	}

	// Without a client certificate: the handshake fails.
	noCert, err := grpc.NewClient("dns:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(clientTLSNoCert(t, certs.CA))))
	if err != nil {
		t.Fatal(err)
	}
	defer noCert.Close()
	short, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := apiv1.NewVipcastServiceClient(noCert).GetStatus(short, &apiv1.GetStatusRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("client without certificate: err = %v, want Unavailable (handshake refused)", err)
	}
	// With a certificate from an untrusted CA: refused too.
	rconn, rc, err := apiserver.Dial(apiserver.ClientConfig{Addr: addr, CAFile: certs.CA, CertFile: certs.RogueCert, KeyFile: certs.RogueKey})
	if err != nil {
		t.Fatal(err)
	}
	defer rconn.Close()
	if _, err := rc.GetStatus(short, &apiv1.GetStatusRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("client with an untrusted certificate: err = %v, want Unavailable", err)
	}
	// Plain text to the TLS port: refused.
	plain, _ := grpc.NewClient("dns:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer plain.Close()
	if _, err := apiv1.NewVipcastServiceClient(plain).GetStatus(short, &apiv1.GetStatusRequest{}); err == nil {
		t.Error("plain-text client accepted on the mTLS listener")
	}
}

func TestReadOnlyListener(t *testing.T) {
	dir := apitest.Dir(t)
	certs := apitest.NewCerts(t, dir)
	e := apitest.Start(t, apitest.Options{API: apiserver.Config{
		Socket: filepath.Join(dir, "a.sock"), SocketReadOnly: false,
		TCP: apiserver.TCPConfig{Listen: "127.0.0.1:0", CAFile: certs.CA, CertFile: certs.ServerCert, KeyFile: certs.ServerKey, ReadOnly: true},
	}})
	conn, c, err := apiserver.Dial(apiserver.ClientConfig{Addr: e.Server.Addr("tcp").String(), CAFile: certs.CA, CertFile: certs.ClientCert, KeyFile: certs.ClientKey})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	getStatus(t, c) // reading is allowed
	_, err = c.Drain(ctx(t), &apiv1.DrainRequest{})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "read-only (api.tcp.readOnly: true)") {
		t.Fatalf("drain on read-only listener: %v", err)
	}
	if _, err := c.Undrain(ctx(t), &apiv1.UndrainRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("undrain on read-only listener: %v", err)
	}
	if getStatus(t, c).Drained {
		t.Fatal("drained through a read-only listener")
	}
	// The socket is not read-only.
	if _, err := dialSocket(t, e).Drain(ctx(t), &apiv1.DrainRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestHealth(t *testing.T) {
	dir := apitest.Dir(t)
	e := apitest.Start(t, apitest.Options{API: apiserver.Config{Socket: filepath.Join(dir, "a.sock"), HealthListen: "127.0.0.1:0"}})
	hconn, err := grpc.NewClient("dns:///"+e.Server.Addr("health").String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer hconn.Close()
	hc := healthpb.NewHealthClient(hconn)
	check := func() healthpb.HealthCheckResponse_ServingStatus {
		r, err := hc.Check(ctx(t), &healthpb.HealthCheckRequest{})
		if err != nil {
			return healthpb.HealthCheckResponse_UNKNOWN
		}
		return r.Status
	}
	testutil.Eventually(t, "SERVING once Run started", func() bool { return check() == healthpb.HealthCheckResponse_SERVING })
	// The health listener serves health only, never the control API.
	_, err = apiv1.NewVipcastServiceClient(hconn).Drain(ctx(t), &apiv1.DrainRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("Drain on the health listener: %v, want Unimplemented", err)
	}
	// The socket serves health too, per service.
	sc, _ := grpc.NewClient("unix://"+e.Config.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer sc.Close()
	r, err := healthpb.NewHealthClient(sc).Check(ctx(t), &healthpb.HealthCheckRequest{Service: "vipcast.v1.VipcastService"})
	if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("service health on socket: %v %v", r, err)
	}

	e.Speaker.Shutdown()
	testutil.Eventually(t, "NOT_SERVING while shutting down", func() bool { return check() == healthpb.HealthCheckResponse_NOT_SERVING })
	// Still shutting down (drain period): status is still readable.
	select {
	case <-e.Speaker.Done():
	default:
		if st := getStatus(t, dialSocket(t, e)); st.Vips[0].Reason != "shutting-down" {
			t.Errorf("reason during shutdown = %q", st.Vips[0].Reason)
		}
	}
	if err := e.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestWatchSlowSubscriberDoesNotBlock(t *testing.T) {
	e := apitest.Start(t, apitest.Options{})
	sub := e.Speaker.Subscribe(ctx(t)) // never read
	for i := range 100 {
		if err := e.Speaker.SetDrained(ctx(t), i%2 == 0); err != nil {
			t.Fatal(err)
		}
	}
	if sub.Dropped() == 0 {
		t.Error("nothing dropped for a subscriber that never reads")
	}
	if got := len(sub.C); got != 64 {
		t.Errorf("buffered = %d, want 64", got)
	}
}

func clientTLSNoCert(t *testing.T, caFile string) *tls.Config {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
}

// A reason is at most speaker.MaxDrainReason bytes: a 3 MiB one broke
// every later status call (gRPC's 4 MB limit) and the restart after it.
func TestDrainReasonTooLong(t *testing.T) {
	e := apitest.Start(t, apitest.Options{Healthy: true})
	c := dialSocket(t, e)
	for _, n := range []int{speaker.MaxDrainReason + 1, 3 << 20} {
		_, err := c.Drain(ctx(t), &apiv1.DrainRequest{Reason: strings.Repeat("x", n)})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "longer than 256; shorten it") {
			t.Errorf("drain with a %d-byte reason: %v; want InvalidArgument naming the limit", n, err)
		}
	}
	if st := getStatus(t, c); st.Drained {
		t.Fatal("drained by a refused request")
	}
	if saved, err := speaker.ReadState(e.Config.StateFile); err != nil || saved.Drained {
		t.Errorf("state file after refused drains: %+v, %v", saved, err)
	}
	if _, err := c.Drain(ctx(t), &apiv1.DrainRequest{Reason: strings.Repeat("x", speaker.MaxDrainReason)}); err != nil {
		t.Errorf("drain with a reason at the limit: %v", err)
	}
}

// fakeSpeaker stands in for *speaker.Speaker through apiserver.Speaker.
type fakeSpeaker struct {
	st      speaker.Status
	started chan struct{}
}

func (f *fakeSpeaker) Status() speaker.Status { return f.st }
func (f *fakeSpeaker) SetDrainedReason(context.Context, bool, string) error {
	return nil
}
func (f *fakeSpeaker) Subscribe(context.Context) *speaker.Subscription { return nil }
func (f *fakeSpeaker) Started() <-chan struct{}                        { return f.started }
func (f *fakeSpeaker) Stopping() <-chan struct{}                       { return nil }

// The thresholds GetStatus reports are the speaker's, from its Status:
// the API keeps no copy of them.
func TestStatusThresholdsFromSpeaker(t *testing.T) {
	f := &fakeSpeaker{st: speaker.Status{Rise: 7, Fall: 5, TimeoutFall: 9, OKRun: 4}, started: make(chan struct{})}
	cfg := apiserver.Config{Socket: filepath.Join(apitest.Dir(t), "s.sock")}
	srv := apiserver.New(cfg, f, apiserver.Options{})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop(context.Background()) })
	conn, c, err := apiserver.Dial(apiserver.ClientConfig{Socket: cfg.Socket})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h := getStatus(t, c).GetHealth()
	want := &apiv1.HealthStatus{Rise: 7, Fall: 5, TimeoutFall: 9, OkRun: 4}
	if !proto.Equal(h, want) {
		t.Errorf("health = %v, want %v", h, want)
	}
}
