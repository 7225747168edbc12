package sluicefx_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/health"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/metrics"
	"github.com/sluice-go/sluice/metrics/metricstest"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/sluicefx"
)

// jobLog records each job's deliveries as the sink saw them.
type jobLog struct {
	mu    sync.Mutex
	calls map[string][]int32 // record (topic/partition@offset) -> Deliveries of each call
}

func (l *jobLog) add(r *pipeline.Record) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls[r.String()] = append(l.calls[r.String()], r.Deliveries)
	return len(l.calls[r.String()])
}

func (l *jobLog) get(rec string) []int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int32(nil), l.calls[rec]...)
}

// TestAppShareMode runs an fx application in share mode (Config.ShareGroup)
// on kfake with the dead-letter module, metrics and health: every job is
// handled; one that fails transiently at its first delivery is released
// (Kit.Pipeline's dead letters are wrapped with consumer.ShareDeadLetters)
// and handled at its second; one that fails permanently is dead-lettered
// to jobs.dlq with the share group as its group. /readyz is ready, and
// /metrics counts the acknowledgements.
func TestAppShareMode(t *testing.T) {
	const n = 30
	kc := kafkatest.New(t, kafkatest.Topic("jobs", 2), kafkatest.Topic("jobs.dlq", 2), kafkatest.Kfake(kfake.BrokerConfigs(map[string]string{
		"group.share.record.lock.duration.ms": "3000",
		"group.share.session.timeout.ms":      "3000",
	})))
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: "jobs", Partition: int32(i % 2), Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "job %d", i)}
	}
	kc.Produce(t, recs...)

	jobs := &jobLog{calls: map[string][]int32{}}
	newJobs := func(kit sluicefx.Kit) (*pipeline.Pipeline, error) {
		p := kit.Pipeline(pipeline.DeadLetterBackoff(10*time.Millisecond, 100*time.Millisecond))
		pipeline.Sink(pipeline.Source(p, "jobs", pipeline.Bytes()), "run", func(ctx context.Context, m pipeline.Message[[]byte]) error {
			for r := range pipeline.Records(m.Token()) {
				calls := jobs.add(r)
				switch {
				case r.Partition == 0 && r.Offset == 3:
					return pipeline.Permanent(errors.New("malformed job"))
				case r.Partition == 1 && r.Offset == 5 && calls == 1:
					return errors.New("worker busy")
				}
			}
			return nil
		})
		return p, p.Err()
	}
	reg := prometheus.NewRegistry()
	var (
		server *health.Server
		cons   *consumer.Consumer
	)
	cfg := sluicefx.Config{
		Brokers:      kc.Addrs,
		ShareGroup:   "workers",
		Share:        sluicefx.Share{MaxRecords: 10, SinkAttempts: 1},
		DrainTimeout: 2 * time.Second,
		HTTPAddr:     "127.0.0.1:0",
	}
	app := fxtest.New(t,
		fx.NopLogger,
		fx.Supply(cfg),
		sluicefx.Logger(testLogger()),
		sluicefx.Registry(reg),
		sluicefx.Module,
		sluicefx.DeadLetterModule,
		sluicefx.Pipeline(newJobs),
		fx.Populate(&server, &cons),
	)
	ta := &testApp{app: app, reg: reg, server: server, cons: cons}
	app.RequireStart()
	kafkatest.Eventually(t, 20*time.Second, func() bool { code, _ := ta.get(t, "/readyz"); return code == http.StatusOK },
		"/readyz never ready")
	acks := func(kind string) float64 {
		s := ta.scrape(t)
		return s.Total(metrics.ShareAcks, "kind", kind)
	}
	kafkatest.Eventually(t, 30*time.Second, func() bool {
		return acks(consumer.ShareAccept) == n-1 && acks(consumer.ShareReject) == 1
	}, "acks never reached %d accepted and 1 rejected: accept %v, reject %v", n-1,
		kafkatest.Lazy(func() any { return acks(consumer.ShareAccept) }), kafkatest.Lazy(func() any { return acks(consumer.ShareReject) }))
	app.RequireStop()

	if got := fmt.Sprint(jobs.get("jobs/1@5")); got != "[1 2]" {
		t.Errorf("jobs/1@5 was handled at deliveries %s, want [1 2]", got)
	}
	after, err := metricstest.Take(reg) // the server is closed; the registry is not
	if err != nil {
		t.Fatal(err)
	}
	if got := after.Total(metrics.ShareAcks, "kind", consumer.ShareRelease); got != 1 {
		t.Errorf("%v releases, want 1", got)
	}
	if !after.Has(metrics.ShareAckErrors) || after.Has(metrics.ConsumerLag) {
		t.Errorf("share mode exports %s: %v, %s: %v; want the first, not the second", metrics.ShareAckErrors, after.Has(metrics.ShareAckErrors),
			metrics.ConsumerLag, after.Has(metrics.ConsumerLag))
	}
	if got := total(kc.EndOffsets(t, "jobs.dlq")); got != 1 {
		t.Fatalf("%d dead letters, want 1", got)
	}
	cl := kc.Client(t, kgo.ConsumeTopics("jobs.dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fs := cl.PollRecords(ctx, 1)
	if err := fs.Err0(); err != nil {
		t.Fatal(err)
	}
	letter := fs.Records()[0]
	want := map[string]string{dlq.HeaderGroup: "workers", dlq.HeaderClass: pipeline.ClassPermanent, dlq.HeaderOffset: "3"}
	for _, h := range letter.Headers {
		if w, ok := want[h.Key]; ok && string(h.Value) != w {
			t.Errorf("dead letter header %s = %q, want %q", h.Key, h.Value, w)
		}
	}
}

func total(m map[int32]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
