package apiserver_test

import (
	"bytes"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/vipcast/vipcast/peers/testutil"
	apiv1 "github.com/vipcast/vipcast/speaker/api/v1"
	"github.com/vipcast/vipcast/speaker/apiserver"
	"github.com/vipcast/vipcast/speaker/apiserver/apitest"
)

// floodConn is a hostile client with no goroutine of its own: it opens an
// HTTP/2 connection and starts streams calls of path without ever reading,
// so every goroutine and byte the test sees grow is the server's.
func floodConn(t *testing.T, d net.Dialer, network, addr, path string, streams int) net.Conn {
	t.Helper()
	c, err := d.Dial(network, addr)
	if err != nil {
		return nil // refused outright: fine
	}
	t.Cleanup(func() { c.Close() })
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", path}, {":authority", "vipcast"},
		{"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		return c
	}
	fr := http2.NewFramer(c, c)
	if fr.WriteSettings() != nil {
		return c
	}
	for i := range streams {
		id := uint32(2*i + 1)
		if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true}) != nil {
			return c
		}
		// An empty request message: no flag, length 0.
		if fr.WriteData(id, true, []byte{0, 0, 0, 0, 0}) != nil {
			return c
		}
	}
	return c
}

// gauge reads one series of the server's collector.
func gauge(t *testing.T, s *apiserver.Server, name string, labels map[string]string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestAPIFloodBounded floods the socket and the health listener with
// connections, each opening as many watch streams as HTTP/2 lets it, as
// the 20,000-stream test did (264 MiB, 20,626 goroutines). The
// server must refuse what is above its limits, stay within a fixed
// budget of goroutines and memory, and keep serving the other clients: a
// GetStatus on the socket and the kubelet's Check from the node itself.
func TestAPIFloodBounded(t *testing.T) {
	dir := apitest.Dir(t)
	e := apitest.Start(t, apitest.Options{API: apiserver.Config{Socket: filepath.Join(dir, "a.sock"), HealthListen: "127.0.0.1:0"}, Healthy: true})
	lim := apiserver.DefaultLimits()
	healthAddr := e.Server.Addr("health").String()
	g0, h0 := runtime.NumGoroutine(), heapInuse()

	// The socket first, with fewer connections than its limit: the streams
	// are what cost (the 20,000 watches), and the operator's own
	// client must find a free connection.
	const conns, streams = 150, 40
	socketConns := lim.MaxConns - 8
	for range socketConns {
		floodConn(t, net.Dialer{}, "unix", e.Config.Socket, "/vipcast.v1.VipcastService/WatchStatus", streams)
	}
	// Ten other hosts (127.0.0.2-11 reach 127.0.0.1 on lo), each trying
	// more than its quota.
	for i := range conns {
		src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%10))}
		floodConn(t, net.Dialer{LocalAddr: src}, "tcp", healthAddr, "/grpc.health.v1.Health/Watch", streams)
	}
	// Other clients are served while the flood holds its connections.
	c := dialSocket(t, e)
	testutil.Eventually(t, "WatchStatus limit reached", func() bool {
		return gauge(t, e.Server, "vipcast_api_watch_streams", map[string]string{"kind": "status"}) == float64(lim.MaxWatches)
	})
	if st := getStatus(t, c); len(st.Vips) != 1 {
		t.Errorf("GetStatus during the flood: %v", st)
	}
	w, err := c.WatchStatus(ctx(t), &apiv1.WatchStatusRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("WatchStatus above the limit: %v, want ResourceExhausted", err)
	}
	// Then more connections than the socket's limit: refused at once.
	for range conns - socketConns {
		floodConn(t, net.Dialer{}, "unix", e.Config.Socket, "/vipcast.v1.VipcastService/WatchStatus", streams)
	}
	testutil.Eventually(t, "watch limits reached", func() bool {
		return gauge(t, e.Server, "vipcast_api_watch_streams", map[string]string{"kind": "status"}) == float64(lim.MaxWatches) &&
			gauge(t, e.Server, "vipcast_api_watch_streams", map[string]string{"kind": "health"}) == float64(lim.MaxWatches)
	})
	for _, l := range []string{"socket", "health"} {
		if n := gauge(t, e.Server, "vipcast_api_connections", map[string]string{"listener": l}); n > float64(lim.MaxConns) {
			t.Errorf("%s: %v connections open, limit %d", l, n, lim.MaxConns)
		}
		if n := gauge(t, e.Server, "vipcast_api_rejected_total", map[string]string{"listener": l, "kind": "connection"}); n == 0 {
			t.Errorf("%s: no connection refused", l)
		}
	}
	if n := gauge(t, e.Server, "vipcast_api_rejected_total", map[string]string{"listener": "*", "kind": "watch"}); n == 0 {
		t.Error("no WatchStatus refused")
	}

	// The already connected operator is still served.
	if st := getStatus(t, c); len(st.Vips) != 1 {
		t.Errorf("GetStatus during the flood: %v", st)
	}
	hconn, err := grpc.NewClient("dns:///"+healthAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer hconn.Close()
	r, err := healthpb.NewHealthClient(hconn).Check(ctx(t), &healthpb.HealthCheckRequest{})
	if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("kubelet-like Check from the node during the flood: %v %v", r, err)
	}

	// Budget: per connection a reader, a writer and a keepalive goroutine,
	// per watch one handler, for 2 listeners (2x64x3 + 2x32 + the
	// test's clients, about 500); the unbounded server needed
	// one goroutine per stream (12,000 here) and the memory to match.
	g1, h1 := runtime.NumGoroutine(), heapInuse()
	const maxGoroutines, maxHeap = 800, 48 << 20
	t.Logf("flood of %d connections x %d streams on 2 listeners: goroutines %d -> %d, heap in use %.1f -> %.1f MiB",
		2*conns, streams, g0, g1, float64(h0)/(1<<20), float64(h1)/(1<<20))
	if g1-g0 > maxGoroutines {
		t.Errorf("goroutines grew by %d, budget %d", g1-g0, maxGoroutines)
	}
	if h1 > h0 && h1-h0 > maxHeap {
		t.Errorf("heap grew by %s, budget %s", fmt.Sprint((h1-h0)>>20, " MiB"), fmt.Sprint(maxHeap>>20, " MiB"))
	}
}
