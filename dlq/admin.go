package dlq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/pipeline"
)

// DefaultTimeout bounds dialing a broker and the first request to it, so
// that an unreachable cluster is reported in seconds, not minutes.
const DefaultTimeout = 10 * time.Second

// readStall bounds how long Read waits for a fetch that brings nothing
// while records are left before it gives up (StallError).
const readStall = 30 * time.Second

// Conn says how to reach the cluster, and how long to wait for it.
type Conn struct {
	// Connection holds the brokers (required), TLS, SASL and client ID,
	// the same value the consumer and the Publisher are given.
	sluice.Connection
	// Timeout bounds dialing and the first request (the reachability
	// check). Default DefaultTimeout.
	Timeout time.Duration
}

// Admin reads, counts and replays dead-letter topics. It is what the
// `sluice dlq` command runs on. Its methods may be called concurrently;
// each read or replay uses a client of its own.
type Admin struct {
	conn Conn
	cl   *kgo.Client
	adm  *kadm.Client
}

// NewAdmin connects and checks that a broker answers within conn.Timeout;
// if none does, it returns an *UnreachableError naming the brokers (and
// saying so when a connection was made but nothing answered on it). The
// Timeout also bounds the answer to every later request beyond the
// request's own wait.
func NewAdmin(ctx context.Context, conn Conn) (*Admin, error) {
	if err := conn.Check("dlq"); err != nil {
		ce := err.(*sluice.ConfigError)
		ce.Option, ce.Field = "Conn", "Connection."+ce.Field
		return nil, ce
	}
	if conn.Timeout == 0 {
		conn.Timeout = DefaultTimeout
	}
	if conn.Timeout < 0 {
		return nil, &sluice.ConfigError{Package: "dlq", Option: "Conn", Field: "Timeout", Value: conn.Timeout, Reason: "must not be negative"}
	}
	a := &Admin{conn: conn}
	cl, err := kgo.NewClient(a.opts()...)
	if err != nil {
		return nil, fmt.Errorf("new client: %w", err)
	}
	if err := ping(ctx, cl, conn.Timeout); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		ue := &UnreachableError{Brokers: conn.Brokers, Err: err, Timeout: conn.Timeout}
		if isTimeout(err) {
			ue.Connected = listening(ctx, conn.Brokers)
		}
		return nil, ue
	}
	a.cl, a.adm = cl, kadm.NewClient(cl)
	return a, nil
}

// ping pings through cl within timeout, and closes cl if that fails. It
// returns when ctx ends or timeout passes, even while a connection is
// being set up (which kgo does not cut short for a context).
func ping(ctx context.Context, cl *kgo.Client, timeout time.Duration) error {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cl.Ping(pctx) }()
	var err error
	select {
	case err = <-done:
	case <-pctx.Done():
		cl.Close() // cuts the connection attempt short
		<-done
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("no answer: %w", context.DeadlineExceeded)
	}
	if err != nil {
		cl.Close()
	}
	return err
}

// isTimeout reports whether err is a timeout, as opposed to a refusal or
// a TLS or SASL failure.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// listening returns the addrs that accept a TCP connection within a
// second: brokers that were reached but did not answer.
func listening(ctx context.Context, addrs []string) []string {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	ok := make([]bool, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Go(func() {
			var d net.Dialer
			if c, err := d.DialContext(ctx, "tcp", addr); err == nil {
				c.Close()
				ok[i] = true
			}
		})
	}
	wg.Wait()
	var out []string
	for i, addr := range addrs {
		if ok[i] {
			out = append(out, addr)
		}
	}
	return out
}

func (a *Admin) opts(extra ...kgo.Opt) []kgo.Opt {
	base := append(a.conn.ClientOpts(), kgo.DialTimeout(a.conn.Timeout),
		kgo.RequestTimeoutOverhead(a.conn.Timeout), kgo.WithLogger(nil))
	return append(base, extra...)
}

// Close closes the Admin's client. It may be called more than once.
func (a *Admin) Close() { a.cl.Close() }

// span is the offsets of one partition to read: [from, end).
type span struct{ from, end int64 }

// spans returns, per partition of topic, its log start and end offsets as
// they are now. An unknown topic is a *TopicError.
func (a *Admin) spans(ctx context.Context, topic string) (map[int32]span, error) {
	if err := a.exists(ctx, topic); err != nil {
		return nil, err
	}
	starts, err := a.adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	ends, err := a.adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	out := make(map[int32]span)
	ends.Each(func(o kadm.ListedOffset) {
		s, _ := starts.Lookup(topic, o.Partition)
		out[o.Partition] = span{from: s.Offset, end: o.Offset}
	})
	return out, nil
}

// Partitions returns how many partitions topic has; a *TopicError if it
// does not exist.
func (a *Admin) Partitions(ctx context.Context, topic string) (int, error) {
	if err := a.exists(ctx, topic); err != nil {
		return 0, err
	}
	ds, err := a.adm.ListTopics(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("describe %s: %w", topic, err)
	}
	return len(ds[topic].Partitions), nil
}

// exists returns a *TopicError if topic does not exist.
func (a *Admin) exists(ctx context.Context, topic string) error {
	ds, err := a.adm.ListTopics(ctx, topic)
	if err != nil {
		return fmt.Errorf("describe %s: %w", topic, err)
	}
	d, ok := ds[topic]
	switch {
	case !ok, errors.Is(d.Err, kerr.UnknownTopicOrPartition):
		return &TopicError{Topic: topic}
	case d.Err != nil:
		return fmt.Errorf("describe %s: %w", topic, d.Err)
	}
	return nil
}

// scan polls cl, which consumes topic at the from offsets of spans, until
// every partition has reached its end offset, calling fn for each record
// below its partition's end and afterPoll (if not nil) after each poll.
// It stops at the first error of fn, afterPoll or the fetch, when ctx ends,
// or with a *StallError when a poll brings nothing for stall while records
// are left (a broker that stopped answering). A partition whose last
// offsets before end are gone (a compacted topic, transaction markers)
// would never be reached; dead-letter topics written by a Publisher have
// neither.
func scan(ctx context.Context, cl *kgo.Client, topic string, spans map[int32]span, stall time.Duration, fn func(*kgo.Record) error, afterPoll func() error) error {
	left := 0
	for _, s := range spans {
		if s.from < s.end {
			left++
		}
	}
	for left > 0 {
		pctx, cancel := context.WithTimeout(ctx, stall)
		fs := cl.PollRecords(pctx, 1000)
		timedOut := pctx.Err() != nil
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		if timedOut && fs.NumRecords() == 0 {
			return &StallError{What: fmt.Sprintf("no records fetched from %s though %d %s more", topic, left, plural(left, "partition holds", "partitions hold")), After: stall}
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if ferr == nil && !errors.Is(err, context.DeadlineExceeded) {
				ferr = fmt.Errorf("fetch %s/%d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		for it := fs.RecordIter(); !it.Done(); {
			r := it.Next()
			s, ok := spans[r.Partition]
			if !ok || r.Offset >= s.end {
				continue
			}
			if err := fn(r); err != nil {
				return err
			}
			if r.Offset+1 >= s.end {
				left--
				spans[r.Partition] = span{from: s.end, end: s.end}
				cl.PauseFetchPartitions(map[string][]int32{topic: {r.Partition}})
			}
		}
		if afterPoll != nil {
			if err := afterPoll(); err != nil {
				return err
			}
		}
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func consumeFrom(topic string, spans map[int32]span) kgo.Opt {
	ps := make(map[int32]kgo.Offset)
	for p, s := range spans {
		if s.from < s.end {
			ps[p] = kgo.NewOffset().At(s.from)
		}
	}
	return kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: ps})
}

// Read calls fn, in offset order per partition, for every record of topic
// that was in it when Read started and that f matches (nil f: all). It
// returns when the end offsets taken at the start are reached, so it ends
// even while the topic is written to. It returns fn's first error, or a
// *TopicError if topic does not exist.
func (a *Admin) Read(ctx context.Context, topic string, f *Filter, fn func(Letter) error) error {
	if err := f.validate(); err != nil {
		return err
	}
	spans, err := a.spans(ctx, topic)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(a.opts(consumeFrom(topic, spans))...)
	if err != nil {
		return fmt.Errorf("new client: %w", err)
	}
	defer cl.Close()
	return scan(ctx, cl, topic, spans, readStall, func(r *kgo.Record) error {
		if l := NewLetter(r); f.Match(l) {
			return fn(l)
		}
		return nil
	}, nil)
}

func (f *Filter) validate() error {
	if f == nil {
		return nil
	}
	return f.Validate()
}

// Stats counts dead letters.
type Stats struct {
	// Total is the number of dead letters counted.
	Total int
	// NoProvenance counts those without readable provenance.
	NoProvenance int
	// ByClass, ByStage and BySource count by failure class, by stage or
	// sink, and by source topic and partition.
	ByClass  map[string]int
	ByStage  map[string]int
	BySource map[pipeline.TopicPartition]int
	// Oldest and Newest bound the letters' FailedAt.
	Oldest, Newest time.Time
}

// Add counts l.
func (s *Stats) Add(l Letter) {
	if s.ByClass == nil {
		s.ByClass = make(map[string]int)
		s.ByStage = make(map[string]int)
		s.BySource = make(map[pipeline.TopicPartition]int)
	}
	s.Total++
	if at := l.FailedAt(); !at.IsZero() {
		if s.Oldest.IsZero() || at.Before(s.Oldest) {
			s.Oldest = at
		}
		if at.After(s.Newest) {
			s.Newest = at
		}
	}
	if l.ProvenanceErr != nil {
		s.NoProvenance++
		return
	}
	p := l.Provenance
	s.ByClass[p.Class]++
	s.ByStage[p.Stage]++
	s.BySource[pipeline.TopicPartition{Topic: p.Topic, Partition: p.Partition}]++
}

// Stats reads topic to its current end (see Read) and counts the dead
// letters that f matches.
func (a *Admin) Stats(ctx context.Context, topic string, f *Filter) (Stats, error) {
	var s Stats
	err := a.Read(ctx, topic, f, func(l Letter) error { s.Add(l); return nil })
	return s, err
}

// TopicInfo describes one dead-letter topic.
type TopicInfo struct {
	// Topic is the dead-letter topic.
	Topic string
	// Source is the topic its name says it holds dead letters of (Topic
	// without the suffix), and SourceExists whether that topic exists.
	Source       string
	SourceExists bool
	Partitions   int
	// Records is the sum over partitions of end minus start offset: the
	// records retained.
	Records int64
}

// List returns the topics whose names end in suffix (DefaultSuffix if
// empty), sorted by name, with their record counts.
func (a *Admin) List(ctx context.Context, suffix string) ([]TopicInfo, error) {
	if suffix == "" {
		suffix = DefaultSuffix
	}
	ds, err := a.adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	var names []string
	for _, n := range ds.Names() {
		if strings.HasSuffix(n, suffix) && len(n) > len(suffix) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	starts, err := a.adm.ListStartOffsets(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("start offsets: %w", err)
	}
	ends, err := a.adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("end offsets: %w", err)
	}
	out := make([]TopicInfo, 0, len(names))
	for _, n := range names {
		info := TopicInfo{Topic: n, Source: strings.TrimSuffix(n, suffix), Partitions: len(ds[n].Partitions)}
		info.SourceExists = ds.Has(info.Source)
		ends.Each(func(o kadm.ListedOffset) {
			if o.Topic != n || o.Err != nil {
				return
			}
			if s, ok := starts.Lookup(n, o.Partition); ok && s.Err == nil {
				info.Records += o.Offset - s.Offset
			}
		})
		out = append(out, info)
	}
	slices.SortFunc(out, func(x, y TopicInfo) int { return strings.Compare(x.Topic, y.Topic) })
	return out, nil
}
