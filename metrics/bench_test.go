package metrics_test

import (
	"testing"
	"time"

	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/pipeline"
)

// hooksPerRecord is what one record costs in hook calls when every guard is
// on: the pipeline's and the guard chain's (the consumer's are per fetch).
type hooksPerRecord interface {
	pipeline.HookHandled
	handlers.HookAttempt
	handlers.HookRateWait
	handlers.HookOutcome
}

type nopHooks struct{}

func (nopHooks) OnHandled(string, pipeline.Outcome, int, time.Duration) {}
func (nopHooks) OnAttempt(string, time.Duration, error)                 {}
func (nopHooks) OnRateWait(string, time.Duration)                       {}
func (nopHooks) OnOutcome(string, string, int, time.Duration)           {}

func perRecord(h hooksPerRecord) {
	h.OnRateWait("store", 0)
	h.OnAttempt("store", time.Millisecond, nil)
	h.OnOutcome("store", handlers.OutcomeOK, 1, time.Millisecond)
	h.OnHandled("store", pipeline.OutcomeOK, 1, time.Millisecond)
}

func benchHooks(b *testing.B, h hooksPerRecord) {
	b.ReportAllocs()
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			perRecord(h)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				perRecord(h)
			}
		})
	})
}

// BenchmarkHooksPerRecord compares the metrics' hooks with no-op hooks
// (the interface calls alone); report the ratio, not the times.
func BenchmarkHooksPerRecord(b *testing.B) {
	b.Run("nop", func(b *testing.B) { benchHooks(b, nopHooks{}) })
	b.Run("metrics", func(b *testing.B) {
		m, _ := newMetrics(b)
		benchHooks(b, m)
	})
}
