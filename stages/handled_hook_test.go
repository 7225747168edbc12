package stages_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/pipeline/pipelinetest"
	"github.com/sluice-go/sluice/stages"
)

// handledCounter sums the records HookHandled reports per stage and outcome.
type handledCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *handledCounter) OnHandled(stage string, o pipeline.Outcome, records int, _ time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n[stage+"/"+o.String()] += records
}

// TestHandledCountsRecordsBehindKeyOrderedFanOut is the regression test for
// a race: the sink reported HookHandled after settling, when a key-ordered
// FanOut may already have recycled the message's token for another message,
// so the hook read a reused token (a data race under -race) and counted 0.
func TestHandledCountsRecordsBehindKeyOrderedFanOut(t *testing.T) {
	const n = 2000
	h := &handledCounter{n: map[string]int{}}
	p := pipeline.New(pipeline.Hooks(h))
	src := pipeline.Source(p, "orders", pipeline.String())
	kept := stages.Filter(src, "odd", func(s string) bool { return s[len(s)-1]%2 == 1 })
	pipeline.Sink(stages.FanOut(kept, "workers", 8), "sink", func(context.Context, pipeline.Message[string]) error { return nil })
	settler := pipelinetest.NewSettler()
	tp := pipeline.TopicPartition{Topic: "orders"}
	recs := settler.Records(tp, 0, n, func(i int, r *pipeline.Record) {
		r.Key = fmt.Appendf(nil, "k%d", i%13)
		r.Value = fmt.Appendf(nil, "v%d", i)
	})
	if err := pipelinetest.Feed(context.Background(), p, tp, recs, 64); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if got := h.n["sink/ok"]; got != n/2 {
		t.Errorf("sink reported %d records ok, want %d", got, n/2)
	}
	if got := h.n["odd/filtered"]; got != n/2 {
		t.Errorf("filter reported %d records filtered, want %d", got, n/2)
	}
}
