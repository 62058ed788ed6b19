package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vipcast/vipcast/peers"
)

// prefixLimitCollector exports each peer's count of sessions closed by the
// prefix limit, read from the latest peer snapshot like the BFD counters.
type prefixLimitCollector struct {
	desc *prometheus.Desc

	mu   sync.Mutex
	hits map[string]uint64 // by peer address
}

func newPrefixLimitCollector() *prefixLimitCollector {
	return &prefixLimitCollector{
		desc: prometheus.NewDesc("vipcast_bgp_prefix_limit_hits_total",
			"BGP sessions closed because the router sent more routes than peers[].maxPrefixes (vipcast imports none).",
			[]string{"peer"}, nil),
		hits: map[string]uint64{},
	}
}

func (c *prefixLimitCollector) set(ps []peers.PeerStatus) {
	now := make(map[string]uint64, len(ps))
	for _, p := range ps {
		now[p.Address.String()] = p.PrefixLimitHits
	}
	c.mu.Lock()
	c.hits = now
	c.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (c *prefixLimitCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *prefixLimitCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for peer, n := range c.hits {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), peer)
	}
}
