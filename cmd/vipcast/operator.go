package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/netip"
	"regexp"
	"time"

	"github.com/vipcast/vipcast/speaker"
	"github.com/vipcast/vipcast/speaker/apiserver"
	"github.com/vipcast/vipcast/speaker/metrics"
)

// operator is the operator surface around the speaker: metrics (an
// observer of the loop) and the API.
type operator struct {
	cfg     fileConfig
	log     *slog.Logger
	metrics *metrics.Metrics
}

func newOperator(cfg fileConfig, vips []netip.Prefix, log *slog.Logger) *operator {
	return &operator{cfg: cfg, log: log, metrics: metrics.New(version, vips)}
}

// observer is what the speaker's loop reports to.
func (o *operator) observer() speaker.Observer { return speaker.Observers{o.metrics} }

// start opens the metrics and API listeners; stop closes them after the
// speaker has returned.
func (o *operator) start(sp *speaker.Speaker) (stop func(), err error) {
	var stops []func(context.Context)
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i](ctx)
		}
	}
	o.metrics.ObserveDrained(func() bool { return sp.Status().Drained })
	if addr := o.cfg.Metrics.Listen; addr != "" {
		ms, err := o.metrics.Start(addr, o.log)
		if err != nil {
			stop()
			return nil, err
		}
		stops = append(stops, ms.Stop)
	}
	api := apiserver.New(o.cfg.API, sp, apiserver.Options{
		Version: version, ConfigDigest: configDigest(o.cfg), Log: o.log,
	})
	o.metrics.Registry().MustRegister(api.Collector())
	if err := api.Start(); err != nil {
		stop()
		return nil, err
	}
	stops = append(stops, api.Stop)
	return stop, nil
}

// secretKey matches settings that would hold a secret inline. Today every
// secret comes from a file and only its path is in the configuration; the
// digest covers the path, never the file.
var secretKey = regexp.MustCompile(`(?i)(password|token|secret|key)$`)

// configDigest is "sha256:<hex>" of the effective configuration (defaults,
// file, environment and flags merged) with inline secrets left out. Two
// nodes with the same digest run the same configuration.
func configDigest(cfg fileConfig) string {
	b, err := json.Marshal(cfg)
	if err != nil {
		return ""
	}
	var tree any
	if err := json.Unmarshal(b, &tree); err != nil {
		return ""
	}
	b, _ = json.Marshal(redact(tree)) // map keys are sorted: canonical
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func redact(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			if secretKey.MatchString(k) {
				delete(t, k)
				continue
			}
			t[k] = redact(x)
		}
	case []any:
		for i, x := range t {
			t[i] = redact(x)
		}
	}
	return v
}
