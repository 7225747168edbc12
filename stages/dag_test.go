package stages_test

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/pipeline/pipelinetest"
	"github.com/sluice-go/sluice/stages"
)

// TestSettlementOverRandomPipelines builds random pipelines (filters, maps,
// duplicates, key-ordered and unordered fan-outs, count and processing-time
// windows, batches, sinks that are slow, fail or panic at random, a dead
// letterer that fails at random) and checks, for many seeds:
//
//   - every record settles exactly once (the settler and Record.Settle
//     both check), and only after every sink it was expected to reach has
//     finished with it, including every window it was in;
//   - a commit taken at any moment (the settler's watermark) never passes a
//     record that some expected sink has not finished;
//   - every record reaches exactly the sinks its path's filters let it
//     reach;
//   - cancelling midway leaves the rest unsettled, and no goroutine behind.
func TestSettlementOverRandomPipelines(t *testing.T) {
	seeds := uint64(150)
	if testing.Short() {
		seeds = 30
	}
	for seed := range seeds {
		runRandomDAG(t, seed)
	}
}

type dag struct {
	t    *testing.T
	seed uint64
	rng  *rand.Rand
	desc []string
	n    int // stages made so far, for names

	seq atomic.Int64 // global event order

	mu        sync.Mutex
	expect    map[string]func(off int64) bool // sink -> does the record reach it
	reached   map[string]map[int64]int        // sink -> offset -> completions
	lastDone  map[int64]int64                 // offset -> seq of its last completion
	settledAt map[int64]int64                 // offset -> seq of its settlement
	bad       []string
}

type item struct{ off int64 }

var hashSeed = maphash.MakeSeed()

// coin is a deterministic pseudo-random choice per (salt, offset) that any
// goroutine may make.
func coin(salt string, off int64, in int) int {
	return int(maphash.String(hashSeed, fmt.Sprint(salt, off)) % uint64(in))
}

func (d *dag) name(kind string) string {
	d.n++
	return fmt.Sprintf("%s%d", kind, d.n)
}

func (d *dag) growItem(s *pipeline.Stream[item], pass func(int64) bool, depth int, keyed bool) {
	op := d.rng.IntN(8)
	if depth > 4 {
		op = 0
	}
	switch op {
	case 0:
		dagSink(d, s, pass, func(m pipeline.Message[item]) []int64 { return []int64{m.Value().off} })
	case 1:
		name := d.name("filter")
		d.desc = append(d.desc, name)
		keep := func(v item) bool { return coin(name, v.off, 4) != 0 }
		d.growItem(stages.Filter(s, name, keep), func(off int64) bool { return pass(off) && coin(name, off, 4) != 0 }, depth+1, keyed)
	case 2:
		name := d.name("map")
		d.desc = append(d.desc, name)
		d.growItem(stages.Map(s, name, func(v item) item { return v }), pass, depth+1, keyed)
	case 3:
		name := d.name("dup")
		n := 2 + d.rng.IntN(2)
		d.desc = append(d.desc, fmt.Sprint(name, "(", n, ")"))
		for _, b := range stages.Duplicate(s, name, n, stages.Buffer(1+d.rng.IntN(8))) {
			d.growItem(b, pass, depth+1, keyed)
		}
	case 4, 5:
		name := d.name("fanout")
		workers := 1 + d.rng.IntN(6)
		opts := []stages.FanOutOpt{stages.Buffer(1 + d.rng.IntN(16))}
		unordered := d.rng.IntN(3) == 0
		if unordered {
			opts = append(opts, stages.Unordered())
		}
		d.desc = append(d.desc, fmt.Sprint(name, "(", workers, map[bool]string{true: ",unordered"}[unordered], ")"))
		d.growItem(stages.FanOut(s, name, workers, opts...), pass, depth+1, keyed || !unordered)
	case 6:
		if keyed {
			dagSink(d, s, pass, func(m pipeline.Message[item]) []int64 { return []int64{m.Value().off} })
			return
		}
		name := d.name("window")
		var spec stages.WindowSpec
		switch d.rng.IntN(3) {
		case 0:
			spec = stages.TumblingCount(1 + d.rng.IntN(5))
		case 1:
			size := 1 + d.rng.IntN(5)
			spec = stages.SlidingCount(size, 1+d.rng.IntN(size))
		case 2:
			spec = stages.Sliding(2*time.Millisecond, time.Millisecond)
		}
		d.desc = append(d.desc, name)
		growGroup(d, stages.Window(s, name, spec), pass, depth+1, func(p stages.Pane[item]) []int64 { return itemOffsets(p.Items) })
	case 7:
		if keyed {
			dagSink(d, s, pass, func(m pipeline.Message[item]) []int64 { return []int64{m.Value().off} })
			return
		}
		name := d.name("batch")
		d.desc = append(d.desc, name)
		linger := time.Duration(d.rng.IntN(2)) * time.Millisecond
		growGroup(d, stages.Batches(s, name, 1+d.rng.IntN(6), linger), pass, depth+1, itemOffsets)
	}
}

func itemOffsets(ms stages.Batch[item]) []int64 {
	var os []int64
	for _, m := range ms {
		os = append(os, m.Value().off)
	}
	return os
}

func growGroup[G any](d *dag, s *pipeline.Stream[G], pass func(int64) bool, depth int, members func(G) []int64) {
	switch d.rng.IntN(4) {
	case 0:
		name := d.name("dup")
		d.desc = append(d.desc, name)
		a, b := stages.Duplicate2(s, name)
		growGroup(d, a, pass, depth+1, members)
		growGroup(d, b, pass, depth+1, members)
	case 1:
		name := d.name("fanout")
		d.desc = append(d.desc, name)
		growGroup(d, stages.FanOut(s, name, 1+d.rng.IntN(4)), pass, depth+1, members)
	default:
		dagSink(d, s, pass, func(m pipeline.Message[G]) []int64 { return members(m.Value()) })
	}
}

// dagSink ends a branch with a sink that may be slow, fail or panic, and
// records when it finished with each record.
func dagSink[T any](d *dag, s *pipeline.Stream[T], pass func(int64) bool, members func(pipeline.Message[T]) []int64) {
	name := d.name("sink")
	flaky := d.rng.IntN(3) == 0
	slow := d.rng.IntN(2) == 0
	d.desc = append(d.desc, fmt.Sprint(name, map[bool]string{true: ",flaky"}[flaky], map[bool]string{true: ",slow"}[slow]))
	d.expect[name] = pass
	d.reached[name] = map[int64]int{}
	pipeline.Sink(s, name, func(ctx context.Context, m pipeline.Message[T]) error {
		offs := members(m)
		if slow && coin(name+"slow", offs[0], 3) == 0 {
			time.Sleep(time.Duration(coin(name+"us", offs[0], 300)) * time.Microsecond) // the workload
		}
		d.mu.Lock()
		for _, off := range offs {
			d.reached[name][off]++
			d.lastDone[off] = d.seq.Add(1)
		}
		d.mu.Unlock()
		if flaky {
			switch coin(name+"fail", offs[0], 6) {
			case 0:
				return pipeline.Permanent(errors.New("flaky sink"))
			case 1:
				panic("flaky sink panicked")
			}
		}
		return nil
	})
}

func runRandomDAG(t *testing.T, seed uint64) {
	d := &dag{
		t:         t,
		seed:      seed,
		rng:       rand.New(rand.NewPCG(seed, 4)),
		expect:    map[string]func(int64) bool{},
		reached:   map[string]map[int64]int{},
		lastDone:  map[int64]int64{},
		settledAt: map[int64]int64{},
	}
	dl := &pipelinetest.DeadLetters{Fail: func(_ context.Context, l pipeline.DeadLetter) error {
		if coin(fmt.Sprint(seed, "dl", l.Stage, time.Now().UnixNano()), l.Record.Offset, 3) == 0 {
			return errors.New("dead-letter topic unavailable")
		}
		return nil
	}}
	p := pipeline.New(pipeline.DeadLetters(dl), pipeline.Logger(quiet), pipeline.DeadLetterBackoff(100*time.Microsecond, time.Millisecond),
		pipeline.InputBuffer(1+d.rng.IntN(64)))
	src := pipeline.Source(p, "orders", pipeline.DecodeFunc[item](func(b []byte) (item, error) {
		var it item
		_, err := fmt.Sscan(string(b), &it.off)
		return it, err
	}))
	d.growItem(src, func(int64) bool { return true }, 0, false)
	if err := p.Err(); err != nil {
		t.Fatalf("seed %d: %v: %v", seed, d.desc, err)
	}

	n := 1 + d.rng.IntN(200)
	cancelAfter := -1
	if d.rng.IntN(4) == 0 {
		cancelAfter = d.rng.IntN(n)
	}
	s := pipelinetest.NewSettler()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var settled atomic.Int64
	s.OnSettled = func(r *pipeline.Record) {
		d.mu.Lock()
		d.settledAt[r.Offset] = d.seq.Add(1)
		d.mu.Unlock()
		if settled.Add(1) == int64(cancelAfter) {
			cancel()
		}
	}
	recs := s.Records(tp0, 0, n, func(i int, r *pipeline.Record) {
		r.Value = []byte(fmt.Sprint(i))
		if k := d.rng.IntN(12); k < 10 {
			r.Key = []byte(fmt.Sprint("k", k))
		}
	})

	// A committer samples the watermark while records flow.
	stop := make(chan struct{})
	var committer sync.WaitGroup
	committer.Add(1)
	go func() {
		defer committer.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			wm := s.Watermark(tp0)
			d.mu.Lock()
			for off := range wm {
				for sink, pass := range d.expect {
					if pass(off) && d.reached[sink][off] == 0 {
						d.bad = append(d.bad, fmt.Sprintf("commit at %d passes record %d, which %s has not finished", wm, off, sink))
					}
				}
			}
			d.mu.Unlock()
			time.Sleep(200 * time.Microsecond) // sampling period, not synchronisation
		}
	}()

	part, err := p.OpenPartition(ctx, tp0)
	if err != nil {
		t.Fatal(err)
	}
	for len(recs) > 0 {
		k := min(len(recs), 1+d.rng.IntN(40))
		if err := part.Handle(ctx, recs[:k]); err != nil {
			break
		}
		recs = recs[k:]
	}
	part.Close()
	close(stop)
	committer.Wait()

	name := fmt.Sprintf("seed %d, %d records, cancel after %d, pipeline %s", seed, n, cancelAfter, strings.Join(d.desc, " "))
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.bad) > 0 {
		t.Fatalf("%s: %v", name, d.bad[:min(3, len(d.bad))])
	}
	if tw := s.Twice(); len(tw) > 0 {
		t.Fatalf("%s: settled twice: %v", name, tw)
	}
	for off, at := range d.settledAt {
		if last, ok := d.lastDone[off]; ok && last > at {
			t.Fatalf("%s: record %d settled before a sink finished with it", name, off)
		}
		for sink, pass := range d.expect {
			if pass(off) && d.reached[sink][off] == 0 {
				t.Fatalf("%s: record %d settled but never reached %s", name, off, sink)
			}
		}
	}
	for sink, pass := range d.expect {
		for off := range d.reached[sink] {
			if !pass(off) {
				t.Fatalf("%s: record %d reached %s, which its filters should have kept it from", name, off, sink)
			}
		}
	}
	if cancelAfter < 0 && s.Watermark(tp0) != int64(n) {
		t.Fatalf("%s: watermark %d after Close, want %d", name, s.Watermark(tp0), n)
	}
	if cancelAfter >= 0 {
		goleak.VerifyNone(t)
	}
}
