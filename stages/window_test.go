package stages_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/pipeline/pipelinetest"
	"github.com/sluice-go/sluice/stages"
)

// offsets lists the offsets of a pane's members.
func offsets[T any](items []pipeline.Message[T]) []int64 {
	var os []int64
	for _, m := range items {
		os = append(os, m.Offset())
	}
	return os
}

func TestEventTimeSlidingWindowsWithLateData(t *testing.T) {
	// Through a whole pipeline: random out-of-order timestamps, sliding
	// windows, allowed lateness, late records to a side output. Panes must
	// hold exactly the members a simple model says, each record must settle
	// only after every pane it is in was handled, and everything settles.
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 3))
		const sec = int64(time.Second)
		every := sec * int64(1+rng.IntN(3))
		size := every * int64(1+rng.IntN(3))
		grace := time.Duration(rng.IntN(3)) * time.Second
		n := 1 + rng.IntN(80)
		ts := make([]int64, n)
		clock := int64(1_700_000_000) * sec
		for i := range ts {
			clock += int64(rng.IntN(1500)) * int64(time.Millisecond)
			ts[i] = clock - int64(rng.IntN(4000))*int64(time.Millisecond)
		}

		// The model: member sets per window start, and late records.
		want := map[int64][]int64{}
		var wantLate []int64
		now := int64(0)
		for i, t := range ts {
			now = max(now, t)
			joined := false
			for s := (t/every - int64(size/every) - 1) * every; s <= t; s += every {
				if s <= t && t < s+size && s+size+int64(grace) > now {
					want[s] = append(want[s], int64(i))
					joined = true
				}
			}
			if !joined {
				wantLate = append(wantLate, int64(i))
			}
		}

		p := pipeline.New()
		win, late := stages.WindowWithLate(pipeline.Source(p, "orders", pipeline.Bytes()), "w",
			stages.Sliding(time.Duration(size), time.Duration(every)), stages.EventTime(grace))
		var mu sync.Mutex
		got := map[int64][]int64{}
		handled := map[int64]bool{} // window starts whose sink returned
		var bad []string
		pipeline.Sink(win, "panes", func(_ context.Context, m pipeline.Message[stages.Pane[[]byte]]) error {
			mu.Lock()
			defer mu.Unlock()
			pane := m.Value()
			start := pane.Start.UnixNano()
			if _, dup := got[start]; dup {
				bad = append(bad, fmt.Sprintf("pane %d emitted twice", start))
			}
			if pane.End.UnixNano()-start != size {
				bad = append(bad, fmt.Sprintf("pane %d ends at %v", start, pane.End))
			}
			got[start] = offsets(pane.Items)
			handled[start] = true
			return nil
		})
		var lateMu sync.Mutex
		var gotLate []int64
		pipeline.Sink(late, "late", func(_ context.Context, m pipeline.Message[[]byte]) error {
			lateMu.Lock()
			gotLate = append(gotLate, m.Offset())
			lateMu.Unlock()
			return nil
		})
		s := pipelinetest.NewSettler()
		s.OnSettled = func(r *pipeline.Record) {
			mu.Lock()
			defer mu.Unlock()
			for start, members := range want {
				if slices.Contains(members, r.Offset) && !handled[start] {
					bad = append(bad, fmt.Sprintf("record %d settled before its pane %d was handled", r.Offset, start))
				}
			}
		}
		recs := s.Records(tp0, 0, n, func(i int, r *pipeline.Record) { r.Timestamp = time.Unix(0, ts[i]) })
		feed(t, p, recs)

		name := fmt.Sprintf("seed %d size %v every %v grace %v", seed, time.Duration(size), time.Duration(every), grace)
		if len(bad) > 0 {
			t.Fatalf("%s: %v", name, bad)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s:\npanes %v\nwant  %v", name, got, want)
		}
		if !slices.Equal(gotLate, wantLate) {
			t.Fatalf("%s: late %v, want %v", name, gotLate, wantLate)
		}
		if s.Watermark(tp0) != int64(n) || len(s.Twice()) != 0 {
			t.Fatalf("%s: watermark %d twice %v", name, s.Watermark(tp0), s.Twice())
		}
	}
}

func TestLateRecordsAreDroppedAndSettledByDefault(t *testing.T) {
	rec := &handledHook{m: map[string]int{}}
	p := pipeline.New(pipeline.Hooks(rec))
	var c collect[stages.Pane[[]byte]]
	pipeline.Sink(stages.Window(pipeline.Source(p, "orders", pipeline.Bytes()), "w", stages.Tumbling(time.Second), stages.EventTime(0)), "panes", c.sink)
	s := pipelinetest.NewSettler()
	secs := []int64{10, 12, 11, 9, 13} // 11 and 9 are late once 12 is seen
	feed(t, p, s.Records(tp0, 0, len(secs), func(i int, r *pipeline.Record) { r.Timestamp = time.Unix(secs[i], 0) }))
	var got []string
	for _, pane := range c.values() {
		got = append(got, fmt.Sprint(pane.Start.Unix(), offsets(pane.Items), pane.Early))
	}
	if fmt.Sprint(got) != "[10 [0] false 12 [1] false 13 [4] true]" {
		t.Errorf("panes %v", got)
	}
	if s.Watermark(tp0) != 5 || rec.get("w/filtered") != 2 {
		t.Errorf("watermark %d, filtered %d; want 5 and 2", s.Watermark(tp0), rec.get("w/filtered"))
	}
}

type handledHook struct {
	mu sync.Mutex
	m  map[string]int
}

func (h *handledHook) OnHandled(stage string, o pipeline.Outcome, n int, _ time.Duration) {
	h.mu.Lock()
	h.m[stage+"/"+o.String()] += n
	h.mu.Unlock()
}

func (h *handledHook) get(k string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m[k]
}

func TestProcessingTimeWindowClosesOnTimerAndFlushesOnClose(t *testing.T) {
	start := time.Unix(1000, 0)
	clock := pipelinetest.NewClock(start)
	p := pipeline.New(pipeline.Clock(clock))
	panes := make(chan stages.Pane[int], 10)
	// The window runs in the goroutine that pushes into it, after the
	// filter: once the filter sees the sentinel, the records before it are
	// in the window. Moving the clock before that (as this test once did,
	// as soon as the window's timer existed) put the later records in the
	// next window on a busy machine.
	const sentinel = -1
	arrived := make(chan struct{})
	seen := stages.Filter(pipeline.Source(p, "orders", intCodec), "seen", func(v int) bool {
		if v == sentinel {
			close(arrived)
			return false
		}
		return true
	})
	pipeline.Sink(stages.Window(seen, "w", stages.Tumbling(10*time.Second)), "panes",
		func(_ context.Context, m pipeline.Message[stages.Pane[int]]) error {
			panes <- m.Value()
			return nil
		})
	s := pipelinetest.NewSettler()
	part, err := p.OpenPartition(context.Background(), tp0)
	if err != nil {
		t.Fatal(err)
	}
	recs := s.Records(tp0, 0, 4, func(i int, r *pipeline.Record) {
		r.Value = []byte(strconv.Itoa(i))
		if i == 3 {
			r.Value = []byte(strconv.Itoa(sentinel))
		}
	})
	if err := part.Handle(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	select {
	case <-arrived:
	case <-time.After(timeout):
		t.Fatal("the records never reached the window")
	}
	if !clock.WaitTimers(1, timeout) { // the window's alarm armed its timer
		t.Fatal("no timer for the open window")
	}
	clock.Advance(10 * time.Second) // past the window's end: no record needed to close it
	select {
	case pane := <-panes:
		if !pane.Start.Equal(start) || pane.Early || len(pane.Items) != 3 {
			t.Errorf("pane %v %v early %v with %d items", pane.Start, pane.End, pane.Early, len(pane.Items))
		}
	case <-time.After(timeout):
		t.Fatal("window did not close when the clock passed its end")
	}
	if !s.WaitCount(4, timeout) { // the members and the filtered sentinel
		t.Fatal("members not settled")
	}
	if err := part.Handle(context.Background(), s.Records(tp0, 4, 2, func(i int, r *pipeline.Record) { r.Value = []byte("7") })); err != nil {
		t.Fatal(err)
	}
	part.Close() // flushes the open window early
	pane := <-panes
	if !pane.Early || len(pane.Items) != 2 || s.Watermark(tp0) != 6 {
		t.Errorf("flushed pane early %v with %d items, watermark %d", pane.Early, len(pane.Items), s.Watermark(tp0))
	}
}

func TestCountWindowFlushesPartialOnClose(t *testing.T) {
	p := pipeline.New()
	var c collect[stages.Pane[int]]
	pipeline.Sink(stages.Window(pipeline.Source(p, "orders", intCodec), "w", stages.SlidingCount(4, 2)), "panes", c.sink)
	s := pipelinetest.NewSettler()
	feed(t, p, numbers(s, 7))
	var got []string
	for _, pane := range c.values() {
		got = append(got, fmt.Sprint(pane.Index, offsets(pane.Items), pane.Early))
	}
	want := "[0 [0 1 2 3] false 1 [2 3 4 5] false 2 [4 5 6] true 3 [6] true]"
	if fmt.Sprint(got) != want {
		t.Errorf("panes %v\nwant %v", got, want)
	}
	if s.Watermark(tp0) != 7 || len(s.Twice()) != 0 {
		t.Errorf("watermark %d twice %v", s.Watermark(tp0), s.Twice())
	}
}

func TestFailedWindowDeadLettersEveryMember(t *testing.T) {
	dl := &pipelinetest.DeadLetters{}
	p := pipeline.New(pipeline.DeadLetters(dl), pipeline.Logger(quiet))
	pipeline.Sink(stages.Window(pipeline.Source(p, "orders", intCodec), "w", stages.TumblingCount(3)), "totals",
		func(_ context.Context, m pipeline.Message[stages.Pane[int]]) error {
			if m.Value().Index == 1 {
				return pipeline.Permanent(errors.New("bad pane"))
			}
			return nil
		})
	s := pipelinetest.NewSettler()
	feed(t, p, numbers(s, 9))
	var got []int64
	for _, l := range dl.Letters() {
		if l.Stage != "totals" || l.Class != pipeline.ClassPermanent {
			t.Errorf("dead letter %+v", l)
		}
		got = append(got, l.Record.Offset)
	}
	if fmt.Sprint(got) != "[3 4 5]" || s.Watermark(tp0) != 9 {
		t.Errorf("dead letters %v watermark %d, want [3 4 5] and 9", got, s.Watermark(tp0))
	}
}

func TestBatchBySizeLingerAndClose(t *testing.T) {
	clock := pipelinetest.NewClock(time.Unix(0, 0))
	p := pipeline.New(pipeline.Clock(clock))
	batches := make(chan []int64, 10)
	pipeline.Sink(stages.Batches(pipeline.Source(p, "orders", intCodec), "b", 3, time.Second), "bulk",
		func(_ context.Context, m pipeline.Message[stages.Batch[int]]) error {
			batches <- offsets(m.Value())
			return nil
		})
	s := pipelinetest.NewSettler()
	part, err := p.OpenPartition(context.Background(), tp0)
	if err != nil {
		t.Fatal(err)
	}
	if err := part.Handle(context.Background(), numbers(s, 7)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"[0 1 2]", "[3 4 5]"} {
		if got := fmt.Sprint(<-batches); got != want {
			t.Errorf("batch %s, want %s", got, want)
		}
	}
	if !s.WaitCount(6, timeout) || s.Count() != 6 {
		t.Fatalf("settled %d, want 6 (the 7th lingers)", s.Count())
	}
	if !clock.WaitTimers(1, timeout) {
		t.Fatal("no linger timer")
	}
	clock.Advance(time.Second)
	if got := fmt.Sprint(<-batches); got != "[6]" {
		t.Errorf("lingered batch %s, want [6]", got)
	}
	if err := part.Handle(context.Background(), s.Records(tp0, 7, 2, func(i int, r *pipeline.Record) { r.Value = []byte("1") })); err != nil {
		t.Fatal(err)
	}
	part.Close()
	if got := fmt.Sprint(<-batches); got != "[7 8]" || s.Watermark(tp0) != 9 {
		t.Errorf("flushed batch %s watermark %d", got, s.Watermark(tp0))
	}
}

func TestFailedBatchDeadLettersEveryMember(t *testing.T) {
	dl := &pipelinetest.DeadLetters{}
	p := pipeline.New(pipeline.DeadLetters(dl), pipeline.Logger(quiet))
	pipeline.Sink(stages.Batches(pipeline.Source(p, "orders", intCodec), "b", 2, 0), "bulk",
		func(_ context.Context, m pipeline.Message[stages.Batch[int]]) error {
			if m.Value()[0].Value() == 2 {
				panic("bulk insert")
			}
			return nil
		})
	s := pipelinetest.NewSettler()
	feed(t, p, numbers(s, 5))
	var got []string
	for _, l := range dl.Letters() {
		got = append(got, strconv.FormatInt(l.Record.Offset, 10)+l.Class)
	}
	if fmt.Sprint(got) != "[2panic 3panic]" || s.Watermark(tp0) != 5 {
		t.Errorf("dead letters %v watermark %d", got, s.Watermark(tp0))
	}
}
