package apiserver_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/vipcast/vipcast/speaker/apiserver"

	"github.com/vipcast/vipcast/peers/testutil"
	"github.com/vipcast/vipcast/speaker"
	apiv1 "github.com/vipcast/vipcast/speaker/api/v1"
	"github.com/vipcast/vipcast/speaker/apiserver/apitest"
)

// FuzzDrainReason sends any reason through the real API: one within the
// limit is recorded exactly (status and state file), a longer one is
// InvalidArgument and changes nothing.
func FuzzDrainReason(f *testing.F) {
	for _, s := range []string{"kernel upgrade", "", strings.Repeat("x", speaker.MaxDrainReason), strings.Repeat("x", speaker.MaxDrainReason+1), "x" + strings.Repeat("é", 200), "\x00\n\x1b[2J", "ticket #42: ✓"} {
		f.Add(s)
	}
	e := apitest.Start(f, apitest.Options{Healthy: true})
	c := dialSocket(f, e)
	f.Fuzz(func(t *testing.T, reason string) {
		if !utf8.ValidString(reason) {
			return // not a proto3 string: the client refuses to send it
		}
		_, err := c.Drain(ctx(t), &apiv1.DrainRequest{Reason: reason})
		if len(reason) > speaker.MaxDrainReason {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("%d-byte reason: %v, want InvalidArgument", len(reason), err)
			}
			if st := getStatus(t, c); st.Drained {
				t.Fatal("drained by a refused request")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		// Drain returns once the speaker took the request; the status
		// says drained just after: poll, here and after the undrain.
		var st *apiv1.GetStatusResponse
		testutil.Eventually(t, "drained in the status", func() bool { st = getStatus(t, c); return st.Drained })
		saved, rerr := speaker.ReadState(e.Config.StateFile)
		if st.DrainReason != reason || rerr != nil || saved.Reason != reason {
			t.Fatalf("reason %q: status %v %q, state file %q %v", reason, st.Drained, st.DrainReason, saved.Reason, rerr)
		}
		if _, err := c.Undrain(ctx(t), &apiv1.UndrainRequest{Reason: reason}); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, "undrained in the status", func() bool { return !getStatus(t, c).Drained })
	})
}

// rawCodec sends and receives message bytes as they are, so a fuzz target
// can put any encoding on the wire, valid protobuf or not.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// FuzzRawRequest sends any bytes as the request message of every method on
// the socket and the health listener: request fields the generated client
// would never produce (a reason with invalid UTF-8 or past its length, a
// health service name of any size, unknown fields, truncated varints). The
// server must answer each call with a status, never crash or hang, and keep
// serving; a drain it took must carry a valid reason within the limit.
func FuzzRawRequest(f *testing.F) {
	for _, s := range [][]byte{
		nil,
		{0x0a, 0x0e}, // reason: length 14, truncated
		append([]byte{0x0a, 0x03}, "\xff\xfe\xfd"...),                      // reason: invalid UTF-8
		append([]byte{0x0a, 0x81, 0x02}, strings.Repeat("x", 257)...),      // reason: 257 bytes
		append([]byte{0x0a, 0x80, 0x02}, strings.Repeat("x", 256)...),      // reason: 256 bytes
		{0x08, 0x96, 0x01, 0x12, 0x00},                                     // unknown fields
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // bad tag varint
		append([]byte{0x0a, 0x05}, "kube-"...),                             // health service "kube-"
	} {
		f.Add(s)
	}
	dir := apitest.Dir(f)
	e := apitest.Start(f, apitest.Options{Healthy: true, API: apiserver.Config{
		Socket: filepath.Join(dir, "vipcast.sock"), StateFile: filepath.Join(dir, "state.json"), HealthListen: "127.0.0.1:0"}})
	sock, err := grpc.NewClient("unix://"+e.Config.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { sock.Close() })
	health, err := grpc.NewClient("dns:///"+e.Server.Addr("health").String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { health.Close() })
	c := apiv1.NewVipcastServiceClient(sock)
	calls := []struct {
		conn   *grpc.ClientConn
		method string
		stream bool
	}{
		{sock, apiv1.VipcastService_GetStatus_FullMethodName, false},
		{sock, apiv1.VipcastService_Drain_FullMethodName, false},
		{sock, apiv1.VipcastService_Undrain_FullMethodName, false},
		{sock, apiv1.VipcastService_WatchStatus_FullMethodName, true},
		{sock, "/grpc.health.v1.Health/Check", false},
		{health, "/grpc.health.v1.Health/Check", false},
		{health, "/grpc.health.v1.Health/Watch", true},
		{health, apiv1.VipcastService_Drain_FullMethodName, false},
	}
	f.Fuzz(func(t *testing.T, req []byte) {
		for _, call := range calls {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			var err error
			if call.stream {
				var s grpc.ClientStream
				s, err = call.conn.NewStream(cctx, &grpc.StreamDesc{ServerStreams: true}, call.method, grpc.ForceCodec(rawCodec{}))
				if err == nil {
					if err = s.SendMsg(&req); err == nil {
						_ = s.CloseSend()
						// Subscribed (headers sent) or refused; WatchStatus
						// sends messages only on transitions.
						if _, err = s.Header(); err == nil && call.conn == health {
							var resp []byte
							err = s.RecvMsg(&resp) // the current status
						}
					}
				}
			} else {
				var resp []byte
				err = call.conn.Invoke(cctx, call.method, &req, &resp, grpc.ForceCodec(rawCodec{}))
			}
			cancel()
			switch status.Code(err) {
			case codes.Unavailable, codes.DeadlineExceeded, codes.Unknown:
				t.Fatalf("%s with request %x: %v", call.method, req, err)
			}
		}
		st := getStatus(t, c)
		if st.Drained {
			if len(st.DrainReason) > speaker.MaxDrainReason || !utf8.ValidString(st.DrainReason) {
				t.Fatalf("drained with reason %q (%d bytes) from request %x", st.DrainReason, len(st.DrainReason), req)
			}
			if _, err := c.Undrain(ctx(t), &apiv1.UndrainRequest{}); err != nil {
				t.Fatal(err)
			}
		}
	})
}
