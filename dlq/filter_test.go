package dlq_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/pipeline"
)

func TestParseErrorPattern(t *testing.T) {
	tests := []struct {
		give    string
		text    string
		want    bool
		wantErr bool
	}{
		{give: "", text: "anything", want: true},
		{give: "timeout", text: "dial: i/o timeout", want: true},
		{give: "timeout", text: "refused", want: false},
		{give: "/time(out)?|refused/", text: "connection refused", want: true},
		{give: "/^dial/", text: "redial", want: false},
		{give: "/", text: "a/b", want: true}, // one slash is a substring
		{give: "/(unclosed/", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			p, err := dlq.ParseErrorPattern(tt.give)
			if tt.wantErr {
				var fe *dlq.FilterError
				if !errors.As(err, &fe) || fe.Filter != "error" || !errors.Is(err, dlq.ErrBadFilter) {
					t.Fatalf("err = %v, want a FilterError for --error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Match(tt.text); got != tt.want {
				t.Fatalf("Match(%q) = %v, want %v", tt.text, got, tt.want)
			}
		})
	}
}

func TestParseOffsetRange(t *testing.T) {
	tests := []struct {
		give    string
		want    dlq.OffsetRange
		wantErr bool
	}{
		{give: "10-20", want: dlq.OffsetRange{From: 10, To: 20}},
		{give: "7", want: dlq.OffsetRange{From: 7, To: 7}},
		{give: "5-", want: dlq.OffsetRange{From: 5, To: math.MaxInt64}},
		{give: " 1 - 2 ", want: dlq.OffsetRange{From: 1, To: 2}},
		{give: "20-10", wantErr: true},
		{give: "-5", wantErr: true},
		{give: "a-b", wantErr: true},
		{give: "1-2-3", wantErr: true},
		{give: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, err := dlq.ParseOffsetRange(tt.give)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, dlq.ErrBadFilter) {
				t.Fatalf("err = %v, want ErrBadFilter", err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if err == nil {
				again, _ := dlq.ParseOffsetRange(got.String())
				if again != got {
					t.Fatalf("String() %q does not parse back", got.String())
				}
			}
		})
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		give    string
		want    time.Time
		wantErr bool
	}{
		{give: "2026-01-02T15:04:05Z", want: time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)},
		{give: "2026-01-02T15:04:05.5+01:00", want: time.Date(2026, 1, 2, 14, 4, 5, 5e8, time.UTC)},
		{give: "2026-01-02", want: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)},
		{give: "90m", want: now.Add(-90 * time.Minute)},
		{give: "-1h", wantErr: true},
		{give: "yesterday", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, err := dlq.ParseTime("since", tt.give, now)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !got.Equal(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func letter(p dlq.Provenance) dlq.Letter {
	return dlq.NewLetter(&kgo.Record{Topic: "orders.dlq", Headers: p.AppendHeaders(nil), Timestamp: time.UnixMilli(5000)})
}

func TestFilterMatch(t *testing.T) {
	base := dlq.Provenance{
		Topic: "orders", Partition: 2, Offset: 100, Stage: "pg", Class: pipeline.ClassPermanent,
		Error: "insert: duplicate key", LastFailure: time.UnixMilli(10_000),
	}
	re, _ := dlq.ParseErrorPattern("/dup.*key/")
	sub, _ := dlq.ParseErrorPattern("timeout")
	bare := dlq.NewLetter(&kgo.Record{Timestamp: time.UnixMilli(5000)})
	tests := []struct {
		name   string
		filter *dlq.Filter
		give   dlq.Letter
		want   bool
	}{
		{"nil filter", nil, letter(base), true},
		{"empty filter", &dlq.Filter{}, letter(base), true},
		{"regex", &dlq.Filter{Error: re}, letter(base), true},
		{"substring miss", &dlq.Filter{Error: sub}, letter(base), false},
		{"class hit", &dlq.Filter{Classes: []string{pipeline.ClassDecode, pipeline.ClassPermanent}}, letter(base), true},
		{"class miss", &dlq.Filter{Classes: []string{pipeline.ClassDecode}}, letter(base), false},
		{"stage hit", &dlq.Filter{Stages: []string{"pg"}}, letter(base), true},
		{"stage miss", &dlq.Filter{Stages: []string{"http"}}, letter(base), false},
		{"partition hit", &dlq.Filter{Partitions: []int32{1, 2}}, letter(base), true},
		{"partition miss", &dlq.Filter{Partitions: []int32{3}}, letter(base), false},
		{"offsets hit", &dlq.Filter{Offsets: &dlq.OffsetRange{From: 100, To: 100}}, letter(base), true},
		{"offsets miss", &dlq.Filter{Offsets: &dlq.OffsetRange{From: 101, To: 200}}, letter(base), false},
		{"since inclusive", &dlq.Filter{Since: time.UnixMilli(10_000)}, letter(base), true},
		{"since miss", &dlq.Filter{Since: time.UnixMilli(10_001)}, letter(base), false},
		{"until exclusive", &dlq.Filter{Until: time.UnixMilli(10_000)}, letter(base), false},
		{"until hit", &dlq.Filter{Until: time.UnixMilli(10_001)}, letter(base), true},
		{"all set", &dlq.Filter{Error: re, Classes: []string{pipeline.ClassPermanent}, Stages: []string{"pg"}, Partitions: []int32{2}}, letter(base), true},
		{"no provenance, time filter uses record time", &dlq.Filter{Since: time.UnixMilli(4000)}, bare, true},
		{"no provenance, provenance filter", &dlq.Filter{Stages: []string{"pg"}}, bare, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.filter.Match(tt.give); got != tt.want {
				t.Fatalf("Match = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFilterValidate(t *testing.T) {
	tests := []struct {
		name       string
		give       dlq.Filter
		wantFilter string
	}{
		{"ok", dlq.Filter{Classes: []string{pipeline.ClassDecode}}, ""},
		{"unknown class", dlq.Filter{Classes: []string{"decoded"}}, "class"},
		{"negative partition", dlq.Filter{Partitions: []int32{-1}}, "partition"},
		{"until before since", dlq.Filter{Since: time.UnixMilli(2), Until: time.UnixMilli(1)}, "until"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate()
			var fe *dlq.FilterError
			if got := ""; errors.As(err, &fe) {
				got = fe.Filter
				if got != tt.wantFilter {
					t.Fatalf("err names %q, want %q", got, tt.wantFilter)
				}
			} else if tt.wantFilter != "" || err != nil {
				t.Fatalf("err = %v, want FilterError for %q", err, tt.wantFilter)
			}
		})
	}
}

func TestFilterStringCanonical(t *testing.T) {
	a := &dlq.Filter{Classes: []string{"panic", "decode"}, Partitions: []int32{3, 1}}
	b := &dlq.Filter{Classes: []string{"decode", "panic", "decode"}, Partitions: []int32{1, 3}}
	if a.String() != b.String() {
		t.Fatalf("%q != %q", a.String(), b.String())
	}
	if a.String() == (&dlq.Filter{}).String() {
		t.Fatalf("different filters give equal strings")
	}
}
