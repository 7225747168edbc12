package tracing_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/tracing"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type order struct {
	Poison bool `json:"poison"`
}

func kheaders(tp string) []kgo.RecordHeader {
	return []kgo.RecordHeader{{Key: "traceparent", Value: []byte(tp)}, {Key: "tracestate", Value: []byte(tracestate)}}
}

func header(hs []kgo.RecordHeader, key string) string {
	for _, h := range hs {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// readAll reads every record of topic from its start.
func readAll(t *testing.T, kc *kafkatest.Cluster, topic string, want int) []*kgo.Record {
	t.Helper()
	cl := kc.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < want {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %s: %d of %d records", topic, len(recs), want)
		}
		recs = append(recs, fs.Records()...)
	}
	return recs
}

// spanAt returns the ended sink span of the record at offset.
func spanAt(t *testing.T, sr *tracetest.SpanRecorder, offset int64) sdktrace.ReadOnlySpan {
	t.Helper()
	var found sdktrace.ReadOnlySpan
	kafkatest.Eventually(t, 10*time.Second, func() bool {
		for _, s := range sr.Ended() {
			if s.Name() == "process orders" && attr(s, "messaging.kafka.offset").AsInt64() == offset {
				found = s
				return true
			}
		}
		return false
	}, "no span for offset %d", offset)
	return found
}

func isHeaderContext(sc trace.SpanContext, wantParent string) bool {
	return sc.TraceID().String() == traceID && sc.SpanID().String() == wantParent && sc.TraceState().String() == tracestate
}

// TestTraceContextThroughDeadLetterAndReplay: a record carrying a
// traceparent header is handled in a span whose parent is that context;
// when it fails, its dead letter carries the same traceparent and
// tracestate; when the dead letter is replayed, the replayed record is
// handled in a span whose parent is the original context again.
func TestTraceContextThroughDeadLetterAndReplay(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("orders", 1), kafkatest.Topic("orders.dlq", 1))
	tr, sr := newTracer(t)
	pub, err := dlq.New(dlq.Connection(sluice.Connection{Brokers: kc.Addrs}), dlq.Group("shop"))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	var (
		mu      sync.Mutex
		healed  bool
		handled = make(chan int64, 8)
	)
	store := func(_ context.Context, m pipeline.Message[order]) error {
		mu.Lock()
		defer mu.Unlock()
		if m.Value().Poison && !healed {
			return pipeline.Permanent(errors.New("store: order rejected"))
		}
		handled <- m.Offset()
		return nil
	}
	guarded, err := handlers.Guard(store, handlers.Name("store"), handlers.Logger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	p := pipeline.New(pipeline.DeadLetters(tr.DeadLetterer(pub)), pipeline.Logger(quiet))
	pipeline.Sink(pipeline.Source(p, "orders", pipeline.JSON[order]()), "store", tracing.Sink[order](tr, "store")(guarded))
	cons, err := consumer.New(consumer.Connection(sluice.Connection{Brokers: kc.Addrs}), consumer.Group("shop"), consumer.Handle(p),
		consumer.CommitInterval(20*time.Millisecond), consumer.Logger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- cons.Run(context.Background()) }()
	defer func() {
		cons.Close()
		if err := <-ran; err != nil {
			t.Error(err)
		}
	}()

	otherParent := "c7ad6b7169203331"
	kc.Produce(t,
		&kgo.Record{Topic: "orders", Key: []byte("poison"), Value: []byte(`{"poison":true}`), Headers: kheaders(traceparent)},
		&kgo.Record{Topic: "orders", Key: []byte("good"), Value: []byte(`{}`), Headers: kheaders("00-" + traceID + "-" + otherParent + "-01")},
	)
	if got := <-handled; got != 1 {
		t.Fatalf("handled offset %d first, want 1", got)
	}
	if s := spanAt(t, sr, 1); !isHeaderContext(s.Parent(), otherParent) || !s.Parent().IsRemote() {
		t.Errorf("span of the good record: parent %v", s.Parent())
	}
	poison := spanAt(t, sr, 0)
	if !isHeaderContext(poison.Parent(), parentID) || attr(poison, tracing.AttrFailureClass).AsString() != pipeline.ClassPermanent {
		t.Errorf("span of the poison record: parent %v, attributes %v", poison.Parent(), poison.Attributes())
	}

	// The dead letter carries the original trace context.
	letter := readAll(t, kc, "orders.dlq", 1)[0]
	if header(letter.Headers, "traceparent") != traceparent || header(letter.Headers, "tracestate") != tracestate {
		t.Fatalf("dead letter headers: %v", letter.Headers)
	}

	// Replayed, the record is handled in the original trace again.
	mu.Lock()
	healed = true
	mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	adm, err := dlq.NewAdmin(ctx, dlq.Conn{Connection: sluice.Connection{Brokers: kc.Addrs}})
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if st, err := adm.Replay(ctx, dlq.ReplayConfig{Topic: "orders.dlq"}); err != nil || st.Replayed != 1 {
		t.Fatalf("replay: %+v, %v", st, err)
	}
	if got := <-handled; got != 2 {
		t.Fatalf("handled offset %d, want the replayed record at 2", got)
	}
	replayed := spanAt(t, sr, 2)
	if !isHeaderContext(replayed.Parent(), parentID) || replayed.Status().Code != 0 {
		t.Errorf("span of the replayed record: parent %v, status %v", replayed.Parent(), replayed.Status())
	}
}

// TestKotelDeadLetterStaysInTrace: a dead-letter publisher whose client is
// traced with kotel rewrites the traceparent header with its publish span.
// Tracer.DeadLetterer keeps that span, and so the dead letter, in the
// record's trace; without it the dead letter starts a new trace.
func TestKotelDeadLetterStaysInTrace(t *testing.T) {
	for _, tt := range []struct {
		name          string
		wrap          bool
		wantSameTrace bool
	}{
		{"wrapped", true, true},
		{"bare", false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			kc := kafkatest.New(t, kafkatest.Topic("orders.dlq", 1))
			tr, sr := newTracer(t)
			pub, err := dlq.New(dlq.Connection(sluice.Connection{Brokers: kc.Addrs}), dlq.ClientOpts(tr.KafkaClient()))
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			var dl pipeline.DeadLetterer = pub
			if tt.wrap {
				dl = tr.DeadLetterer(pub)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := dl.DeadLetter(ctx, pipeline.DeadLetter{Record: record(5, w3c(traceparent)...), Stage: "store", Class: pipeline.ClassPermanent}); err != nil {
				t.Fatal(err)
			}
			letter := readAll(t, kc, "orders.dlq", 1)[0]
			got := header(letter.Headers, "traceparent")
			if same := strings.Contains(got, traceID); same != tt.wantSameTrace {
				t.Fatalf("dead letter traceparent %q; in the record's trace: %t, want %t", got, same, tt.wantSameTrace)
			}
			if !tt.wrap {
				return
			}
			var publish sdktrace.ReadOnlySpan
			for _, s := range sr.Ended() {
				if s.Name() == "orders.dlq publish" {
					publish = s
				}
			}
			if publish == nil || !isHeaderContext(publish.Parent(), parentID) || !strings.Contains(got, publish.SpanContext().SpanID().String()) {
				t.Fatalf("publish span %v; dead letter traceparent %q", publish, got)
			}
		})
	}
}
