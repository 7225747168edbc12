package dlq_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

type failure struct {
	class    string
	attempts int
}

func (f failure) Error() string { return "sink said no: " + f.class }

// recorder implements both publisher hooks.
type recorder struct {
	mu      sync.Mutex
	written []dlq.WriteInfo
	failed  []error
}

var (
	_ dlq.HookWritten     = (*recorder)(nil)
	_ dlq.HookWriteFailed = (*recorder)(nil)
)

func (r *recorder) OnDeadLetterWritten(i dlq.WriteInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.written = append(r.written, i)
}

func (r *recorder) OnDeadLetterWriteFailed(_ dlq.WriteInfo, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = append(r.failed, err)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newAdmin(t *testing.T, c *kafkatest.Cluster) *dlq.Admin {
	t.Helper()
	a, err := dlq.NewAdmin(ctxT(t), dlq.Conn{Connection: sluice.Connection{Brokers: c.Addrs}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

func readAll(t *testing.T, a *dlq.Admin, topic string, f *dlq.Filter) []dlq.Letter {
	t.Helper()
	var out []dlq.Letter
	if err := a.Read(ctxT(t), topic, f, func(l dlq.Letter) error { out = append(out, l); return nil }); err != nil {
		t.Fatalf("read %s: %v", topic, err)
	}
	return out
}

func TestPublisherWritesProvenance(t *testing.T) {
	c := kafkatest.New(t, kafkatest.Topic("orders", 3))
	hooks := &recorder{}
	now := time.UnixMilli(1767225600000)
	pub, err := dlq.New(dlq.Connection(sluice.Connection{Brokers: c.Addrs}), dlq.AutoCreate(-1), dlq.Group("billing"), dlq.Hooks(hooks))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	defer pub.Close() // idempotent

	for p := range int32(3) {
		for i := range 4 {
			rec := &pipeline.Record{
				Topic: "orders", Partition: p, Offset: int64(10 + i),
				Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d-%d", p, i),
				Timestamp: now,
				Headers: []pipeline.Header{
					{Key: "traceparent", Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
					{Key: dlq.HeaderStage, Value: []byte("stale, from an earlier dead-lettering")},
					{Key: dlq.HeaderReplayCount, Value: []byte("1")},
				},
			}
			err := pub.DeadLetter(ctxT(t), pipeline.DeadLetter{
				Record: rec, Stage: "postgres", Err: failure{pipeline.ClassExhausted, 5},
				Class: pipeline.ClassExhausted, Attempts: 5, FirstFailure: now.Add(time.Second), LastFailure: now.Add(3 * time.Second),
			})
			if err != nil {
				t.Fatalf("dead letter: %v", err)
			}
		}
	}

	a := newAdmin(t, c)
	got := readAll(t, a, "orders.dlq", nil)
	if len(got) != 12 {
		t.Fatalf("read %d dead letters, want 12", len(got))
	}
	lastOffset := map[int32]int64{}
	for _, l := range got {
		if l.ProvenanceErr != nil {
			t.Fatalf("%v: %v", l.Record, l.ProvenanceErr)
		}
		p := l.Provenance
		if l.Record.Partition != p.Partition {
			t.Errorf("dead letter of partition %d in partition %d", p.Partition, l.Record.Partition)
		}
		if prev, ok := lastOffset[p.Partition]; ok && p.Offset <= prev {
			t.Errorf("partition %d out of order: %d after %d", p.Partition, p.Offset, prev)
		}
		lastOffset[p.Partition] = p.Offset
		want := dlq.Provenance{
			Topic: "orders", Partition: p.Partition, Offset: p.Offset, Timestamp: now, Group: "billing",
			Stage: "postgres", Error: "sink said no: exhausted", Class: pipeline.ClassExhausted, Attempts: 5,
			FirstFailure: now.Add(time.Second), LastFailure: now.Add(3 * time.Second), ReplayCount: 1,
		}
		if !equalProvenance(p, want) {
			t.Errorf("provenance\n got %+v\nwant %+v", p, want)
		}
		if want := fmt.Appendf(nil, "v%d-%d", p.Partition, p.Offset-10); !bytes.Equal(l.Record.Value, want) {
			t.Errorf("value %q, want %q", l.Record.Value, want)
		}
		if l.Record.Headers[0].Key != "traceparent" {
			t.Errorf("traceparent not carried first: %v", l.Record.Headers)
		}
		stages := 0
		for _, h := range l.Record.Headers {
			if h.Key == dlq.HeaderStage {
				stages++
			}
		}
		if stages != 1 {
			t.Errorf("%d stage headers, want the stale one dropped", stages)
		}
	}
	infos, err := a.List(ctxT(t), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0] != (dlq.TopicInfo{Topic: "orders.dlq", Source: "orders", SourceExists: true, Partitions: 3, Records: 12}) {
		t.Fatalf("list = %+v", infos)
	}
	hooks.mu.Lock()
	defer hooks.mu.Unlock()
	if len(hooks.written) != 12 || len(hooks.failed) != 0 {
		t.Fatalf("hooks saw %d written, %d failed", len(hooks.written), len(hooks.failed))
	}
	if w := hooks.written[0]; w.Topic != "orders.dlq" || w.Class != pipeline.ClassExhausted || w.Stage != "postgres" || w.SourceTopic != "orders" {
		t.Fatalf("hook info %+v", w)
	}
}

func TestPublisherSharedClient(t *testing.T) {
	c := kafkatest.New(t, kafkatest.Topic("orders", 2), kafkatest.Topic("parked", 2))
	cl := c.Client(t, kgo.ConsumerGroup("billing"), kgo.ConsumeTopics("orders"), kgo.RecordPartitioner(dlq.Partitioner(nil)))
	pub, err := dlq.New(dlq.Client(cl), dlq.Target("orders", "parked"))
	if err != nil {
		t.Fatal(err)
	}
	pub.Close() // must not close cl
	if got := pub.TopicFor("orders"); got != "parked" {
		t.Fatalf("TopicFor = %q", got)
	}
	err = pub.DeadLetter(ctxT(t), pipeline.DeadLetter{Record: &pipeline.Record{Topic: "orders", Partition: 1, Offset: 3}, Err: errors.New("x")})
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, newAdmin(t, c), "parked", nil)
	if len(got) != 1 {
		t.Fatalf("got %d letters", len(got))
	}
	if p := got[0].Provenance; p.Group != "billing" || p.Class != pipeline.ClassError || got[0].Record.Partition != 1 {
		t.Fatalf("got %+v in partition %d", p, got[0].Record.Partition)
	}
}

func TestPublisherConfigErrors(t *testing.T) {
	c := kafkatest.New(t)
	weak := c.Client(t, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	conn := dlq.Connection(sluice.Connection{Brokers: c.Addrs})
	tests := []struct {
		name       string
		give       []dlq.Opt
		wantOption string
	}{
		{"nothing", nil, "Connection"},
		{"no broker", []dlq.Opt{dlq.Connection(sluice.Connection{})}, "Connection"},
		{"nil option", []dlq.Opt{conn, nil}, "Opt"},
		{"both", []dlq.Opt{dlq.Client(weak), conn}, "Client"},
		{"weak client", []dlq.Opt{dlq.Client(weak)}, "Client"},
		{"weak opts", []dlq.Opt{conn, dlq.ClientOpts(kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())}, "Client"},
		{"empty suffix", []dlq.Opt{conn, dlq.Suffix("")}, "Suffix"},
		{"self target", []dlq.Opt{conn, dlq.Target("a", "a")}, "Target"},
		{"replication", []dlq.Opt{conn, dlq.AutoCreate(0)}, "AutoCreate"},
		{"nil clock", []dlq.Opt{conn, dlq.Clock(nil)}, "Clock"},
		{"hook that hooks nothing", []dlq.Opt{conn, dlq.Hooks(&recorder{}, struct{}{})}, "Hooks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := dlq.New(tt.give...)
			var ce *sluice.ConfigError
			if !errors.As(err, &ce) || ce.Package != "dlq" || ce.Option != tt.wantOption || !errors.Is(err, sluice.ErrConfig) {
				if p != nil {
					p.Close()
				}
				t.Fatalf("err = %v, want a ConfigError of dlq naming %s", err, tt.wantOption)
			}
		})
	}
}

func TestPublisherWriteFailureReported(t *testing.T) {
	c := kafkatest.New(t, kafkatest.Topic("orders", 1))
	hooks := &recorder{}
	pub, err := dlq.New(dlq.Connection(sluice.Connection{Brokers: c.Addrs}), dlq.Hooks(hooks))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	// orders.dlq does not exist and is not auto-created: the write cannot
	// be acknowledged before ctx ends.
	err = pub.DeadLetter(ctx, pipeline.DeadLetter{Record: &pipeline.Record{Topic: "orders"}, Err: errors.New("x")})
	if err == nil {
		t.Fatal("dead letter to a missing topic acknowledged")
	}
	hooks.mu.Lock()
	defer hooks.mu.Unlock()
	if len(hooks.failed) != 1 || len(hooks.written) != 0 {
		t.Fatalf("hooks saw %d written, %d failed", len(hooks.written), len(hooks.failed))
	}
}
