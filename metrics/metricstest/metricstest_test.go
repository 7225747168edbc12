package metricstest_test

import (
	"bytes"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"go.uber.org/goleak"

	"github.com/sluice-go/sluice/metrics/metricstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTakeAndParseAgree(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, []string{"sink", "result"})
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "y_seconds", Help: "y"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "z", Help: "z"})
	reg.MustRegister(c, h, g)
	c.WithLabelValues("store", "ok").Add(3)
	c.WithLabelValues("store", "error").Add(1)
	c.WithLabelValues("store2", "ok").Add(10)
	h.Observe(0.5)
	h.Observe(1.5)
	g.Set(-2)

	taken, err := metricstest.Take(reg)
	if err != nil {
		t.Fatal(err)
	}
	mfs, _ := reg.Gather()
	var text bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&text, mf); err != nil {
			t.Fatal(err)
		}
	}
	parsed, err := metricstest.Parse(&text)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]metricstest.Snapshot{"Take": taken, "Parse": parsed} {
		for _, tt := range []struct {
			give string
			got  float64
			want float64
		}{
			{"Value", s.Value("x_total", "result", "ok", "sink", "store"), 3},
			{"Total", s.Total("x_total"), 14},
			{"Total by label", s.Total("x_total", "sink", "store"), 4},
			{"Total by two labels", s.Total("x_total", "sink", "store", "result", "ok"), 3},
			{"histogram count", s["y_seconds_count"], 2},
			{"histogram sum", s["y_seconds_sum"], 2},
			{"gauge", s["z"], -2},
			{"absent", s.Value("x_total", "sink", "nope"), 0},
		} {
			if tt.got != tt.want {
				t.Errorf("%s: %s = %v, want %v", name, tt.give, tt.got, tt.want)
			}
		}
		if !s.Has("y_seconds") || !s.Has("x_total") || s.Has("x") || len(s.Series("x_total")) != 3 {
			t.Errorf("%s: families %v", name, s.Families())
		}
	}
}
