package stages

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/sluice-go/sluice/pipeline"
)

// refPane is a window as the reference model sees it.
type refPane struct {
	start   int64
	members []int // input indexes
	early   bool
	closeAt int // index of the event after which it must have been emitted; -1 at flush
}

func (p refPane) String() string {
	return fmt.Sprintf("{start %d members %v early %v at %d}", p.start, p.members, p.early, p.closeAt)
}

// refTime is the reference model of time windows: events are record arrivals
// (stamp t) or clock ticks; a record joins every window [s, s+size) that
// contains t, with s a multiple of every, unless stream time (the largest
// stamp so far) has reached s+size+grace. A window is due at the first event
// at which stream time reaches s+size+grace.
func refTime(size, every, grace int64, events []event) (map[int64]*refPane, []int) {
	panes := map[int64]*refPane{}
	var late []int
	now, started := int64(0), false
	for i, e := range events {
		if !started || e.t > now {
			now, started = e.t, true
		}
		if e.record {
			joined := false
			for s := e.t - size - every; s <= e.t; s++ {
				// brute force: every aligned start near t
				if s+size <= e.t || (s%every+every)%every != 0 {
					continue
				}
				if s+size+grace <= now {
					continue
				}
				p := panes[s]
				if p == nil {
					p = &refPane{start: s, closeAt: -1, early: true}
					panes[s] = p
				}
				p.members = append(p.members, i)
				joined = true
			}
			if !joined {
				late = append(late, i)
			}
		}
		for _, p := range panes {
			if p.closeAt == -1 && p.start+size+grace <= now {
				p.closeAt, p.early = i, false
			}
		}
	}
	return panes, late
}

type event struct {
	t      int64
	record bool
}

type gotPane struct {
	start   int64
	members []int
	early   bool
	at      int
}

func TestWindowerTimeMatchesReferenceModel(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 1))
		every := int64(1 + rng.IntN(5))
		size := every * int64(1+rng.IntN(4))
		if rng.IntN(3) == 0 {
			size += int64(rng.IntN(int(every))) // size not a multiple of every
		}
		eventTime := rng.IntN(2) == 0
		grace := int64(0)
		if eventTime {
			grace = int64(rng.IntN(6))
		}
		var events []event
		clock := int64(rng.IntN(20)) - 10 // negative times too
		for range 1 + rng.IntN(60) {
			if eventTime {
				// out of order: jitter around a rising clock
				clock += int64(rng.IntN(3))
				events = append(events, eventAt(clock-int64(rng.IntN(8)), true))
			} else {
				clock += int64(rng.IntN(4))
				events = append(events, eventAt(clock, rng.IntN(4) != 0)) // some ticks
			}
		}
		name := fmt.Sprintf("seed %d size %d every %d grace %d event %v", seed, size, every, grace, eventTime)

		var got []gotPane
		at := 0
		w := windower[int]{spec: WindowSpec{size: size, every: every}, grace: grace, event: eventTime}
		w.emit = func(p *openPane[int], early bool) bool {
			var ms []int
			for _, m := range p.items {
				ms = append(ms, m.Value())
			}
			got = append(got, gotPane{p.start, ms, early, at})
			return true
		}
		var gotLate []int
		for i, e := range events {
			at = i
			if e.record {
				if w.add(e.t, pipeline.NewMessage(i, &pipeline.Record{})) == 0 {
					gotLate = append(gotLate, i)
				}
			} else {
				w.advance(e.t)
			}
			w.closeDue()
		}
		at = -1
		w.flush()

		want, wantLate := refTime(size, every, grace, events)
		if !slices.Equal(gotLate, wantLate) {
			t.Fatalf("%s: late %v, want %v", name, gotLate, wantLate)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d panes, want %d: got %v want %v", name, len(got), len(want), got, want)
		}
		for i, g := range got {
			r := want[g.start]
			if r == nil || !slices.Equal(g.members, r.members) || g.early != r.early || g.at != r.closeAt {
				t.Fatalf("%s: pane %+v, want %v", name, g, r)
			}
			if i > 0 && got[i-1].start >= g.start {
				t.Fatalf("%s: panes out of order: %v", name, got)
			}
		}
	}
}

func eventAt(t int64, record bool) event { return event{t: t, record: record} }

func TestWindowerCountMatchesReferenceModel(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 2))
		size := 1 + rng.IntN(6)
		every := 1 + rng.IntN(size)
		n := rng.IntN(40)
		name := fmt.Sprintf("seed %d size %d every %d n %d", seed, size, every, n)

		var got []gotPane
		at := 0
		w := windower[int]{spec: WindowSpec{count: true, size: int64(size), every: int64(every)}}
		w.emit = func(p *openPane[int], early bool) bool {
			var ms []int
			for _, m := range p.items {
				ms = append(ms, m.Value())
			}
			got = append(got, gotPane{p.start, ms, early, at})
			return true
		}
		for i := range n {
			at = i
			if k := w.add(0, pipeline.NewMessage(i, &pipeline.Record{})); k < 1 {
				t.Fatalf("%s: message %d joined no window", name, i)
			}
			w.closeDue()
		}
		at = -1
		w.flush()

		// Reference: window j holds j*every .. j*every+size-1, j >= 0, and
		// is emitted after its last message or, partial, at the flush.
		var want []gotPane
		for j := 0; j*every < n; j++ {
			p := gotPane{start: int64(j), at: -1, early: true}
			for i := j * every; i < j*every+size && i < n; i++ {
				p.members = append(p.members, i)
			}
			if last := j*every + size - 1; last < n {
				p.at, p.early = last, false
			}
			want = append(want, p)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s:\ngot  %v\nwant %v", name, got, want)
		}
	}
}

func TestFloorDiv(t *testing.T) {
	tests := []struct{ a, b, want int64 }{
		{7, 2, 3}, {-7, 2, -4}, {-8, 2, -4}, {0, 3, 0}, {-1, 3, -1},
	}
	for _, tt := range tests {
		if got := floorDiv(tt.a, tt.b); got != tt.want {
			t.Errorf("floorDiv(%d, %d) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
