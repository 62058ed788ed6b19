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
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

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
	apitest.Eventually(t, "advertised in the metrics", func() bool {
		_, fams := scrape(t, url)
		v, _ := value(fams, "vipcast_vip_advertised", vip)
		p, _ := value(fams, "vipcast_bgp_peer_state", map[string]string{"peer": "192.0.2.1", "state": "established"})
		return v == 1 && p == 1
	})
	e.Prober.OK.Store(false)
	apitest.Eventually(t, "withdrawn in the metrics", func() bool {
		_, fams := scrape(t, url)
		v, _ := value(fams, "vipcast_vip_advertised", vip)
		return v == 0
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
