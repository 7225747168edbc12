package dlq

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/pipeline"
)

// HeaderPrefix starts the name of every provenance header. The publisher
// drops headers with this prefix from the original record before it adds its
// own, so a record that is dead-lettered again carries one set of provenance,
// the newest.
const HeaderPrefix = "sluice.dlq."

// Provenance header names. Integers are decimal ASCII ("42"); times are the
// decimal Unix time in milliseconds ("1767225600000"), like
// pipeline.DeadlineHeader; text is UTF-8. A header whose value would be empty
// or a zero time is left out.
const (
	// HeaderTopic is the topic the record was consumed from. Replay sends
	// the record back there unless told otherwise.
	HeaderTopic = HeaderPrefix + "topic"
	// HeaderPartition is the partition the record was consumed from.
	HeaderPartition = HeaderPrefix + "partition"
	// HeaderOffset is the record's offset in that partition.
	HeaderOffset = HeaderPrefix + "offset"
	// HeaderTimestamp is the original record's own timestamp.
	HeaderTimestamp = HeaderPrefix + "timestamp"
	// HeaderGroup is the consumer group that gave up on the record.
	HeaderGroup = HeaderPrefix + "group"
	// HeaderStage is the name of the stage or sink that gave up.
	HeaderStage = HeaderPrefix + "stage"
	// HeaderError is the error text, at most MaxErrorBytes bytes.
	HeaderError = HeaderPrefix + "error"
	// HeaderClass is the failure class, one of the pipeline.Class constants.
	HeaderClass = HeaderPrefix + "class"
	// HeaderAttempts is how many times the sink was called for the record.
	HeaderAttempts = HeaderPrefix + "attempts"
	// HeaderFirstFailure is the time of the first failed attempt.
	HeaderFirstFailure = HeaderPrefix + "first-failure"
	// HeaderLastFailure is the time of the last failed attempt.
	HeaderLastFailure = HeaderPrefix + "last-failure"
	// HeaderReplayCount is how many times the record had been replayed
	// from a dead-letter topic before it failed. It is the one provenance
	// header a replayed copy keeps (incremented), so that the publisher can
	// carry it into the next dead letter and replay can refuse records that
	// keep coming back.
	HeaderReplayCount = HeaderPrefix + "replay-count"
	// HeaderValueDropped is set when the dead letter with the record's
	// value would not fit the dead-letter topic (MESSAGE_TOO_LARGE): the
	// dead letter then carries no value, and this header gives the value's
	// size in bytes. The original stays at HeaderTopic, HeaderPartition and
	// HeaderOffset while the source topic's retention keeps it. Replay
	// refuses such dead letters, forced or not: it would republish an empty
	// value.
	HeaderValueDropped = HeaderPrefix + "value-dropped"
)

// MaxErrorBytes bounds the error text in HeaderError. Longer texts are cut at
// a UTF-8 boundary and end in TruncatedSuffix, the whole staying within
// MaxErrorBytes, so one pathological error cannot push a dead letter past the
// broker's message size limit.
const MaxErrorBytes = 1024

// TruncatedSuffix ends an error text that was cut to MaxErrorBytes.
const TruncatedSuffix = "...(truncated)"

// Provenance says where a dead letter came from and why it was given up on.
type Provenance struct {
	// Topic, Partition and Offset locate the original record.
	Topic     string
	Partition int32
	Offset    int64
	// Timestamp is the original record's timestamp.
	Timestamp time.Time
	// Group is the consumer group that gave up, if known.
	Group string
	// Stage is the stage or sink that gave up.
	Stage string
	// Error is the error text, at most MaxErrorBytes bytes.
	Error string
	// Class is the failure class (pipeline.ClassDecode, ...).
	Class string
	// Attempts is how many times the sink was called.
	Attempts int
	// FirstFailure and LastFailure are the times of the first and last
	// failed attempts; zero when unknown.
	FirstFailure time.Time
	LastFailure  time.Time
	// ReplayCount is how many times the record had been replayed before it
	// failed this time.
	ReplayCount int
	// ValueDropped is the size of the record's value when the dead letter
	// had to leave it out (see HeaderValueDropped); zero otherwise.
	ValueDropped int
}

// FailedAt is when the record was given up on: LastFailure, or FirstFailure
// when LastFailure is unknown. It is what the --since and --until filters
// compare.
func (p Provenance) FailedAt() time.Time {
	if !p.LastFailure.IsZero() {
		return p.LastFailure
	}
	return p.FirstFailure
}

// AppendHeaders appends p as provenance headers to dst, in the order the
// constants are declared, leaving out empty texts and zero times.
func (p Provenance) AppendHeaders(dst []kgo.RecordHeader) []kgo.RecordHeader {
	add := func(k, v string) {
		if v != "" {
			dst = append(dst, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
	}
	add(HeaderTopic, p.Topic)
	add(HeaderPartition, strconv.FormatInt(int64(p.Partition), 10))
	add(HeaderOffset, strconv.FormatInt(p.Offset, 10))
	add(HeaderTimestamp, formatTime(p.Timestamp))
	add(HeaderGroup, p.Group)
	add(HeaderStage, p.Stage)
	add(HeaderError, TruncateError(p.Error))
	add(HeaderClass, p.Class)
	add(HeaderAttempts, strconv.Itoa(p.Attempts))
	add(HeaderFirstFailure, formatTime(p.FirstFailure))
	add(HeaderLastFailure, formatTime(p.LastFailure))
	add(HeaderReplayCount, strconv.Itoa(p.ReplayCount))
	if p.ValueDropped > 0 {
		add(HeaderValueDropped, strconv.Itoa(p.ValueDropped))
	}
	return dst
}

// DecodeProvenance reads the provenance headers. It returns ErrNoProvenance
// if HeaderTopic is absent, and a *BadHeaderError (matching ErrBadHeader) if a
// header is present but malformed. Where a header occurs more than once the
// last one counts, as with pipeline.Record.Header.
func DecodeProvenance(hs []kgo.RecordHeader) (Provenance, error) {
	var (
		p   Provenance
		err error
	)
	vals := make(map[string]string, 12)
	for _, h := range hs {
		if strings.HasPrefix(h.Key, HeaderPrefix) {
			vals[h.Key] = string(h.Value)
		}
	}
	topic, ok := vals[HeaderTopic]
	if !ok || topic == "" {
		return Provenance{}, ErrNoProvenance
	}
	p.Topic = topic
	p.Group = vals[HeaderGroup]
	p.Stage = vals[HeaderStage]
	p.Error = vals[HeaderError]
	p.Class = vals[HeaderClass]
	parse := func(key string, set func(string) error) {
		v, ok := vals[key]
		if !ok || err != nil {
			return
		}
		if e := set(v); e != nil {
			err = &BadHeaderError{Key: key, Value: v, Err: e}
		}
	}
	parse(HeaderPartition, func(v string) error {
		n, e := strconv.ParseInt(v, 10, 32)
		p.Partition = int32(n)
		return e
	})
	parse(HeaderOffset, func(v string) (e error) { p.Offset, e = strconv.ParseInt(v, 10, 64); return e })
	parse(HeaderTimestamp, func(v string) (e error) { p.Timestamp, e = parseTime(v); return e })
	parse(HeaderAttempts, func(v string) (e error) { p.Attempts, e = strconv.Atoi(v); return e })
	parse(HeaderFirstFailure, func(v string) (e error) { p.FirstFailure, e = parseTime(v); return e })
	parse(HeaderLastFailure, func(v string) (e error) { p.LastFailure, e = parseTime(v); return e })
	parse(HeaderReplayCount, func(v string) (e error) { p.ReplayCount, e = strconv.Atoi(v); return e })
	parse(HeaderValueDropped, func(v string) (e error) { p.ValueDropped, e = strconv.Atoi(v); return e })
	if err != nil {
		return Provenance{}, err
	}
	return p, nil
}

// ProvenanceOf decodes the provenance headers of r; see DecodeProvenance.
func ProvenanceOf(r *kgo.Record) (Provenance, error) { return DecodeProvenance(r.Headers) }

// IsProvenanceHeader reports whether key is one of the provenance headers
// (it starts with HeaderPrefix).
func IsProvenanceHeader(key string) bool { return strings.HasPrefix(key, HeaderPrefix) }

// StripProvenance returns the headers of hs that are not provenance headers,
// in their order, in a new slice.
func StripProvenance(hs []kgo.RecordHeader) []kgo.RecordHeader {
	out := make([]kgo.RecordHeader, 0, len(hs))
	for _, h := range hs {
		if !IsProvenanceHeader(h.Key) {
			out = append(out, h)
		}
	}
	return out
}

// ReplayCount reads HeaderReplayCount from a record's headers: 0 when it is
// absent or malformed (a malformed count must not stop a record from being
// dead-lettered), else its value.
func ReplayCount(hs []pipeline.Header) int {
	for i := len(hs) - 1; i >= 0; i-- {
		if hs[i].Key == HeaderReplayCount {
			return parseReplayCount(hs[i].Value)
		}
	}
	return 0
}

func parseReplayCount(v []byte) int {
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// TruncateError bounds s to MaxErrorBytes bytes; see MaxErrorBytes.
func TruncateError(s string) string {
	if len(s) <= MaxErrorBytes {
		return s
	}
	cut := MaxErrorBytes - len(TruncatedSuffix)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + TruncatedSuffix
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

func parseTime(v string) (time.Time, error) {
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMilli(ms), nil
}
