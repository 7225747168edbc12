package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/internal/ledger"
	"github.com/sluice-go/sluice/reliability/check"
)

// producer writes the run's records, each with a unique rid header, and
// remembers where each landed (check.Produced) once the broker acknowledged
// it. It talks to the broker directly, never through a proxy.
type producer struct {
	r     *run
	cl    *kgo.Client
	topic string
	gen   int
	keys  int
	// poisonEvery, if positive, makes every poisonEvery-th record of the
	// load a poison record (poison).
	poisonEvery int

	stop   chan struct{}
	done   chan struct{}
	closed bool
}

// newProducer returns a producer of topic; gen names the topic's
// incarnation (bumped when the topic is recreated).
func (r *run) newProducer(topic string, gen, keys int) (*producer, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(r.broker.addr),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.MaxBufferedRecords(20_000),
		kgo.ProducerBatchMaxBytes(4<<20),
	)
	if err != nil {
		return nil, err
	}
	p := &producer{r: r, cl: cl, topic: topic, gen: gen, keys: keys}
	r.mu.Lock()
	r.producers = append(r.producers, p)
	r.mu.Unlock()
	return p, nil
}

var pad = strings.Repeat("p", 80)

// send produces one record; value nil or key nil are sent as such.
func (p *producer) send(key, value []byte, expect check.Outcome, headers ...kgo.RecordHeader) {
	r := p.r
	r.mu.Lock()
	i := len(r.produced)
	rid := fmt.Sprintf("r%d", i)
	r.produced = append(r.produced, check.Produced{RID: rid, Topic: p.topic, Key: key, Gen: p.gen, Expect: expect})
	r.mu.Unlock()
	rec := &kgo.Record{
		Topic:   p.topic,
		Key:     key,
		Value:   value,
		Headers: append([]kgo.RecordHeader{{Key: ledger.RIDHeader, Value: []byte(rid)}}, headers...),
	}
	p.cl.TryProduce(context.Background(), rec, func(rec *kgo.Record, err error) {
		if err != nil {
			return // not acknowledged, so not required; the run counts them
		}
		r.mu.Lock()
		r.produced[i].Acked = true
		r.produced[i].Partition = rec.Partition
		r.produced[i].Offset = rec.Offset
		r.mu.Unlock()
	})
}

// next sends the next record of the steady load: key k<seq % keys>.
func (p *producer) next(seq int) {
	key := fmt.Appendf(nil, "k%03d", seq%p.keys)
	if p.poisonEvery > 0 && seq%p.poisonEvery == p.poisonEvery-1 {
		v := poison[(seq/p.poisonEvery)%len(poison)]
		p.send(key, fmt.Appendf(nil, v, seq), check.ExpectDeadLetter)
		return
	}
	p.send(key, fmt.Appendf(nil, `{"seq":%d,"pad":%q}`, seq, pad), check.ExpectHandled)
}

// poison are the values of poison records (with their seq), each
// dead-lettered by the reference consumer for a reason of its own: the
// source cannot decode it, the sink panics, the sink rejects it.
var poison = []string{`not json %d {`, `{"seq":%d,"panic":true}`, `{"seq":%d,"permanent":true}`}

// load produces rate records a second until stopLoad.
func (p *producer) load(rate int) {
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.done)
		const tick = 20 * time.Millisecond
		t := time.NewTicker(tick)
		defer t.Stop()
		start := time.Now()
		sent := 0
		for {
			select {
			case <-p.stop:
				return
			case now := <-t.C:
				due := int(now.Sub(start).Seconds() * float64(rate))
				for ; sent < due; sent++ {
					p.next(sent)
				}
			}
		}
	}()
}

func (p *producer) stopLoad() {
	if p.stop != nil {
		close(p.stop)
		<-p.done
		p.stop = nil
	}
}

// close stops the load, waits for every buffered record to be
// acknowledged or failed (up to timeout), and closes the client. Closing
// twice does nothing.
func (p *producer) close(timeout time.Duration) error {
	if p.closed {
		return nil
	}
	p.closed = true
	p.stopLoad()
	defer p.cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := p.cl.Flush(ctx); err != nil {
		return fmt.Errorf("producer of %s: flush: %w", p.topic, err)
	}
	return nil
}
