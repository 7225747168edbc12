package consumer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A producer the broker refuses to let abort (PRODUCER_FENCED on EndTxn:
// another producer with the same transactional ID took over) is fenced for
// good: the member stops rather than go on producing, and Run says why.
func TestExactlyOnceFencedProducerStops(t *testing.T) {
	r := startEOS(t)
	f := r.kc.Fault(kfakeFault(kmsg.EndTxn, kerr.ProducerFenced, -1))
	defer f.Remove()
	select {
	case err := <-r.errc:
		if !errors.Is(err, kerr.ProducerFenced) {
			t.Fatalf("Run: %v, want an error wrapping PRODUCER_FENCED", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a fenced member did not stop within 30s")
	}
}

// A takeover by another producer with the same transactional ID (a
// restarted member; this one is the zombie) fences this one: it stops
// rather than re-initialise and fence its successor in turn.
func TestExactlyOnceTakeoverStopsMember(t *testing.T) {
	r := startEOS(t)
	succ := r.kc.Client(t, kgo.TransactionalID("etl-1"))
	if _, _, err := succ.ProducerID(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-r.errc:
		if !errors.Is(err, kerr.ProducerFenced) && !errors.Is(err, kerr.InvalidProducerEpoch) {
			t.Fatalf("Run: %v, want an error wrapping PRODUCER_FENCED or INVALID_PRODUCER_EPOCH", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a member whose transactional ID was taken over did not stop within 30s")
	}
}
