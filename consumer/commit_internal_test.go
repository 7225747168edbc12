package consumer

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-go/sluice/pipeline"
)

// OffsetCommit v10 responses name topics by ID only, and franz-go resolves
// the names only for a response of the current session: a commit answered
// after the session moved on reached the callback with empty names, and
// every partition's result was silently skipped.
func TestCommitResultsResolveTopicIDsAndReportUnanswered(t *testing.T) {
	id := [16]byte{1, 2, 3}
	offsets := map[string]map[int32]kgo.EpochOffset{"orders": {0: {Offset: 5}, 1: {Offset: 7}, 2: {Offset: 9}}}
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "orders", TopicID: id}}
	resp := kmsg.NewPtrOffsetCommitResponse()
	resp.Version = 10
	resp.Topics = []kmsg.OffsetCommitResponseTopic{{TopicID: id, Partitions: []kmsg.OffsetCommitResponseTopicPartition{
		{Partition: 0, ErrorCode: kerr.IllegalGeneration.Code},
		{Partition: 1},
	}}}
	got := commitResults(offsets, req, resp, nil)
	tp := func(p int32) pipeline.TopicPartition { return pipeline.TopicPartition{Topic: "orders", Partition: p} }
	if len(got) != 3 {
		t.Fatalf("results for %d partitions, want 3: %v", len(got), got)
	}
	if !errors.Is(got[tp(0)], kerr.IllegalGeneration) {
		t.Errorf("partition 0: %v, want ILLEGAL_GENERATION", got[tp(0)])
	}
	if got[tp(1)] != nil {
		t.Errorf("partition 1: %v, want success", got[tp(1)])
	}
	if !errors.Is(got[tp(2)], errNoAnswer) {
		t.Errorf("partition 2 (not in the response): %v, want errNoAnswer", got[tp(2)])
	}

	whole := errors.New("connection reset")
	for p, err := range commitResults(offsets, req, nil, whole) {
		if !errors.Is(err, whole) {
			t.Errorf("%s: %v, want the request's error", p, err)
		}
	}
}

// The rate limit of fetch error logs once remembered every error it ever
// saw; it now forgets those whose period has passed.
func TestErrLogForgetsOldKeys(t *testing.T) {
	l := newErrLog(fetchErrorEvery)
	now := time.Unix(1_700_000_000, 0)
	for i := range 10_000 {
		now = now.Add(fetchErrorEvery / 100)
		if !l.due("k"+strconv.Itoa(i), now) {
			t.Fatalf("key %d: a new key was not due", i)
		}
	}
	if n := l.size(); n > 200 {
		t.Fatalf("the log holds %d keys after 10,000 distinct errors over 100 periods", n)
	}
	if l.due("k9999", now) {
		t.Fatal("a key seen within the period was due again")
	}
}
