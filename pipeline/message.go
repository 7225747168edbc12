package pipeline

import (
	"iter"
	"sync/atomic"
	"time"
)

// Token is a message's settlement token. A *Record is the token of the
// message its source made; stages make others: a group token stands for every
// member of a window or batch, a wrapper token (fan-out's key lease) learns
// when the message it wraps has finished downstream.
//
// The rules are those of Record: whoever receives a message holds its token
// once and calls Settle exactly once when done with it; a stage that sends a
// message down n branches calls Hold(n-1) first. Sinks do this for the user;
// user code never settles.
type Token interface {
	Hold(n int)
	Settle()
}

// Wrapper is a token that wraps another, like an error that wraps an error.
// Settling it settles the wrapped token once, when its own holders are done.
type Wrapper interface {
	Token
	Unwrap() Token
}

// Grouper is a token that stands for several tokens, each settled once when
// the group settles.
type Grouper interface {
	Token
	Members() iter.Seq[Token]
}

// Records yields the records a token stands for: the record itself, the
// records of a wrapped token, or those of every member of a group, in order.
// The dead-letter path uses it to park each record of a failed batch.
func Records(t Token) iter.Seq[*Record] {
	return func(yield func(*Record) bool) { walk(t, yield) }
}

func walk(t Token, yield func(*Record) bool) bool {
	switch t := t.(type) {
	case *Record:
		return yield(t)
	case Wrapper:
		return walk(t.Unwrap(), yield)
	case Grouper:
		for m := range t.Members() {
			if !walk(m, yield) {
				return false
			}
		}
	}
	return true
}

// countRecords is how many records t stands for.
func countRecords(t Token) int {
	if _, ok := t.(*Record); ok {
		return 1
	}
	n := 0
	for range Records(t) {
		n++
	}
	return n
}

// Message is a decoded value on its way through a pipeline, with where it came
// from and its settlement token. It is small (the value plus two pointers) and
// passed by value; metadata is read through accessors from the record.
//
// A message made by a window or batch has no record of its own: its Topic and
// Partition are its members', Offset and Timestamp are those of its last
// member, Deadline is the earliest member deadline, and it has no key or
// headers.
//
// The zero Message is not valid: messages come from a source, from NewMessage,
// or from a stage deriving one from another.
type Message[T any] struct {
	value T
	meta  *Record
	tok   Token
}

// NewMessage makes the message a source would make for r: value v, r's
// metadata, and r as its token. Tests of sinks and stages use it; pipelines
// make messages themselves.
func NewMessage[T any](v T, r *Record) Message[T] {
	return Message[T]{value: v, meta: r, tok: r}
}

// WithValue returns m carrying v instead of its value: same metadata, same
// token. Stages that transform values use it.
func WithValue[T, U any](m Message[T], v U) Message[U] {
	return Message[U]{value: v, meta: m.meta, tok: m.tok}
}

// Value is the decoded value.
func (m Message[T]) Value() T { return m.value }

// Key is the record's key (nil for a group).
func (m Message[T]) Key() []byte { return m.meta.Key }

// Headers are the record's headers (nil for a group).
func (m Message[T]) Headers() []Header { return m.meta.Headers }

// Header returns the value of the last header named key, and whether it exists.
func (m Message[T]) Header(key string) ([]byte, bool) { return m.meta.Header(key) }

// Topic is the topic the record came from.
func (m Message[T]) Topic() string { return m.meta.Topic }

// Partition is the partition the record came from.
func (m Message[T]) Partition() int32 { return m.meta.Partition }

// Offset is the record's offset (a group's last member's).
func (m Message[T]) Offset() int64 { return m.meta.Offset }

// Timestamp is the record's own timestamp (a group's last member's).
func (m Message[T]) Timestamp() time.Time { return m.meta.Timestamp }

// Fetched is when the source fetched the record (a group's last member's).
func (m Message[T]) Fetched() time.Time { return m.meta.Fetched }

// Deadline is when handling should be finished (a group's earliest member
// deadline); zero means none. Sinks are called with a context carrying it.
func (m Message[T]) Deadline() time.Time { return m.meta.Deadline }

// String names the message by its position, never by its payload.
func (m Message[T]) String() string { return m.meta.String() }

// Token is the message's settlement token.
func (m Message[T]) Token() Token { return m.tok }

// WithToken returns m with token t in place of its own. A stage that wraps
// tokens (t wraps m.Token()) uses it.
func (m Message[T]) WithToken(t Token) Message[T] {
	m.tok = t
	return m
}

// Hold adds n holders to the message's token; see Token.
func (m Message[T]) Hold(n int) { m.tok.Hold(n) }

// Settle releases one holder of the message's token; see Token.
func (m Message[T]) Settle() { m.tok.Settle() }

// Group makes one message of many: value v stands for members, and the
// returned message's token takes over one hold of each member. When the
// returned message is settled, every member is settled once; when it is
// dead-lettered, every member's record is. Windows and batches use it.
// Members must be non-empty.
func Group[T, V any](v V, members []Message[T]) Message[V] {
	g := &group[T]{members: members}
	g.holders.Store(1)
	first := members[0].meta
	g.meta.Topic = first.Topic
	g.meta.Partition = first.Partition
	for _, m := range members {
		r := m.meta
		if r.Offset >= g.meta.Offset {
			g.meta.Offset = r.Offset
		}
		if !r.Timestamp.Before(g.meta.Timestamp) {
			g.meta.Timestamp = r.Timestamp
		}
		if !r.Fetched.Before(g.meta.Fetched) {
			g.meta.Fetched = r.Fetched
		}
		if !r.Deadline.IsZero() && (g.meta.Deadline.IsZero() || r.Deadline.Before(g.meta.Deadline)) {
			g.meta.Deadline = r.Deadline
		}
		if r.SinkAttempts > 0 && (g.meta.SinkAttempts == 0 || r.SinkAttempts < g.meta.SinkAttempts) {
			g.meta.SinkAttempts = r.SinkAttempts
		}
	}
	return Message[V]{value: v, meta: &g.meta, tok: g}
}

// group is the token of a Group message. meta is a record used only for the
// group's metadata; it is never bound or settled.
type group[T any] struct {
	meta    Record
	holders atomic.Int32
	members []Message[T]
}

func (g *group[T]) Hold(n int) {
	if n < 0 {
		panic("pipeline: negative Hold on a group")
	}
	g.holders.Add(int32(n))
}

func (g *group[T]) Settle() {
	switch n := g.holders.Add(-1); {
	case n == 0:
		for _, m := range g.members {
			m.tok.Settle()
		}
	case n < 0:
		panic("pipeline: group of " + g.meta.String() + " settled more often than it was held")
	}
}

func (g *group[T]) Members() iter.Seq[Token] {
	return func(yield func(Token) bool) {
		for _, m := range g.members {
			if !yield(m.tok) {
				return
			}
		}
	}
}
