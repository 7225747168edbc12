package dlq

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/pipeline"
)

// Letter is one record read from a dead-letter topic with its decoded
// provenance.
type Letter struct {
	// Record is the dead letter as read from the dead-letter topic.
	Record *kgo.Record
	// Provenance is valid when ProvenanceErr is nil.
	Provenance Provenance
	// ProvenanceErr is ErrNoProvenance or a *BadHeaderError when the record's
	// provenance could not be read.
	ProvenanceErr error
}

// NewLetter decodes r's provenance.
func NewLetter(r *kgo.Record) Letter {
	p, err := ProvenanceOf(r)
	return Letter{Record: r, Provenance: p, ProvenanceErr: err}
}

// FailedAt is when the record was given up on: the provenance's FailedAt,
// or the dead letter's own timestamp when that is unknown.
func (l Letter) FailedAt() time.Time {
	if l.ProvenanceErr == nil {
		if t := l.Provenance.FailedAt(); !t.IsZero() {
			return t
		}
	}
	return l.Record.Timestamp
}

// Filter selects dead letters. A zero field matches everything; set fields
// must all match. Every field but Since and Until reads the provenance, so a
// record without provenance matches only a filter that sets none of them.
type Filter struct {
	// Error matches the error text.
	Error ErrorPattern
	// Classes matches any of these failure classes.
	Classes []string
	// Stages matches any of these stage or sink names.
	Stages []string
	// Since (inclusive) and Until (exclusive) bound Letter.FailedAt.
	Since, Until time.Time
	// Partitions matches any of these source partitions.
	Partitions []int32
	// Offsets, when not nil, bounds the source offset.
	Offsets *OffsetRange
}

// Validate reports contradictory or unknown filter values as a *FilterError.
func (f *Filter) Validate() error {
	for _, c := range f.Classes {
		if !slices.Contains(Classes, c) {
			return &FilterError{Filter: "class", Value: c, Err: fmt.Errorf("unknown class, want one of %s", strings.Join(Classes, ", "))}
		}
	}
	for _, p := range f.Partitions {
		if p < 0 {
			return &FilterError{Filter: "partition", Value: strconv.Itoa(int(p)), Err: errors.New("negative partition")}
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return &FilterError{Filter: "until", Value: f.Until.Format(time.RFC3339), Err: fmt.Errorf("not after --since %s", f.Since.Format(time.RFC3339))}
	}
	return nil
}

// Classes are the failure classes a Filter accepts: the pipeline.Class
// constants.
var Classes = []string{
	pipeline.ClassDecode, pipeline.ClassPanic, pipeline.ClassPermanent, pipeline.ClassExhausted,
	pipeline.ClassBudget, pipeline.ClassDeadline, pipeline.ClassError,
}

// usesProvenance reports whether any provenance-based field is set.
func (f *Filter) usesProvenance() bool {
	return !f.Error.IsZero() || len(f.Classes) > 0 || len(f.Stages) > 0 || len(f.Partitions) > 0 || f.Offsets != nil
}

// Match reports whether l passes the filter. A nil filter matches all.
func (f *Filter) Match(l Letter) bool {
	if f == nil {
		return true
	}
	if at := l.FailedAt(); (!f.Since.IsZero() && at.Before(f.Since)) || (!f.Until.IsZero() && !at.Before(f.Until)) {
		return false
	}
	if l.ProvenanceErr != nil {
		return !f.usesProvenance()
	}
	p := l.Provenance
	switch {
	case !f.Error.Match(p.Error),
		len(f.Classes) > 0 && !slices.Contains(f.Classes, p.Class),
		len(f.Stages) > 0 && !slices.Contains(f.Stages, p.Stage),
		len(f.Partitions) > 0 && !slices.Contains(f.Partitions, p.Partition),
		f.Offsets != nil && !f.Offsets.Contains(p.Offset):
		return false
	}
	return true
}

// String describes the filter canonically: equal filters give equal
// strings. Replay derives its default progress group from it.
func (f *Filter) String() string {
	if f == nil {
		return ""
	}
	var parts []string
	add := func(k, v string) { parts = append(parts, k+"="+v) }
	if !f.Error.IsZero() {
		add("error", f.Error.String())
	}
	if len(f.Classes) > 0 {
		add("class", strings.Join(sortedCopy(f.Classes), ","))
	}
	if len(f.Stages) > 0 {
		add("sink", strings.Join(sortedCopy(f.Stages), ","))
	}
	if !f.Since.IsZero() {
		add("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		add("until", f.Until.UTC().Format(time.RFC3339Nano))
	}
	if len(f.Partitions) > 0 {
		ps := make([]string, 0, len(f.Partitions))
		for _, p := range sortedCopy(f.Partitions) {
			ps = append(ps, strconv.Itoa(int(p)))
		}
		add("partition", strings.Join(ps, ","))
	}
	if f.Offsets != nil {
		add("offset-range", f.Offsets.String())
	}
	return strings.Join(parts, " ")
}

func sortedCopy[T int32 | string](s []T) []T {
	c := slices.Clone(s)
	slices.Sort(c)
	return slices.Compact(c)
}

// ErrorPattern matches error texts by substring, or by regular expression
// when written between slashes ("/timeout|refused/"). The zero value matches
// everything.
type ErrorPattern struct {
	raw string
	re  *regexp.Regexp
}

// ParseErrorPattern parses a substring or a /regexp/ (Go RE2 syntax). A
// regular expression that does not compile is a *FilterError.
func ParseErrorPattern(s string) (ErrorPattern, error) {
	if len(s) >= 2 && strings.HasPrefix(s, "/") && strings.HasSuffix(s, "/") {
		re, err := regexp.Compile(s[1 : len(s)-1])
		if err != nil {
			return ErrorPattern{}, &FilterError{Filter: "error", Value: s, Err: err}
		}
		return ErrorPattern{raw: s, re: re}, nil
	}
	return ErrorPattern{raw: s}, nil
}

// IsZero reports whether p matches everything.
func (p ErrorPattern) IsZero() bool { return p.raw == "" }

// Match reports whether text matches.
func (p ErrorPattern) Match(text string) bool {
	if p.re != nil {
		return p.re.MatchString(text)
	}
	return strings.Contains(text, p.raw)
}

// String returns the pattern as it was written.
func (p ErrorPattern) String() string { return p.raw }

// OffsetRange is an inclusive range of offsets.
type OffsetRange struct {
	From, To int64
}

// ParseOffsetRange parses "A-B" (A through B, inclusive), "A-" (A and
// after) or "A" (just A). Offsets are decimal and not negative.
func ParseOffsetRange(s string) (OffsetRange, error) {
	bad := func(err error) (OffsetRange, error) {
		return OffsetRange{}, &FilterError{Filter: "offset-range", Value: s, Err: err}
	}
	from, to, dash := strings.Cut(s, "-")
	a, err := strconv.ParseInt(strings.TrimSpace(from), 10, 64)
	if err != nil || a < 0 {
		return bad(errors.New("want A-B, A- or A with decimal offsets"))
	}
	r := OffsetRange{From: a, To: a}
	switch {
	case dash && strings.TrimSpace(to) == "":
		r.To = math.MaxInt64
	case dash:
		if r.To, err = strconv.ParseInt(strings.TrimSpace(to), 10, 64); err != nil || r.To < 0 {
			return bad(errors.New("want A-B, A- or A with decimal offsets"))
		}
	}
	if r.To < r.From {
		return bad(errors.New("end before start"))
	}
	return r, nil
}

// Contains reports whether off is in the range.
func (r OffsetRange) Contains(off int64) bool { return off >= r.From && off <= r.To }

// String formats the range as ParseOffsetRange reads it.
func (r OffsetRange) String() string {
	if r.To == math.MaxInt64 {
		return fmt.Sprintf("%d-", r.From)
	}
	return fmt.Sprintf("%d-%d", r.From, r.To)
}

// ParseTime parses a --since or --until value: an RFC 3339 time
// ("2026-01-02T15:04:05Z"), a date ("2026-01-02", midnight UTC), or a
// duration before now ("90m", "36h"). now is injected for tests.
func ParseTime(flag, s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, &FilterError{Filter: flag, Value: s, Err: errors.New("want an RFC 3339 time, a date (2006-01-02) or a duration ago (90m)")}
}
