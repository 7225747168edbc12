package stages

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/sluice-go/sluice/pipeline"
)

// WindowSpec says how Window groups messages: by time or by count,
// tumbling (each message in one window) or sliding (windows overlap and a
// message may be in several).
type WindowSpec struct {
	count bool
	size  int64 // nanoseconds or messages
	every int64 // how far apart window starts are, same unit
	err   error
}

// Tumbling makes back-to-back time windows of the given size, aligned to the
// Unix epoch: [0, size), [size, 2*size), ...
func Tumbling(size time.Duration) WindowSpec { return Sliding(size, size) }

// Sliding makes time windows of the given size that start every every
// (aligned to the Unix epoch), so a message is in about size/every windows.
// every must be at most size.
func Sliding(size, every time.Duration) WindowSpec {
	s := WindowSpec{size: int64(size), every: int64(every)}
	if size <= 0 || every <= 0 || every > size {
		s.err = fmt.Errorf("time window needs 0 < every <= size, got size %v every %v", size, every)
	}
	return s
}

// TumblingCount makes windows of n consecutive messages.
func TumblingCount(n int) WindowSpec { return SlidingCount(n, n) }

// SlidingCount makes windows of n consecutive messages that start every
// every messages: window j holds messages j*every ... j*every+n-1 of the
// partition (counted from when the partition was opened). every must be at
// most n.
func SlidingCount(n, every int) WindowSpec {
	s := WindowSpec{count: true, size: int64(n), every: int64(every)}
	if n <= 0 || every <= 0 || every > n {
		s.err = fmt.Errorf("count window needs 0 < every <= n, got n %d every %d", n, every)
	}
	return s
}

// WindowOpt configures Window.
type WindowOpt interface{ applyWindow(*windowCfg) }

type windowCfg struct {
	event bool
	grace time.Duration
}

type eventTimeOpt time.Duration

func (o eventTimeOpt) applyWindow(c *windowCfg) { c.event, c.grace = true, time.Duration(o) }

// EventTime makes time windows use each record's timestamp instead of the
// time the message reaches the window (processing time, the default).
//
// Event time advances with the largest timestamp seen in the partition (the
// stream time). A window [start, end) closes, and is emitted, when stream
// time reaches end + allowedLateness. A message whose windows have all
// closed is late: Window settles and drops it (counted as
// pipeline.OutcomeFiltered under the window's name), WindowWithLate sends it
// to its second output. A message in several sliding windows joins those
// still open. A record without a timestamp is placed at the current stream
// time.
//
// Stream time only moves when records arrive: if a partition goes quiet,
// its last windows stay open, and their records unsettled, until more
// records come or the partition closes (which flushes them).
func EventTime(allowedLateness time.Duration) WindowOpt { return eventTimeOpt(allowedLateness) }

// Pane is what a window emits: its members, in the order they arrived.
type Pane[T any] struct {
	// Start and End bound a time window: [Start, End). Zero for count
	// windows.
	Start, End time.Time
	// Index numbers the window: for count windows the j of SlidingCount;
	// for time windows Start/every in Unix nanoseconds.
	Index int64
	// Early says the window was emitted before it was complete (count) or
	// closed (time), because the partition closed.
	Early bool
	// Items are the members. Their tokens belong to the pane's message:
	// do not settle them.
	Items []pipeline.Message[T]
}

// Window groups messages into windows (see WindowSpec) and emits each window
// as one message whose value is a Pane. The members settle when that message
// settles (once per window they are in, so a message in several sliding
// windows settles after the last of them); if it is dead-lettered, every
// member is.
//
// Time windows run on processing time (the pipeline's clock when the message
// reaches the window) unless EventTime is given. Processing-time windows are
// emitted when the clock passes their end, by a timer if no message comes.
// Count windows are emitted when full.
//
// When the partition closes (revoke, shutdown), open windows are emitted at
// once, Early, so that their members can settle before the final commit.
// When the partition is cancelled, they are dropped unsettled.
//
// Members are held unsettled while their window is open, so the consumer's
// bound on unsettled records per partition must exceed the largest window,
// or the partition pauses until the window closes (by time, or for event
// time, never: prefer processing time, count windows or small windows when
// that bound is tight).
//
// Window is safe behind a FanOut only if the fan-out is Unordered.
func Window[T any](in *pipeline.Stream[T], name string, spec WindowSpec, opts ...WindowOpt) *pipeline.Stream[Pane[T]] {
	info, cfg := windowInfo(name, spec, opts)
	return pipeline.Connect(in, info, func(env *pipeline.Env, out pipeline.Inlet[Pane[T]]) pipeline.Inlet[T] {
		return newWindow[T](env, name, spec, cfg, out, nil)
	})
}

// WindowWithLate is Window with a second output for late records (see
// EventTime) instead of dropping them. Late records keep their own tokens:
// whatever consumes the second output settles them.
func WindowWithLate[T any](in *pipeline.Stream[T], name string, spec WindowSpec, opts ...WindowOpt) (*pipeline.Stream[Pane[T]], *pipeline.Stream[T]) {
	info, cfg := windowInfo(name, spec, opts)
	return pipeline.Connect2(in, info, func(env *pipeline.Env, out pipeline.Inlet[Pane[T]], late pipeline.Inlet[T]) pipeline.Inlet[T] {
		return newWindow[T](env, name, spec, cfg, out, late)
	})
}

func windowInfo(name string, spec WindowSpec, opts []WindowOpt) (pipeline.StageInfo, windowCfg) {
	var cfg windowCfg
	for _, o := range opts {
		o.applyWindow(&cfg)
	}
	info := pipeline.StageInfo{Name: name, Holds: true, Err: spec.err}
	switch {
	case spec.size == 0:
		info.Err = fmt.Errorf("zero WindowSpec: use Tumbling, Sliding, TumblingCount or SlidingCount")
	case cfg.event && spec.count:
		info.Err = fmt.Errorf("EventTime applies to time windows, not count windows")
	case cfg.grace < 0:
		info.Err = fmt.Errorf("EventTime: negative allowed lateness %v", cfg.grace)
	}
	return info, cfg
}

type window[T any] struct {
	env  *pipeline.Env
	name string
	out  pipeline.Inlet[Pane[T]]
	late pipeline.Inlet[T] // nil: drop late messages

	mu      sync.Mutex
	w       windower[T]
	alarm   *alarm // processing-time windows only
	armed   int64  // end of the window the alarm is set for
	ended   bool
	stopped bool
}

func newWindow[T any](env *pipeline.Env, name string, spec WindowSpec, cfg windowCfg, out pipeline.Inlet[Pane[T]], late pipeline.Inlet[T]) *window[T] {
	s := &window[T]{env: env, name: name, out: out, late: late}
	s.w = windower[T]{spec: spec, grace: int64(cfg.grace), emit: s.emit}
	if spec.count {
		s.w.hint = int(min(spec.size, maxHint))
	}
	if !spec.count && !cfg.event {
		s.alarm = newAlarm(env, s.fire)
	}
	s.w.event = cfg.event
	return s
}

func (s *window[T]) Push(m pipeline.Message[T]) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	var t int64
	switch {
	case s.w.spec.count:
	case !s.w.event:
		t = s.env.Clock().Now().UnixNano()
	case m.Timestamp().IsZero() && s.w.started:
		t = s.w.now
	case m.Timestamp().IsZero():
		t = s.env.Clock().Now().UnixNano()
	default:
		t = m.Timestamp().UnixNano()
	}
	k := s.w.add(t, m)
	if k > 1 {
		m.Hold(k - 1)
	}
	if !s.w.closeDue() {
		s.stopped = true
		return false
	}
	if k == 0 {
		if s.late != nil {
			if !s.late.Push(m) {
				s.stopped = true
				return false
			}
		} else {
			n := s.env.Count(m.Token())
			m.Settle()
			s.env.Handled(s.name, pipeline.OutcomeFiltered, n, 0)
		}
	}
	s.rearm()
	return true
}

// rearm sets the alarm for the end of the oldest open window. s.mu is held.
func (s *window[T]) rearm() {
	if s.alarm == nil || len(s.w.open) == 0 {
		return
	}
	if end := s.w.open[0].start + s.w.spec.size; end != s.armed {
		s.armed = end
		s.alarm.set(time.Unix(0, end))
	}
}

// fire closes processing-time windows whose end has passed.
func (s *window[T]) fire() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.stopped {
		return time.Time{}
	}
	s.w.advance(s.env.Clock().Now().UnixNano())
	if !s.w.closeDue() {
		s.stopped = true
		return time.Time{}
	}
	s.armed = 0
	if len(s.w.open) == 0 {
		return time.Time{}
	}
	s.armed = s.w.open[0].start + s.w.spec.size
	return time.Unix(0, s.armed)
}

func (s *window[T]) End() {
	s.mu.Lock()
	ok := !s.stopped
	if ok && s.alarm != nil {
		s.w.advance(s.env.Clock().Now().UnixNano())
		ok = s.w.closeDue()
	}
	if ok {
		ok = s.w.flush()
	}
	s.ended = true
	s.mu.Unlock()
	if s.alarm != nil {
		s.alarm.stop()
	}
	if !ok {
		return
	}
	s.out.End()
	if s.late != nil {
		s.late.End()
	}
}

// emit sends a window on. s.mu is held.
func (s *window[T]) emit(p *openPane[T], early bool) bool {
	pane := Pane[T]{Index: p.start, Early: early, Items: p.items}
	if !s.w.spec.count {
		pane.Start = time.Unix(0, p.start)
		pane.End = time.Unix(0, p.start+s.w.spec.size)
		pane.Index = floorDiv(p.start, s.w.spec.every)
	}
	return s.out.Push(pipeline.Group(pane, p.items))
}

// windower assigns messages to windows and closes them; it is the part of
// Window that knows no goroutines, locks or clocks.
type windower[T any] struct {
	spec  WindowSpec
	event bool
	grace int64
	emit  func(p *openPane[T], early bool) bool

	open []*openPane[T] // sorted by start
	hint int            // capacity for a new window's items: the size of the last one
	seen int64          // count windows: messages seen
	now  int64          // time windows: stream time, Unix ns
	// started says now has been set.
	started bool
}

// openPane is an open window: start is its start in Unix ns (time windows)
// or its index j (count windows).
type openPane[T any] struct {
	start int64
	items []pipeline.Message[T]
}

// add puts m, stamped t (Unix ns; ignored by count windows), into every open
// window it belongs to and returns how many that is: 0 means late.
func (w *windower[T]) add(t int64, m pipeline.Message[T]) int {
	if w.spec.count {
		i := w.seen
		w.seen++
		lo := int64(0)
		if i >= w.spec.size {
			lo = (i-w.spec.size)/w.spec.every + 1
		}
		k := 0
		for j := lo; j <= i/w.spec.every; j++ {
			p := w.pane(j)
			p.items = append(p.items, m)
			k++
		}
		return k
	}
	w.advance(t)
	k := 0
	for s := floorDiv(t, w.spec.every) * w.spec.every; s > t-w.spec.size; s -= w.spec.every {
		if s+w.spec.size+w.grace <= w.now {
			break // closed, and so are all earlier windows
		}
		p := w.pane(s)
		p.items = append(p.items, m)
		k++
	}
	return k
}

// advance moves stream time forward to t.
func (w *windower[T]) advance(t int64) {
	if !w.started || t > w.now {
		w.now, w.started = t, true
	}
}

// pane returns the open window that starts at start, opening it if needed.
func (w *windower[T]) pane(start int64) *openPane[T] {
	i := sort.Search(len(w.open), func(i int) bool { return w.open[i].start >= start })
	if i < len(w.open) && w.open[i].start == start {
		return w.open[i]
	}
	p := &openPane[T]{start: start, items: make([]pipeline.Message[T], 0, w.hint)}
	w.open = append(w.open, nil)
	copy(w.open[i+1:], w.open[i:])
	w.open[i] = p
	return p
}

// due reports whether open window p is complete (count) or closed (time).
func (w *windower[T]) due(p *openPane[T]) bool {
	if w.spec.count {
		return w.seen >= p.start*w.spec.every+w.spec.size
	}
	return p.start+w.spec.size+w.grace <= w.now
}

// closeDue emits the windows that are due, oldest first, and reports false
// if the downstream was abandoned.
func (w *windower[T]) closeDue() bool {
	for len(w.open) > 0 && w.due(w.open[0]) {
		if !w.emitFirst(false) {
			return false
		}
	}
	return true
}

// flush emits every open window, oldest first, as early.
func (w *windower[T]) flush() bool {
	for len(w.open) > 0 {
		if !w.emitFirst(true) {
			return false
		}
	}
	return true
}

func (w *windower[T]) emitFirst(early bool) bool {
	p := w.open[0]
	w.hint = min(len(p.items), maxHint)
	w.open[0] = nil
	w.open = w.open[1:]
	return w.emit(p, early)
}

// maxHint caps the capacity windows are made with, so that one huge window
// does not make every later one reserve as much.
const maxHint = 4096

// floorDiv is a/b rounded towards minus infinity.
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
