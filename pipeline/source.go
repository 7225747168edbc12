package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/sluice-go/sluice"
)

// Codec decodes a record's value into a T. Decode must be safe for concurrent
// use (partitions decode in parallel) and must not keep data after returning
// (it aliases the record).
type Codec[T any] interface {
	Decode(data []byte) (T, error)
}

// DecodeFunc is a user-supplied decoder used as a Codec.
type DecodeFunc[T any] func(data []byte) (T, error)

// Decode calls f.
func (f DecodeFunc[T]) Decode(data []byte) (T, error) { return f(data) }

// Bytes is the codec that passes the value through as it is, without a copy.
func Bytes() Codec[[]byte] { return bytesCodec{} }

type bytesCodec struct{}

func (bytesCodec) Decode(data []byte) ([]byte, error) { return data, nil }

// String is the codec that converts the value to a string (one copy).
func String() Codec[string] { return stringCodec{} }

type stringCodec struct{}

func (stringCodec) Decode(data []byte) (string, error) { return string(data), nil }

// JSON is the codec that unmarshals the value with encoding/json. Unknown
// fields are ignored; a value that is not valid JSON for T (including an
// empty or nil value) is a decode error.
func JSON[T any]() Codec[T] { return jsonCodec[T]{} }

type jsonCodec[T any] struct{}

func (jsonCodec[T]) Decode(data []byte) (T, error) {
	var v T
	if len(data) == 0 {
		return v, errEmpty
	}
	err := json.Unmarshal(data, &v)
	return v, err
}

var errEmpty = errors.New("empty value")

// opener starts a source in one partition's instance: push takes one record
// in offset order, end says no more will come.
type opener interface {
	open(env *Env) (push func(*Record) bool, end func())
}

// Source is where a pipeline reads topic: each record is decoded with codec
// into a Message[T]. A record that does not decode (or whose codec panics) is
// dead-lettered with class ClassDecode (ClassPanic) under the stage name
// topic, and never stops the partition. One source per topic; a pipeline may
// read several topics.
func Source[T any](p *Pipeline, topic string, codec Codec[T]) *Stream[T] {
	s := newStream[T](p, "", topic, "")
	p.mu.Lock()
	defer p.mu.Unlock()
	fail := func(err error) {
		p.errs = append(p.errs, &BuildError{Stage: "source " + fmt.Sprintf("%q", topic), Err: err})
	}
	switch {
	case p.sealed:
		fail(errors.New("added after the pipeline started running"))
		return s
	case topic == "":
		fail(errors.New("empty topic"))
	case p.sources[topic] != nil:
		fail(errors.New("topic already has a source"))
		return s
	case p.names[topic]:
		fail(errors.New("name already used by a stage or sink"))
	}
	if codec == nil {
		fail(errors.New("nil codec"))
	}
	p.names[topic] = true
	p.sources[topic] = &source[T]{name: topic, codec: codec, out: s}
	return s
}

type source[T any] struct {
	name  string
	codec Codec[T]
	out   *Stream[T]
}

func (s *source[T]) open(env *Env) (func(*Record) bool, func()) {
	next := s.out.inlet(env)
	push := func(r *Record) bool {
		v, err := s.decode(r, env.p.clock)
		if err != nil {
			return env.Fail(s.name, r, err) != OutcomeAbandoned
		}
		return next.Push(Message[T]{value: v, meta: r, tok: r})
	}
	return push, next.End
}

func (s *source[T]) decode(r *Record, c sluice.Clock) (v T, err error) {
	defer func() {
		if x := recover(); x != nil {
			err = &PanicError{Value: x, Stack: debug.Stack(), At: c.Now()}
		}
	}()
	v, err = s.codec.Decode(r.Value)
	if err != nil {
		err = &DecodeError{Err: err, At: c.Now()}
	}
	return v, err
}
