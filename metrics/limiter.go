package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-go/sluice/backpressure"
)

var (
	_ backpressure.HookLimit    = (*limiterHooks)(nil)
	_ backpressure.HookInFlight = (*limiterHooks)(nil)
)

// Limiter returns the hook (a backpressure.HookLimit and HookInFlight) of
// the concurrency limiter in front of sink, which exports
// sluice_concurrency_limit{sink} and sluice_concurrency_in_flight{sink}.
// Pass it to backpressure.Hooks when creating the limiter; use one limiter,
// and one hook, per sink.
func (m *Metrics) Limiter(sink string) backpressure.Hook {
	return &limiterHooks{limit: m.limit.WithLabelValues(sink), inFlight: m.inFlight.WithLabelValues(sink)}
}

type limiterHooks struct {
	limit, inFlight prometheus.Gauge
}

func (o *limiterHooks) OnLimit(limit int)       { o.limit.Set(float64(limit)) }
func (o *limiterHooks) OnInFlight(inFlight int) { o.inFlight.Set(float64(inFlight)) }
