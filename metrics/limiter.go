package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-go/sluice/backpressure"
)

var _ backpressure.Observer = (*limiterObserver)(nil)

// Limiter returns the observer of the concurrency limiter in front of sink,
// which exports sluice_concurrency_limit{sink} and
// sluice_concurrency_in_flight{sink}. Pass it to backpressure.WithObserver
// when creating the limiter; use one limiter, and one observer, per sink.
func (m *Metrics) Limiter(sink string) backpressure.Observer {
	return &limiterObserver{limit: m.limit.WithLabelValues(sink), inFlight: m.inFlight.WithLabelValues(sink)}
}

type limiterObserver struct {
	limit, inFlight prometheus.Gauge
}

func (o *limiterObserver) LimitChanged(limit int)       { o.limit.Set(float64(limit)) }
func (o *limiterObserver) InFlightChanged(inFlight int) { o.inFlight.Set(float64(inFlight)) }
