package metrics_test

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-go/sluice/backpressure"
	"github.com/sluice-go/sluice/metrics"
	"github.com/sluice-go/sluice/metrics/metricstest"
	"github.com/sluice-go/sluice/pipeline"
)

func Example() {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		fmt.Println(err)
		return
	}
	// Pass m to pipeline.Hooks, handlers.Hooks, dlq.Hooks and
	// consumer.Hooks; they call it. Here the pipeline's call is made by hand.
	m.OnHandled("store", pipeline.OutcomeOK, 3, 20*time.Millisecond)

	s, _ := metricstest.Take(reg)
	fmt.Println(s.Value(metrics.RecordsHandled, "stage", "store", "outcome", "ok"))
	fmt.Println(s.Value(metrics.HandleDuration+"_count", "stage", "store"))
	// Output:
	// 3
	// 1
}

func ExampleMetrics_Limiter() {
	reg := prometheus.NewRegistry()
	m, _ := metrics.New(reg)
	lim, _ := backpressure.NewFixed(8, backpressure.Hooks(m.Limiter("store")))
	_ = lim // handlers.Limiter(lim)

	s, _ := metricstest.Take(reg)
	fmt.Println(s.Value(metrics.ConcurrencyLimit, "sink", "store"))
	// Output: 8
}
