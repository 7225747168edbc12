package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-go/sluice"
)

// Pipeline is a typed graph of sources, stages and sinks, built in Go code
// with Source, the functions of package stages, and Sink. It is the
// consumer's Handler: each partition the consumer opens gets its own running
// instance of the graph (goroutines and bounded buffers), fed by the source
// for the partition's topic.
//
// Build the graph from one goroutine, then check Err before handing the
// pipeline to a consumer. Once a partition has been opened the graph is
// sealed: further building is reported by Err and changes nothing.
type Pipeline struct {
	dl         DeadLetterer
	log        *slog.Logger
	clock      sluice.Clock
	hooks      hooks
	inBuf      int
	dlMin      time.Duration
	dlMax      time.Duration
	timedSinks bool

	retryMin      time.Duration
	retryMax      time.Duration
	retryAttempts int

	mu      sync.Mutex
	errs    []error
	names   map[string]bool
	sources map[string]opener
	streams []*streamBase
	sealed  bool
	sealErr error
}

var _ Handler = (*Pipeline)(nil)

// Opt configures a Pipeline.
type Opt interface{ apply(*Pipeline) }

type optFunc func(*Pipeline)

func (f optFunc) apply(p *Pipeline) { f(p) }

// DeadLetters sets where records that cannot be handled go: decode errors,
// panics and sink errors are written to dl, and the record settles once dl
// acknowledges the write (failed writes are retried with backoff until the
// partition is cancelled). Default: none, and a failed record is held
// unsettled (logged, counted as OutcomeHeld), so the partition's commits stop
// before it and the consumer's backpressure eventually pauses the partition.
// Nothing is ever dropped silently.
func DeadLetters(dl DeadLetterer) Opt { return optFunc(func(p *Pipeline) { p.dl = dl }) }

// Logger sets the logger for failures the pipeline handles itself (dead
// letters, held records, recovered panics with their stacks). Payloads are
// never logged; records are named by topic/partition@offset. Default (nil):
// slog.Default().
func Logger(l *slog.Logger) Opt { return optFunc(func(p *Pipeline) { p.log = l }) }

// Clock sets the clock for processing-time windows, batch linger, sink
// latencies and the backoff of sink retries and dead-letter writes. Default
// (nil): sluice.SystemClock. Tests pass a pipelinetest.Clock.
func Clock(c sluice.Clock) Opt { return optFunc(func(p *Pipeline) { p.clock = c }) }

// Hooks adds observers; each must implement at least one of HookHandled,
// HookDeadLetter, HookDeadLetterError and HookSinkRetry, or Err reports a
// *sluice.ConfigError naming Hooks.
func Hooks(hs ...Hook) Opt {
	return optFunc(func(p *Pipeline) {
		for i, h := range hs {
			if !p.hooks.add(h) {
				p.errs = append(p.errs, configErr("Hooks", "", fmt.Sprintf("%T", h),
					fmt.Sprintf("hook %d implements none of HookHandled, HookDeadLetter, HookDeadLetterError, HookSinkRetry", i)))
			}
		}
	})
}

func configErr(option, field string, value any, reason string) *sluice.ConfigError {
	return &sluice.ConfigError{Package: "pipeline", Option: option, Field: field, Value: value, Reason: reason}
}

// backoffErr checks a (min, max) backoff option.
func backoffErr(option string, lo, hi time.Duration) error {
	switch {
	case lo <= 0:
		return configErr(option, "min", lo, "must be positive")
	case hi < lo:
		return configErr(option, "max", hi, fmt.Sprintf("must be at least min (%v)", lo))
	}
	return nil
}

// InputBuffer bounds the records that wait between the consumer's Handle and
// the first stage of a partition, in records; Handle blocks when it is full.
// Default 1024. Larger absorbs bursts; smaller bounds memory and shortens the
// drain on revoke.
func InputBuffer(n int) Opt { return optFunc(func(p *Pipeline) { p.inBuf = n }) }

// DeadLetterBackoff sets the wait between failed dead-letter writes of one
// record: it starts at min, doubles up to max, with jitter. Default 100ms and
// 10s. A short max finds a recovered dead-letter topic sooner and costs more
// requests while it is down.
func DeadLetterBackoff(min, max time.Duration) Opt {
	return optFunc(func(p *Pipeline) { p.dlMin, p.dlMax = min, max })
}

// SinkBackoff sets the wait between attempts of a message whose sink failed
// transiently (see Sink): it starts at min and doubles up to max, with
// jitter. Default 100ms and 30s. A short max finds a recovered downstream
// sooner and sends it more calls while it is down.
func SinkBackoff(min, max time.Duration) Opt {
	return optFunc(func(p *Pipeline) { p.retryMin, p.retryMax = min, max })
}

// SinkAttempts limits how many times a sink is called for a message that
// keeps failing transiently; the message is then dead-lettered as
// ClassExhausted. Default 0: no limit, the message's deadline (if any) and
// the partition's cancellation end the retries. A limit trades an outage's
// dead letters (which must then be replayed) for a partition that moves on.
func SinkAttempts(n int) Opt { return optFunc(func(p *Pipeline) { p.retryAttempts = n }) }

// New returns an empty pipeline. Options are checked here; a bad option is
// reported by Err as a *sluice.ConfigError naming it (errors.Is
// sluice.ErrConfig).
func New(opts ...Opt) *Pipeline {
	p := &Pipeline{
		inBuf:    1024,
		dlMin:    100 * time.Millisecond,
		dlMax:    10 * time.Second,
		retryMin: 100 * time.Millisecond,
		retryMax: 30 * time.Second,
		names:    map[string]bool{},
		sources:  map[string]opener{},
	}
	for _, o := range opts {
		if o != nil {
			o.apply(p)
		}
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.clock == nil {
		p.clock = sluice.SystemClock{}
	}
	if p.inBuf < 1 {
		p.errs = append(p.errs, configErr("InputBuffer", "", p.inBuf, "must be at least 1"))
		p.inBuf = 1
	}
	if err := backoffErr("DeadLetterBackoff", p.dlMin, p.dlMax); err != nil {
		p.errs = append(p.errs, err)
		p.dlMin, p.dlMax = 100*time.Millisecond, 10*time.Second
	}
	if err := backoffErr("SinkBackoff", p.retryMin, p.retryMax); err != nil {
		p.errs = append(p.errs, err)
		p.retryMin, p.retryMax = 100*time.Millisecond, 30*time.Second
	}
	if p.retryAttempts < 0 {
		p.errs = append(p.errs, configErr("SinkAttempts", "", p.retryAttempts, "must not be negative"))
		p.retryAttempts = 0
	}
	p.timedSinks = len(p.hooks.handled) > 0
	return p
}

// Err reports every mistake found while building the pipeline, joined: bad
// options, each a *sluice.ConfigError naming the option (errors.Is
// sluice.ErrConfig); and mistakes in the graph's wiring, each a *BuildError
// naming its stage (errors.Is ErrBuild): empty or duplicate names, nil
// functions, bad sizes, a stream consumed twice, a stream never consumed, a
// topic with two sources, no source at all. nil means the pipeline can run.
func (p *Pipeline) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.errLocked()
}

func (p *Pipeline) errLocked() error {
	errs := append([]error(nil), p.errs...)
	if len(p.sources) == 0 {
		errs = append(errs, &BuildError{Stage: "Source", Err: errors.New("the pipeline has no source")})
	}
	for _, s := range p.streams {
		if s.to == "" {
			errs = append(errs, &BuildError{Stage: s.from, Err: fmt.Errorf("output %s is never consumed; end it with a sink or a stage", s)})
		}
	}
	return errors.Join(errs...)
}

// Topics returns the topics the pipeline has a Source for, sorted. A
// consumer given the pipeline reads these topics: a topic is named once,
// in its Source.
func (p *Pipeline) Topics() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	topics := make([]string, 0, len(p.sources))
	for t := range p.sources {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	return topics
}

// claim records that stage info consumes the stream described by in, and
// reports whether it may (no mistake that would corrupt the graph).
func (p *Pipeline) claim(in *streamBase, leased string, info StageInfo) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	fail := func(err error) {
		stage := info.Name
		if stage == "" {
			stage = "stage after " + in.String()
		}
		p.errs = append(p.errs, &BuildError{Stage: stage, Err: err})
	}
	ok := true
	switch {
	case p.sealed:
		fail(errors.New("added after the pipeline started running"))
		return false
	case info.Name == "":
		fail(errors.New("empty name"))
	case p.names[info.Name]:
		fail(errors.New("name already used by another source, stage or sink"))
	}
	p.names[info.Name] = true
	if in.to != "" {
		fail(fmt.Errorf("stream %s is already consumed by %q; use stages.Duplicate to send it to both", in, in.to))
		ok = false
	} else {
		in.to = info.Name
		if in.to == "" {
			in.to = "(unnamed)"
		}
	}
	if info.Err != nil {
		fail(info.Err)
	}
	if info.Holds && leased != "" {
		fail(fmt.Errorf("holds messages, and sits downstream of key-ordered fan-out %q, which would wait for them forever before handing out the next message of their key; put it before the fan-out or make the fan-out unordered", leased))
	}
	return ok
}

func (p *Pipeline) addStream(s *streamBase) {
	p.mu.Lock()
	p.streams = append(p.streams, s)
	p.mu.Unlock()
}

// seal freezes the graph and returns the build error, once.
func (p *Pipeline) seal() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.sealed {
		p.sealed = true
		p.sealErr = p.errLocked()
	}
	return p.sealErr
}

// OpenPartition starts a running instance of the graph for tp, fed by the
// source for tp.Topic. It fails if the pipeline has build errors or no source
// for the topic. ctx is the partition's life: when it is cancelled every
// goroutine of the instance stops promptly and unfinished records stay
// unsettled.
func (p *Pipeline) OpenPartition(ctx context.Context, tp TopicPartition) (Partition, error) {
	if err := p.seal(); err != nil {
		return nil, fmt.Errorf("open %s: %w", tp, err)
	}
	src, ok := p.sources[tp.Topic]
	if !ok {
		return nil, fmt.Errorf("open %s: %w %q", tp, ErrNoSource, tp.Topic)
	}
	env := &Env{p: p, ctx: ctx, tp: tp}
	chunk := min(p.inBuf, maxChunk)
	pt := &partition{
		env:   env,
		chunk: chunk,
		in:    make(chan *[]*Record, max(1, p.inBuf/chunk)-1),
	}
	push, end := src.open(env)
	env.Go(func() { pt.run(push, end) })
	return pt, nil
}

// maxChunk is the most records moved from Handle to the source goroutine in
// one channel send.
const maxChunk = 256

var chunks = sync.Pool{New: func() any { s := make([]*Record, 0, maxChunk); return &s }}

// partition is one partition's running instance.
type partition struct {
	env   *Env
	chunk int
	// in carries chunks of records to the source goroutine. Its capacity is
	// InputBuffer/chunk - 1 chunks; with the chunk Handle is sending and the
	// one the source goroutine is working on, at most about InputBuffer
	// records wait.
	in        chan *[]*Record
	closed    atomic.Bool
	closeOnce sync.Once
}

// ErrClosed is returned by Handle after Close.
var ErrClosed = errors.New("partition closed")

func (pt *partition) Handle(ctx context.Context, recs []*Record) error {
	if pt.closed.Load() {
		return ErrClosed
	}
	for len(recs) > 0 {
		n := min(len(recs), pt.chunk)
		c := chunks.Get().(*[]*Record)
		*c = append((*c)[:0], recs[:n]...)
		select {
		case pt.in <- c:
		case <-ctx.Done():
			return ctx.Err()
		case <-pt.env.ctx.Done():
			return pt.env.ctx.Err()
		}
		recs = recs[n:]
	}
	return nil
}

func (pt *partition) Close() {
	pt.closeOnce.Do(func() {
		pt.closed.Store(true)
		close(pt.in)
		pt.env.wait()
	})
}

// run is the source goroutine: it decodes records and pushes them into the
// first stage, then ends the graph when the input is closed.
func (pt *partition) run(push func(*Record) bool, end func()) {
	ctx := pt.env.ctx
	for {
		select {
		case c, ok := <-pt.in:
			if !ok {
				end()
				return
			}
			for i, r := range *c {
				(*c)[i] = nil
				if ctx.Err() != nil || !push(r) {
					return
				}
			}
			chunks.Put(c)
		case <-ctx.Done():
			return
		}
	}
}

// Env is one partition's running instance as its stages see it: the
// partition's context, clock, logger and hooks, goroutines it owns, and the
// dead-letter path. Stage builders receive it.
type Env struct {
	p   *Pipeline
	ctx context.Context
	tp  TopicPartition

	wg    sync.WaitGroup // goroutines started with Go
	after sync.WaitGroup // AfterCancel functions registered and not stopped
	mu    sync.Mutex
	stops []func() bool
}

// Context is the partition's context: cancelled when the partition is lost,
// revoked past its drain timeout, or shut down.
func (e *Env) Context() context.Context { return e.ctx }

// TopicPartition is the partition this instance handles.
func (e *Env) TopicPartition() TopicPartition { return e.tp }

// Clock is the pipeline's clock.
func (e *Env) Clock() sluice.Clock { return e.p.clock }

// Logger is the pipeline's logger.
func (e *Env) Logger() *slog.Logger { return e.p.log }

// Go runs f in a goroutine owned by the partition: Close waits for it. f must
// return once the stage has ended (End) or the context is done. Call Go only
// from a stage's build function.
func (e *Env) Go(f func()) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f()
	}()
}

// AfterCancel arranges for f to run, in its own goroutine, when the
// partition's context is done, unless the partition closes first. Stages
// that wait on sync.Cond use it to wake their waiters. Close waits for f.
func (e *Env) AfterCancel(f func()) {
	e.after.Add(1)
	stop := context.AfterFunc(e.ctx, func() {
		defer e.after.Done()
		f()
	})
	e.mu.Lock()
	e.stops = append(e.stops, stop)
	e.mu.Unlock()
}

// wait waits for the partition's goroutines, then retires AfterCancel
// functions that have not run and waits for those that have.
func (e *Env) wait() {
	e.wg.Wait()
	e.mu.Lock()
	stops := e.stops
	e.stops = nil
	e.mu.Unlock()
	for _, stop := range stops {
		if stop() {
			e.after.Done()
		}
	}
	e.after.Wait()
}

// Count is how many records t stands for, for Handled; it is 0 when no
// HookHandled observer is configured. Call it before settling t: a settled
// token may already be reused by the stage that made it.
func (e *Env) Count(t Token) int {
	if len(e.p.hooks.handled) == 0 {
		return 0
	}
	return countRecords(t)
}

// Timed reports whether a HookHandled observer wants latencies: a sink
// that is not timed passes 0 to Handled and spares its clock reads.
func (e *Env) Timed() bool { return e.p.timedSinks }

// Sleep waits d on the pipeline's clock. It reports false, at once, if the
// partition's context ends first. Stages wait between attempts with it, so
// that a fake clock drives their backoffs.
func (e *Env) Sleep(d time.Duration) bool {
	t := e.p.clock.NewTimer(d)
	select {
	case <-t.C():
		return true
	case <-e.ctx.Done():
		t.Stop()
		return false
	}
}

// Handled tells the HookHandled observers that stage finished with a message
// standing for records records (from Count, taken before the message was
// settled).
func (e *Env) Handled(stage string, o Outcome, records int, latency time.Duration) {
	for _, h := range e.p.hooks.handled {
		h.OnHandled(stage, o, records, latency)
	}
}
