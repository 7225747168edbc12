package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/internal/orders"
	"github.com/sluice-go/sluice/pipeline"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is an io.Writer safe for the consumer's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var (
	shippedLine = regexp.MustCompile(`^shipped (\S+): customer (\S+) #(\d+), [\d.]+ EUR$`)
	totalsLine  = regexp.MustCompile(`^totals \S+-\S+: (\d+) orders, [\d.]+( \(flushed early\))?$`)
)

func TestPipelineShipsInOrderTotalsAndDeadLetters(t *testing.T) {
	const (
		customers = 6
		perCust   = 40
	)
	kc := kafkatest.New(t, kafkatest.Topic("orders", 3))
	var recs []*kgo.Record
	wantShipped := map[string]bool{}
	wantClasses := map[string]int{}
	windowed := 0
	for seq := 1; seq <= perCust; seq++ {
		for c := range customers {
			cust := "c" + strconv.Itoa(c)
			o := orders.Order{ID: cust + "-" + strconv.Itoa(seq), Customer: cust, Seq: seq, Amount: 10, Currency: "EUR"}
			i := seq*customers + c
			var value []byte
			switch {
			case i%37 == 0:
				value = []byte(`{"id": not json`)
				wantClasses[pipeline.ClassDecode]++
			case i%23 == 0:
				o.Test = true
			case i%29 == 0:
				o.Amount = -5 // rejected by the warehouse
				wantClasses[pipeline.ClassPermanent]++
				windowed++
			case i%31 == 0:
				o.Currency = "XXX" // crashes the warehouse client
				wantClasses[pipeline.ClassPanic]++
				windowed++
			default:
				wantShipped[o.ID] = true
				windowed++
			}
			if value == nil {
				value, _ = json.Marshal(o)
			}
			recs = append(recs, &kgo.Record{Topic: "orders", Key: []byte(cust), Value: value})
		}
	}
	kc.Produce(t, recs...)

	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, Config{Brokers: kc.Addrs, Group: "example", Topic: "orders", Workers: 4, Latency: time.Millisecond},
			out, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	// Every record settles (shipped, filtered, totalled, or dead-lettered
	// and acknowledged) before the group commits past it.
	kc.WaitCommittedEnd(t, "example", "orders", 30*time.Second, kafkatest.Lazy(func() any { return out.String() }))
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}

	shipped := map[string]bool{}
	lastSeq := map[string]int{}
	inWindows := 0
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if m := shippedLine.FindStringSubmatch(line); m != nil {
			if shipped[m[1]] {
				t.Errorf("%s shipped twice", m[1])
			}
			shipped[m[1]] = true
			seq, _ := strconv.Atoi(m[3])
			if seq <= lastSeq[m[2]] {
				t.Errorf("customer %s: #%d shipped after #%d", m[2], seq, lastSeq[m[2]])
			}
			lastSeq[m[2]] = seq
			continue
		}
		if m := totalsLine.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			inWindows += n
			continue
		}
		t.Errorf("unexpected line %q", line)
	}
	if len(shipped) != len(wantShipped) {
		t.Errorf("shipped %d orders, want %d", len(shipped), len(wantShipped))
	}
	for id := range wantShipped {
		if !shipped[id] {
			t.Errorf("order %s not shipped", id)
		}
	}
	if inWindows != windowed {
		t.Errorf("windows counted %d orders, want %d (every decodable non-test order once)", inWindows, windowed)
	}

	adm, err := dlq.NewAdmin(context.Background(), dlq.Conn{Connection: sluice.Connection{Brokers: kc.Addrs}})
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	st, err := adm.Stats(context.Background(), "orders.dlq", nil)
	if err != nil {
		t.Fatal(err)
	}
	for class, n := range wantClasses {
		if st.ByClass[class] != n {
			t.Errorf("dead letters of class %s: %d, want %d (all: %v)", class, st.ByClass[class], n, st.ByClass)
		}
	}
	if st.Total != wantClasses[pipeline.ClassDecode]+wantClasses[pipeline.ClassPermanent]+wantClasses[pipeline.ClassPanic] {
		t.Errorf("%d dead letters, by class %v; want %v", st.Total, st.ByClass, wantClasses)
	}
	if st.ByStage[orders.StageDecode] != wantClasses[pipeline.ClassDecode] {
		t.Errorf("dead letters by stage %v: want the undecodable ones under %q", st.ByStage, orders.StageDecode)
	}
}
