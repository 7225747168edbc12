package dlq_test

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/pipeline"
)

func TestProvenanceRoundTrip(t *testing.T) {
	at := time.UnixMilli(1767225600123)
	tests := []struct {
		name string
		give dlq.Provenance
	}{
		{"full", dlq.Provenance{
			Topic: "orders", Partition: 7, Offset: 1 << 40, Timestamp: at, Group: "billing",
			Stage: "postgres", Error: "insert: duplicate key", Class: pipeline.ClassPermanent, Attempts: 3,
			FirstFailure: at.Add(time.Second), LastFailure: at.Add(2 * time.Second), ReplayCount: 2,
		}},
		{"minimal", dlq.Provenance{Topic: "t"}},
		{"unicode error", dlq.Provenance{Topic: "t", Error: "décodage: ✗"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs := tt.give.AppendHeaders([]kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-abc-01")}})
			if hs[0].Key != "traceparent" {
				t.Fatalf("original header moved: %v", hs)
			}
			got, err := dlq.DecodeProvenance(hs)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !equalProvenance(got, tt.give) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tt.give)
			}
		})
	}
}

func equalProvenance(a, b dlq.Provenance) bool {
	return a.Topic == b.Topic && a.Partition == b.Partition && a.Offset == b.Offset &&
		a.Timestamp.Equal(b.Timestamp) && a.Group == b.Group && a.Stage == b.Stage &&
		a.Error == b.Error && a.Class == b.Class && a.Attempts == b.Attempts &&
		a.FirstFailure.Equal(b.FirstFailure) && a.LastFailure.Equal(b.LastFailure) &&
		a.ReplayCount == b.ReplayCount
}

func TestProvenanceEncoding(t *testing.T) {
	p := dlq.Provenance{Topic: "orders", Partition: 3, Offset: 42, Timestamp: time.UnixMilli(1767225600000), Attempts: 2}
	got := map[string]string{}
	for _, h := range p.AppendHeaders(nil) {
		got[h.Key] = string(h.Value)
	}
	want := map[string]string{
		"sluice.dlq.topic":        "orders",
		"sluice.dlq.partition":    "3",
		"sluice.dlq.offset":       "42",
		"sluice.dlq.timestamp":    "1767225600000",
		"sluice.dlq.attempts":     "2",
		"sluice.dlq.replay-count": "0",
	}
	if len(got) != len(want) {
		t.Fatalf("headers %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestDecodeProvenanceErrors(t *testing.T) {
	h := func(kv ...string) []kgo.RecordHeader {
		var hs []kgo.RecordHeader
		for i := 0; i < len(kv); i += 2 {
			hs = append(hs, kgo.RecordHeader{Key: kv[i], Value: []byte(kv[i+1])})
		}
		return hs
	}
	tests := []struct {
		name    string
		give    []kgo.RecordHeader
		want    error
		wantKey string
	}{
		{"no headers", nil, dlq.ErrNoProvenance, ""},
		{"no topic", h(dlq.HeaderPartition, "1"), dlq.ErrNoProvenance, ""},
		{"empty topic", h(dlq.HeaderTopic, ""), dlq.ErrNoProvenance, ""},
		{"bad partition", h(dlq.HeaderTopic, "t", dlq.HeaderPartition, "x"), dlq.ErrBadHeader, dlq.HeaderPartition},
		{"partition overflow", h(dlq.HeaderTopic, "t", dlq.HeaderPartition, "4294967296"), dlq.ErrBadHeader, dlq.HeaderPartition},
		{"bad time", h(dlq.HeaderTopic, "t", dlq.HeaderLastFailure, "2026-01-01"), dlq.ErrBadHeader, dlq.HeaderLastFailure},
		{"bad count", h(dlq.HeaderTopic, "t", dlq.HeaderReplayCount, "many"), dlq.ErrBadHeader, dlq.HeaderReplayCount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dlq.DecodeProvenance(tt.give)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			var he *dlq.BadHeaderError
			if errors.As(err, &he) != (tt.wantKey != "") || (he != nil && he.Key != tt.wantKey) {
				t.Fatalf("err = %#v, want BadHeaderError for %q", err, tt.wantKey)
			}
		})
	}
}

func TestDecodeProvenanceLastHeaderWins(t *testing.T) {
	hs := []kgo.RecordHeader{
		{Key: dlq.HeaderTopic, Value: []byte("old")},
		{Key: dlq.HeaderTopic, Value: []byte("new")},
	}
	p, err := dlq.DecodeProvenance(hs)
	if err != nil || p.Topic != "new" {
		t.Fatalf("got %q, %v; want new", p.Topic, err)
	}
}

func TestTruncateError(t *testing.T) {
	tests := []struct {
		name      string
		give      string
		wantTrunc bool
	}{
		{"short", "boom", false},
		{"exact", strings.Repeat("a", dlq.MaxErrorBytes), false},
		{"long ascii", strings.Repeat("a", dlq.MaxErrorBytes+1), true},
		{"long multibyte", strings.Repeat("é", dlq.MaxErrorBytes), true},
		{"long 3-byte", strings.Repeat("✗", dlq.MaxErrorBytes), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := dlq.TruncateError(tt.give)
			if len(got) > dlq.MaxErrorBytes {
				t.Fatalf("len %d > %d", len(got), dlq.MaxErrorBytes)
			}
			if !utf8.ValidString(got) {
				t.Fatalf("cut inside a rune")
			}
			if strings.HasSuffix(got, dlq.TruncatedSuffix) != tt.wantTrunc || (!tt.wantTrunc && got != tt.give) {
				t.Fatalf("got %q", got)
			}
			if tt.wantTrunc && !strings.HasPrefix(tt.give, strings.TrimSuffix(got, dlq.TruncatedSuffix)) {
				t.Fatalf("truncated text is not a prefix")
			}
		})
	}
}

func TestStripProvenance(t *testing.T) {
	hs := dlq.Provenance{Topic: "t", ReplayCount: 1}.AppendHeaders([]kgo.RecordHeader{
		{Key: "traceparent", Value: []byte("tp")},
		{Key: "sluice-deadline", Value: []byte("1")},
	})
	got := dlq.StripProvenance(hs)
	if len(got) != 2 || got[0].Key != "traceparent" || got[1].Key != "sluice-deadline" {
		t.Fatalf("got %v", got)
	}
}

func TestReplayCount(t *testing.T) {
	tests := []struct {
		name string
		give []pipeline.Header
		want int
	}{
		{"absent", []pipeline.Header{{Key: "x", Value: []byte("5")}}, 0},
		{"present", []pipeline.Header{{Key: dlq.HeaderReplayCount, Value: []byte("2")}}, 2},
		{"last wins", []pipeline.Header{{Key: dlq.HeaderReplayCount, Value: []byte("2")}, {Key: dlq.HeaderReplayCount, Value: []byte("3")}}, 3},
		{"malformed", []pipeline.Header{{Key: dlq.HeaderReplayCount, Value: []byte("x")}}, 0},
		{"negative", []pipeline.Header{{Key: dlq.HeaderReplayCount, Value: []byte("-4")}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dlq.ReplayCount(tt.give); got != tt.want {
				t.Fatalf("got %d, want %d", got, tt.want)
			}
		})
	}
}
