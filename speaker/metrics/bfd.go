package metrics

import (
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vipcast/vipcast/peers"
)

// bfdStates are the BFD session states exported by
// vipcast_bfd_session_state (RFC 5880 section 4.1), and "unknown" for
// anything else.
var bfdStates = []string{"admindown", "down", "init", "up", "unknown"}

// bfdCollector exports the BFD sessions of the latest peer snapshot. The
// packet and flap counts are cumulative in the BFD session, so they are
// exposed as counters read from the snapshot at scrape time rather than
// mirrored into gauges; a peer without BFD (or gone) has no series.
type bfdCollector struct {
	state, packets, flaps *prometheus.Desc

	mu       sync.Mutex
	sessions map[string]peers.BFDStatus // by peer address
}

func newBFDCollector() *bfdCollector {
	return &bfdCollector{
		state: prometheus.NewDesc("vipcast_bfd_session_state",
			"1 for the BFD session's current state, 0 for the others; absent when the peer has no BFD.",
			[]string{"peer", "state"}, nil),
		packets: prometheus.NewDesc("vipcast_bfd_packets_total",
			"BFD control packets of the session, by direction (rx, tx).",
			[]string{"peer", "direction"}, nil),
		flaps: prometheus.NewDesc("vipcast_bfd_flaps_total",
			"Times the BFD session went down from up.",
			[]string{"peer"}, nil),
		sessions: map[string]peers.BFDStatus{},
	}
}

// set replaces the snapshot with the BFD sessions of ps.
func (c *bfdCollector) set(ps []peers.PeerStatus) {
	now := make(map[string]peers.BFDStatus, len(ps))
	for _, p := range ps {
		if p.BFD != nil {
			now[p.Address.String()] = *p.BFD
		}
	}
	c.mu.Lock()
	c.sessions = now
	c.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (c *bfdCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.state
	ch <- c.packets
	ch <- c.flaps
}

// Collect implements prometheus.Collector.
func (c *bfdCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	sessions := c.sessions
	c.mu.Unlock()
	addrs := make([]string, 0, len(sessions))
	for a := range sessions {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	for _, addr := range addrs {
		b := sessions[addr]
		cur := bfdStateLabel(b.State)
		for _, s := range bfdStates {
			ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, b2f(s == cur), addr, s)
		}
		ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(b.RxPackets), addr, "rx")
		ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(b.TxPackets), addr, "tx")
		ch <- prometheus.MustNewConstMetric(c.flaps, prometheus.CounterValue, float64(b.Flaps), addr)
	}
}

// bfdStateLabel maps a BFD state (peers.BFDStatus: "up", "admindown", ...) to its label.
func bfdStateLabel(s string) string {
	for _, k := range bfdStates {
		if s == k {
			return s
		}
	}
	return "unknown"
}
