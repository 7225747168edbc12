package stages

import (
	"errors"

	"github.com/sluice-go/sluice/pipeline"
)

var errNilFunc = errors.New("nil function")

// Map applies f to the value of every message. It runs in the goroutine that
// pushes into it (no buffer, no goroutine of its own), and makes no
// allocation beyond what f does. A panic in f dead-letters the message as
// pipeline.ClassPanic under the stage's name.
func Map[T, U any](in *pipeline.Stream[T], name string, f func(T) U) *pipeline.Stream[U] {
	var g func(T) (U, error)
	if f != nil {
		g = func(v T) (U, error) { return f(v), nil }
	}
	return TryMap(in, name, g)
}

// TryMap applies f to the value of every message; an error dead-letters the
// message under the stage's name (class read from the error, as a sink's
// would be; see pipeline.Sink).
func TryMap[T, U any](in *pipeline.Stream[T], name string, f func(T) (U, error)) *pipeline.Stream[U] {
	info := pipeline.StageInfo{Name: name}
	if f == nil {
		info.Err = errNilFunc
	}
	return pipeline.Connect(in, info, func(env *pipeline.Env, out pipeline.Inlet[U]) pipeline.Inlet[T] {
		return &mapper[T, U]{env: env, name: name, f: f, out: out}
	})
}

type mapper[T, U any] struct {
	env  *pipeline.Env
	name string
	f    func(T) (U, error)
	out  pipeline.Inlet[U]
}

func (s *mapper[T, U]) Push(m pipeline.Message[T]) bool {
	var u U
	err := s.env.Catch(func() (err error) {
		u, err = s.f(m.Value())
		return err
	})
	if err != nil {
		return fail(s.env, s.name, m.Token(), err)
	}
	return s.out.Push(pipeline.WithValue(m, u))
}

func (s *mapper[T, U]) End() { s.out.End() }

// fail gives up on t for stage and reports whether the caller may go on.
func fail(env *pipeline.Env, stage string, t pipeline.Token, err error) bool {
	n := env.Count(t) // Fail may settle t
	o := env.Fail(stage, t, err)
	env.Handled(stage, o, n, 0)
	return o != pipeline.OutcomeAbandoned
}

// Filter keeps the messages for which keep returns true; the others are
// settled at once (counted as pipeline.OutcomeFiltered). Like Map it runs in
// the pushing goroutine. A panic in keep dead-letters the message.
func Filter[T any](in *pipeline.Stream[T], name string, keep func(T) bool) *pipeline.Stream[T] {
	info := pipeline.StageInfo{Name: name}
	if keep == nil {
		info.Err = errNilFunc
	}
	return pipeline.Connect(in, info, func(env *pipeline.Env, out pipeline.Inlet[T]) pipeline.Inlet[T] {
		return &filter[T]{env: env, name: name, keep: keep, out: out}
	})
}

type filter[T any] struct {
	env  *pipeline.Env
	name string
	keep func(T) bool
	out  pipeline.Inlet[T]
}

func (s *filter[T]) Push(m pipeline.Message[T]) bool {
	var keep bool
	err := s.env.Catch(func() error {
		keep = s.keep(m.Value())
		return nil
	})
	switch {
	case err != nil:
		return fail(s.env, s.name, m.Token(), err)
	case keep:
		return s.out.Push(m)
	}
	n := s.env.Count(m.Token())
	m.Settle()
	s.env.Handled(s.name, pipeline.OutcomeFiltered, n, 0)
	return true
}

func (s *filter[T]) End() { s.out.End() }

// Decode decodes raw values with codec, for pipelines whose source reads
// pipeline.Bytes (to route or filter on headers before paying for decoding,
// say). A decode error or a panic in the codec dead-letters the message as
// pipeline.ClassDecode or pipeline.ClassPanic under the stage's name.
func Decode[T any](in *pipeline.Stream[[]byte], name string, codec pipeline.Codec[T]) *pipeline.Stream[T] {
	var f func([]byte) (T, error)
	if codec != nil {
		f = func(b []byte) (T, error) {
			v, err := codec.Decode(b)
			if err != nil {
				return v, &pipeline.DecodeError{Err: err}
			}
			return v, nil
		}
	}
	return TryMap(in, name, f)
}
