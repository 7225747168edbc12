package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/internal/orders"
)

// Kind is what the producer made a record to be.
type Kind int

// Kinds of records. All but KindGood and KindTest are poison: the pipeline
// must dead-letter them, each with its own class.
const (
	// KindGood: a valid order, to be shipped.
	KindGood Kind = iota
	// KindTest: a test order, to be dropped by the filter.
	KindTest
	// KindUndecodable: not JSON; dead-lettered by the decode stage
	// (class decode).
	KindUndecodable
	// KindRejected: an order with a negative amount, rejected by the
	// downstream with a 422 (class permanent).
	KindRejected
	// KindCrash: an order in a currency the downstream's client has no
	// rate for; the client panics (class panic).
	KindCrash
	numKinds
)

var kindNames = [...]string{"good", "test", "undecodable", "rejected", "crash"}

func (k Kind) String() string { return kindNames[k] }

// DeadLetterClass is the failure class a poison kind must be dead-lettered
// with; "" for kinds that must not be dead-lettered.
func (k Kind) DeadLetterClass() string {
	switch k {
	case KindUndecodable:
		return "decode"
	case KindRejected:
		return "permanent"
	case KindCrash:
		return "panic"
	}
	return ""
}

// kindOf spreads the kinds deterministically over record numbers: 0.5%
// undecodable, 0.2% rejected, 0.1% crash, 1% test orders.
func kindOf(i int) Kind {
	switch {
	case i%200 == 17:
		return KindUndecodable
	case i%500 == 123:
		return KindRejected
	case i%1000 == 457:
		return KindCrash
	case i%100 == 42:
		return KindTest
	}
	return KindGood
}

// generator makes the stream of orders: random customers, each with its own
// sequence numbers.
type generator struct {
	run       string
	customers int
	rnd       *rand.Rand
	seq       []int
	n         int
}

func newGenerator(run string, customers int, seed uint64) *generator {
	return &generator{run: run, customers: customers, rnd: rand.New(rand.NewPCG(seed, 1)), seq: make([]int, customers)}
}

var currencies = []string{"EUR", "USD", "GBP"}

// next returns the next record and its kind.
func (g *generator) next(topic string) (*kgo.Record, Kind) {
	i := g.n
	g.n++
	kind := kindOf(i)
	c := g.rnd.IntN(g.customers)
	g.seq[c]++
	o := orders.Order{
		ID:       fmt.Sprintf("%s-%d", g.run, i),
		Customer: fmt.Sprintf("customer-%03d", c),
		Seq:      g.seq[c],
		Amount:   float64(1+g.rnd.IntN(20000)) / 100,
		Currency: currencies[g.rnd.IntN(len(currencies))],
	}
	switch kind {
	case KindTest:
		o.Test = true
	case KindRejected:
		o.Amount = -o.Amount
	case KindCrash:
		o.Currency = "XTS"
	}
	v, _ := json.Marshal(o)
	if kind == KindUndecodable {
		v = v[:len(v)/2] // cut short: not JSON
	}
	return &kgo.Record{Topic: topic, Key: []byte(o.Customer), Value: v}, kind
}

// produce writes orders at rate per second until ctx ends or d has passed,
// and waits for every write to be acknowledged or to fail. acked is called
// (from the client's goroutines) for every acknowledged record, failed for
// every record that was not.
func produce(ctx context.Context, cl *kgo.Client, g *generator, topic string, rate int, d time.Duration,
	acked func(r *kgo.Record, k Kind), failed func(error)) {
	const tick = 10 * time.Millisecond
	start := time.Now()
	t := time.NewTicker(tick)
	defer t.Stop()
	sent := 0
loop:
	for {
		elapsed := time.Since(start)
		if elapsed >= d {
			break
		}
		want := int(float64(rate) * elapsed.Seconds())
		for ; sent < want; sent++ {
			r, k := g.next(topic)
			cl.Produce(ctx, r, func(r *kgo.Record, err error) {
				if err != nil {
					failed(err)
					return
				}
				acked(r, k)
			})
		}
		select {
		case <-ctx.Done():
			break loop
		case <-t.C:
		}
	}
	// Flush with a context of its own: records already handed to the
	// client get their answer even when ctx was cancelled.
	fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = cl.Flush(fctx) // records still unanswered fail through their callbacks
}
