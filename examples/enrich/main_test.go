package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/sluice-go/sluice/internal/kafkatest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestEnrichWritesEachOrderOnce runs the example in both modes against an
// in-process broker: every valid order's enriched output is read back
// (read_committed) once, and the two bad orders are dead-lettered.
func TestEnrichWritesEachOrderOnce(t *testing.T) {
	for _, eos := range []bool{false, true} {
		t.Run(fmt.Sprintf("exactly-once=%v", eos), func(t *testing.T) {
			const n = 100
			kc := kafkatest.New(t, kafkatest.Topic("orders", 3), kafkatest.Topic("orders.enriched", 3))
			recs := make([]*kgo.Record, 0, n+2)
			for i := range n {
				c := fmt.Sprintf("customer-%d", i%7)
				if i%10 == 0 {
					c = "vip-" + c
				}
				recs = append(recs, &kgo.Record{Topic: "orders", Key: []byte(c),
					Value: fmt.Appendf(nil, `{"id":"o%d","customer":%q,"amount":10}`, i, c)})
			}
			recs = append(recs, &kgo.Record{Topic: "orders", Value: []byte("not json")},
				&kgo.Record{Topic: "orders", Value: []byte(`{"customer":"x","amount":1}`)})
			kc.Produce(t, recs...)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				errc <- run(ctx, Config{Brokers: kc.Addrs, Group: "enrich", Input: "orders", Output: "orders.enriched",
					ExactlyOnce: eos, ID: "enrich-test"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			}()
			kc.WaitCommittedEnd(t, "enrich", "orders", 60*time.Second)
			cancel()
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			seen := map[string]int{}
			for _, r := range kc.ReadCommitted(t, "orders.enriched", 3) {
				var e Enriched
				if err := json.Unmarshal(r.Value, &e); err != nil {
					t.Fatalf("output %q: %v", r.Value, err)
				}
				seen[e.ID]++
				if want := tier(e.Customer); e.Tier != want || e.WithTax != 12 || string(r.Key) != e.Customer || e.SourceRef == "" {
					t.Errorf("output %+v (key %q): want tier %s, 12 with tax, keyed by customer, with its source", e, r.Key, want)
				}
			}
			for i := range n {
				if got := seen[fmt.Sprintf("o%d", i)]; got != 1 {
					t.Errorf("order o%d written %d times, want once", i, got)
				}
			}
			if letters := kc.ReadCommitted(t, "orders.dlq", 3); len(letters) != 2 {
				t.Fatalf("%d dead letters, want 2 (the bad JSON and the order without an id)", len(letters))
			}
		})
	}
}
