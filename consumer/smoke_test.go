package consumer_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

func TestConsumesAndCommitsEverything(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("t", 3))
	kc.ProduceN(t, "t", 300, kafkatest.KeyedValue(10))
	l := newLedger()
	h := &workHandler{workers: 4, fn: func(ctx context.Context, r *pipeline.Record) error { l.add(r); return nil }}
	_, stop := runConsumer(t, baseOpts(kc, "g", h, "t")...)
	l.waitTotal(t, 300, 20*time.Second)
	ends := kc.WaitCommittedEnd(t, "g", "t", 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if lost, dups := l.check(ends, "t"); lost != 0 || dups != 0 {
		t.Fatalf("lost %d, duplicates %d", lost, dups)
	}
}
