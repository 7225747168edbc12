package pipeline

import (
	"errors"
	"fmt"
)

// Stream is a typed flow of messages in a pipeline under construction: the
// output of a source or a stage. Every stream must be consumed exactly once,
// by one stage or sink; to send one stream to several, use stages.Duplicate.
// A stream is a description: each partition gets its own running instance of
// the stages behind it when the consumer opens the partition.
type Stream[T any] struct {
	p    *Pipeline
	base *streamBase
	// leased names the key-ordered fan-out upstream of this stream, if any.
	leased string
	// build makes one partition's instance of whatever consumes the stream.
	build func(env *Env) Inlet[T]
}

// streamBase is what the pipeline keeps of every stream to find those never
// consumed.
type streamBase struct {
	from string // stage that produces it
	out  string // which output, for stages with several ("" if one)
	to   string // stage that consumes it; "" until consumed
}

func (b *streamBase) String() string {
	if b.out == "" {
		return fmt.Sprintf("%q", b.from)
	}
	return fmt.Sprintf("%q (%s)", b.from, b.out)
}

// Inlet receives messages in one partition's instance of a stage or sink.
// Unless a stage documents otherwise, Push may be called from several
// goroutines at once (stages after a fan-out run in its workers).
type Inlet[T any] interface {
	// Push hands m over, blocking while the stage applies backpressure. The
	// stage now holds m once (see Token). Push returns false once the
	// partition's context is done: m and the messages after it are
	// abandoned unsettled, and the caller stops.
	Push(m Message[T]) bool
	// End says no more messages will be pushed; it is called once, after
	// every Push has returned. The stage finishes what it holds (a window
	// flushes early), pushes it on, then ends its own outputs. End returns
	// early if the partition's context is done.
	End()
}

// StageInfo describes a stage to Connect, Connect2 and ConnectN.
type StageInfo struct {
	// Name names the stage in errors, logs, dead letters and metrics. It
	// must be unique in the pipeline.
	Name string
	// Err is a problem the stage's constructor found in its arguments (a nil
	// function, a bad size). It is reported as a BuildError naming the stage.
	Err error
	// Holds says the stage keeps messages across pushes (windows, batches):
	// it must not sit downstream of a key-ordered fan-out, which would wait
	// for them before handing out the next message of each key.
	Holds bool
	// Leases says the stage's outputs carry key leases that are released
	// when the messages settle (key-ordered fan-out).
	Leases bool
}

// Connect adds a stage with one output to in's consumer. build is called once
// per partition, from OpenPartition, with that partition's Env and the inlet
// of whatever consumes the stage's output; it returns the stage's own inlet.
func Connect[In, Out any](in *Stream[In], info StageInfo, build func(env *Env, out Inlet[Out]) Inlet[In]) *Stream[Out] {
	outs := connect[In, Out](in, info, 1, func(env *Env, outs []Inlet[Out]) Inlet[In] { return build(env, outs[0]) }, build == nil)
	return outs[0]
}

// ConnectSink ends in with a stage of its own, for a sink that settles
// messages itself, for example when an acknowledgement arrives after Push
// returned. build is called once per partition, like Connect's. The inlet
// settles each message it receives exactly once, or hands it to Env.Fail,
// or leaves it unsettled when the partition's context is done; its End
// returns once every message it received is settled or failed (the
// partition's Close waits for End), or when the context is done.
func ConnectSink[In any](in *Stream[In], info StageInfo, build func(env *Env) Inlet[In]) {
	if build == nil {
		info.Err = errors.Join(info.Err, errors.New("no build function"))
	}
	if in.p.claim(in.base, in.leased, info) {
		in.build = build
	}
}

// Connect2 adds a stage with two outputs of different types, for example a
// window and its late records.
func Connect2[In, A, B any](in *Stream[In], info StageInfo, build func(env *Env, a Inlet[A], b Inlet[B]) Inlet[In]) (*Stream[A], *Stream[B]) {
	var b *Stream[B]
	as := connect[In, A](in, info, 1, func(env *Env, outs []Inlet[A]) Inlet[In] {
		return build(env, outs[0], b.inlet(env))
	}, build == nil)
	b = newStream[B](in.p, as[0].leased, info.Name, "output 2")
	as[0].base.out = "output 1"
	return as[0], b
}

// ConnectN adds a stage with n outputs of one type, for example a duplicate.
func ConnectN[In, Out any](in *Stream[In], info StageInfo, n int, build func(env *Env, outs []Inlet[Out]) Inlet[In]) []*Stream[Out] {
	if n < 1 {
		info.Err = errors.Join(info.Err, fmt.Errorf("needs at least 1 output, got %d", n))
		n = 1
	}
	return connect(in, info, n, build, build == nil)
}

func connect[In, Out any](in *Stream[In], info StageInfo, n int, build func(env *Env, outs []Inlet[Out]) Inlet[In], noBuild bool) []*Stream[Out] {
	if noBuild {
		info.Err = errors.Join(info.Err, errors.New("no build function"))
	}
	leased := in.leased
	if info.Leases {
		leased = info.Name
	}
	outs := make([]*Stream[Out], n)
	for i := range outs {
		label := ""
		if n > 1 {
			label = fmt.Sprintf("output %d", i+1)
		}
		outs[i] = newStream[Out](in.p, leased, info.Name, label)
	}
	if in.p.claim(in.base, in.leased, info) {
		in.build = func(env *Env) Inlet[In] {
			inlets := make([]Inlet[Out], n)
			for i, o := range outs {
				inlets[i] = o.inlet(env)
			}
			return build(env, inlets)
		}
	}
	return outs
}

func newStream[T any](p *Pipeline, leased, from, out string) *Stream[T] {
	s := &Stream[T]{p: p, leased: leased, base: &streamBase{from: from, out: out}}
	p.addStream(s.base)
	return s
}

// inlet builds this partition's instance of the stream's consumer. The
// pipeline checked at seal time that every stream is consumed.
func (s *Stream[T]) inlet(env *Env) Inlet[T] { return s.build(env) }
