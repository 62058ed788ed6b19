package metrics_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vipcast/vipcast/peers"
	"github.com/vipcast/vipcast/peers/testutil"
	"github.com/vipcast/vipcast/speaker"
	"github.com/vipcast/vipcast/speaker/apiserver"
	"github.com/vipcast/vipcast/speaker/apiserver/apitest"
	"github.com/vipcast/vipcast/speaker/metrics"
)

func scrape(t *testing.T, url string) ([]byte, map[string]*dto.MetricFamily) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, body)
	}
	return body, fams
}

// value finds the sample whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestMetricsScrape(t *testing.T) {
	m := metrics.New("test", []netip.Prefix{apitest.VIP})
	srv, err := m.Start("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Stop(ctx)
	})
	url := "http://" + srv.Addr().String() + "/metrics"
	vip := map[string]string{"vip": apitest.VIP.String()}

	_, fams := scrape(t, url)
	if v, ok := value(fams, "vipcast_vip_advertised", vip); !ok || v != 0 {
		t.Fatalf("before the speaker runs: advertised = %v, %v; want 0", v, ok)
	}

	dir := apitest.Dir(t)
	e := apitest.Start(t, apitest.Options{API: apiserver.Config{Socket: filepath.Join(dir, "s.sock")}, Observer: m, Healthy: true})
	testutil.Eventually(t, "advertised in the metrics", func() bool {
		_, fams := scrape(t, url)
		v, _ := value(fams, "vipcast_vip_advertised", vip)
		p, _ := value(fams, "vipcast_bgp_peer_state", map[string]string{"peer": "192.0.2.1", "state": "established"})
		return v == 1 && p == 1
	})
	e.Prober.OK.Store(false)
	testutil.Eventually(t, "withdrawn in the metrics", func() bool {
		_, fams := scrape(t, url)
		v, _ := value(fams, "vipcast_vip_advertised", vip)
		return v == 0
	})
	// BFD on the first peer, off on a second one.
	e.Router.SetPeers(
		peers.PeerStatus{
			Address: netip.MustParseAddr("192.0.2.1"), ASN: 65000, State: peers.StateEstablished,
			Since: time.Now().Add(-time.Minute), PrefixesSent: 1,
			BFD: &peers.BFDStatus{State: "up", RemoteState: "up", TxInterval: 100 * time.Millisecond, DetectTime: 300 * time.Millisecond,
				RxPackets: 40, TxPackets: 41, Flaps: 2},
			PrefixLimitHits: 3,
		},
		peers.PeerStatus{Address: netip.MustParseAddr("192.0.2.2"), ASN: 65001, State: peers.StateActive},
	)
	bfdPeer := map[string]string{"peer": "192.0.2.1"}
	testutil.Eventually(t, "BFD in the metrics", func() bool {
		_, fams := scrape(t, url)
		_, ok := value(fams, "vipcast_bfd_flaps_total", bfdPeer)
		return ok
	})
	body, fams := scrape(t, url)
	checks := []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"vipcast_health_checks_total", map[string]string{"result": "ok", "reason_class": "ok"}, 3},
		{"vipcast_health_checks_total", map[string]string{"result": "fail", "reason_class": "refused"}, 2},
		{"vipcast_health_check_duration_seconds", nil, 5},
		{"vipcast_transitions_total", map[string]string{"reason": "healthy"}, 1},
		{"vipcast_transitions_total", map[string]string{"reason": "unhealthy"}, 1},
		{"vipcast_bgp_peer_state", map[string]string{"peer": "192.0.2.1", "state": "established"}, 1},
		{"vipcast_last_transition_timestamp_seconds", nil, float64(time.Now().Add(-time.Minute).Unix())},
		{"vipcast_build_info", map[string]string{"version": "test"}, 1},
	}
	for _, c := range checks {
		if v, ok := value(fams, c.name, c.labels); !ok || v < c.min {
			t.Errorf("%s%v = %v (found %v), want >= %v", c.name, c.labels, v, ok, c.min)
		}
	}
	if v, _ := value(fams, "vipcast_bgp_peer_state", map[string]string{"peer": "192.0.2.1", "state": "idle"}); v != 0 {
		t.Errorf("idle state gauge = %v, want 0", v)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"vipcast_bfd_session_state", map[string]string{"peer": "192.0.2.1", "state": "up"}, 1},
		{"vipcast_bfd_session_state", map[string]string{"peer": "192.0.2.1", "state": "down"}, 0},
		{"vipcast_bfd_session_state", map[string]string{"peer": "192.0.2.1", "state": "admindown"}, 0},
		{"vipcast_bfd_session_state", map[string]string{"peer": "192.0.2.1", "state": "init"}, 0},
		{"vipcast_bfd_session_state", map[string]string{"peer": "192.0.2.1", "state": "unknown"}, 0},
		{"vipcast_bfd_packets_total", map[string]string{"peer": "192.0.2.1", "direction": "rx"}, 40},
		{"vipcast_bfd_packets_total", map[string]string{"peer": "192.0.2.1", "direction": "tx"}, 41},
		{"vipcast_bfd_flaps_total", bfdPeer, 2},
		{"vipcast_bgp_prefix_limit_hits_total", bfdPeer, 3},
		{"vipcast_bgp_prefix_limit_hits_total", map[string]string{"peer": "192.0.2.2"}, 0},
	} {
		if v, ok := value(fams, c.name, c.labels); !ok || v != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	for name, typ := range map[string]dto.MetricType{
		"vipcast_bfd_session_state":           dto.MetricType_GAUGE,
		"vipcast_bfd_packets_total":           dto.MetricType_COUNTER,
		"vipcast_bfd_flaps_total":             dto.MetricType_COUNTER,
		"vipcast_bgp_prefix_limit_hits_total": dto.MetricType_COUNTER,
	} {
		if f := fams[name]; f == nil || f.GetType() != typ {
			t.Errorf("%s: family %v, want type %v", name, f, typ)
		}
	}
	for _, name := range []string{"vipcast_bfd_session_state", "vipcast_bfd_packets_total", "vipcast_bfd_flaps_total"} {
		if _, ok := value(fams, name, map[string]string{"peer": "192.0.2.2"}); ok {
			t.Errorf("%s has a series for 192.0.2.2, which has no BFD", name)
		}
	}

	// BFD turned off: its series go away.
	e.Router.SetPeers(peers.PeerStatus{Address: netip.MustParseAddr("192.0.2.1"), ASN: 65000, State: peers.StateEstablished})
	testutil.Eventually(t, "BFD gone from the metrics", func() bool {
		_, fams := scrape(t, url)
		_, ok := fams["vipcast_bfd_session_state"]
		return !ok
	})

	// promtool's linter, if make generate installed it.
	promtool, _ := filepath.Abs("../../bin/promtool")
	if _, err := os.Stat(promtool); err != nil {
		t.Logf("skipping promtool check metrics: %v", err)
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestReasonClass(t *testing.T) {
	for _, c := range []struct {
		r    speaker.ProbeResult
		want string
	}{
		{speaker.ProbeResult{OK: true, Code: 200, Reason: "ok"}, "ok"},
		{speaker.ProbeResult{Code: 500, Reason: "HTTP 500: etcd failed"}, "http_5xx"},
		{speaker.ProbeResult{Code: 403, Reason: "HTTP 403"}, "http_4xx"},
		{speaker.ProbeResult{Reason: "timeout after 80ms"}, "timeout"},
		{speaker.ProbeResult{Reason: "connection refused"}, "refused"},
		{speaker.ProbeResult{Reason: "tls: certificate signed by unknown authority"}, "tls"},
		{speaker.ProbeResult{Reason: "something new"}, "other"},
	} {
		if got := metrics.ReasonClass(c.r); got != c.want {
			t.Errorf("ReasonClass(%q) = %q, want %q", c.r.Reason, got, c.want)
		}
	}
}

func TestNilMetricsIsSafe(t *testing.T) {
	var m *metrics.Metrics
	m.OnProbe(speaker.ProbeResult{})
	m.OnTransition(speaker.Transition{}, nil)
	m.OnPeers(nil)
}

// vipcast_drained follows the drain flag itself, not the reason: a drained
// node in its graceful-shutdown wait, or unhealthy, still reads 1.
func TestMetricsDrained(t *testing.T) {
	m := metrics.New("test", []netip.Prefix{apitest.VIP})
	srv, err := m.Start("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Stop(ctx)
	})
	url := "http://" + srv.Addr().String() + "/metrics"
	get := func() float64 {
		_, fams := scrape(t, url)
		v, ok := value(fams, "vipcast_drained", nil)
		if !ok {
			t.Fatal("no vipcast_drained")
		}
		return v
	}
	if v := get(); v != 0 {
		t.Errorf("before ObserveDrained: %v, want 0", v)
	}
	var drained atomic.Bool
	m.ObserveDrained(drained.Load)
	drained.Store(true)
	m.OnTransition(speaker.Transition{At: time.Now(), From: speaker.ReasonDrained, To: speaker.ReasonGracefulShutdown}, nil)
	if v := get(); v != 1 {
		t.Errorf("drained, in the graceful-shutdown wait: %v, want 1", v)
	}
	drained.Store(false)
	if v := get(); v != 0 {
		t.Errorf("undrained: %v, want 0", v)
	}
}

// A VIP put back on lo counts as restored and is no change of decision; one
// that could not be put back counts as failed, with its withdraw.
func TestMetricsLoopbackRemovals(t *testing.T) {
	m := metrics.New("test", []netip.Prefix{apitest.VIP})
	gather := func() map[string]*dto.MetricFamily {
		fs, err := m.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*dto.MetricFamily{}
		for _, f := range fs {
			out[f.GetName()] = f
		}
		return out
	}
	vip := apitest.VIP.String()
	lo := []netip.Prefix{apitest.VIP}
	now := time.Now()
	m.OnTransition(speaker.Transition{At: now, Announce: true, From: speaker.ReasonHealthy, To: speaker.ReasonHealthy, Loopback: lo}, nil)
	m.OnTransition(speaker.Transition{At: now, Announce: true, From: speaker.ReasonHealthy, To: speaker.ReasonHealthy, Loopback: lo}, nil)
	m.OnTransition(speaker.Transition{At: now, From: speaker.ReasonHealthy, To: speaker.ReasonLoopbackFailed, Loopback: lo}, nil)
	fams := gather()
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"vipcast_vip_loopback_removals_total", map[string]string{"vip": vip, "result": "restored"}, 2},
		{"vipcast_vip_loopback_removals_total", map[string]string{"vip": vip, "result": "failed"}, 1},
		{"vipcast_transitions_total", map[string]string{"reason": "loopback-failed"}, 1},
	} {
		if v, ok := value(fams, c.name, c.labels); !ok || v != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	if _, ok := value(fams, "vipcast_transitions_total", map[string]string{"reason": "healthy"}); ok {
		t.Errorf("a VIP put back on lo counted as a transition to healthy")
	}
}
