package demo

import (
	"context"
	"fmt"
	"sync"

	"github.com/sluice-go/sluice/internal/orders"
	"github.com/sluice-go/sluice/pipeline"
)

// ledger accounts for every record the demo produced: what the producer made
// it (its kind), whether the downstream accepted it, whether it was
// dead-lettered and with which class, and whether the group's commit has
// passed it. Records are known by partition and offset. Once the commit has
// passed a record, check settles its account and forgets it, so memory is
// bounded by the records in flight, not by the length of the run.
//
// Records of the topic below the offsets at which the run started (left
// over from an earlier run on the same cluster) are not accounted.
type ledger struct {
	mu    sync.Mutex
	parts map[int32]*partLedger
	cust  map[string]int // customer -> highest sequence number shipped

	produced  [numKinds]int
	notAcked  int
	shipped   int // distinct records accepted by the downstream
	deadBy    map[string]int
	deadTotal int // distinct records dead-lettered

	// Outcomes of checked records (the commit passed them).
	checked       int
	settledShip   int // shipped records the commit passed
	settledDead   int // dead-lettered records the commit passed
	settledDeadBy map[string]int
	filtered      int // test orders the commit passed
	lost          int
	lostExample   []string
	unexpected    map[string]int // dead letters of a class their kind does not explain, by kind/class

	duplicates int // deliveries to the downstream or to the dead-letter topic beyond the first
	outOfOrder int // orders shipped after a later order of their customer

	windows, windowOrders, earlyWindows int
}

type partLedger struct {
	start   int64 // first offset of this run
	cursor  int64 // every offset below it is checked
	kinds   map[int64]Kind
	shipped map[int64]bool
	dead    map[int64]string
}

func newLedger(starts map[int32]int64) *ledger {
	l := &ledger{parts: map[int32]*partLedger{}, cust: map[string]int{}, deadBy: map[string]int{}, settledDeadBy: map[string]int{}, unexpected: map[string]int{}}
	for p, s := range starts {
		l.parts[p] = &partLedger{start: s, cursor: s, kinds: map[int64]Kind{}, shipped: map[int64]bool{}, dead: map[int64]string{}}
	}
	return l
}

// part returns the ledger of partition p if off belongs to this run.
func (l *ledger) part(p int32, off int64) *partLedger {
	pl := l.parts[p]
	if pl == nil || off < pl.start {
		return nil
	}
	return pl
}

func (l *ledger) acked(p int32, off int64, k Kind) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.produced[k]++
	if pl := l.part(p, off); pl != nil {
		pl.kinds[off] = k
	}
}

func (l *ledger) failed() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.notAcked++
}

// ship records that the downstream accepted an order.
func (l *ledger) ship(m pipeline.Message[orders.Order]) {
	l.mu.Lock()
	defer l.mu.Unlock()
	pl := l.part(m.Partition(), m.Offset())
	if pl == nil {
		return
	}
	off := m.Offset()
	if pl.shipped[off] || off < pl.cursor {
		l.duplicates++
		return
	}
	pl.shipped[off] = true
	l.shipped++
	o := m.Value()
	if o.Seq <= l.cust[o.Customer] {
		l.outOfOrder++
	}
	l.cust[o.Customer] = max(l.cust[o.Customer], o.Seq)
}

// dead records an acknowledged dead letter.
func (l *ledger) dead(dl pipeline.DeadLetter) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := dl.Record
	pl := l.part(r.Partition, r.Offset)
	if pl == nil {
		return
	}
	if _, dup := pl.dead[r.Offset]; dup || r.Offset < pl.cursor {
		l.duplicates++ // a dead letter written twice (at-least-once)
		return
	}
	pl.dead[r.Offset] = dl.Class
	l.deadBy[dl.Class]++
	l.deadTotal++
}

func (l *ledger) window(t orders.Totals) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.windows++
	l.windowOrders += t.Orders
	if t.Early {
		l.earlyWindows++
	}
}

// check settles the accounts of the records below the committed offsets:
// each must have been shipped, filtered (a test order) or dead-lettered with
// the class its kind calls for; anything else below a commit is lost. It
// stops at an offset whose produce acknowledgement has not arrived yet,
// unless final says every acknowledgement is in.
func (l *ledger) check(committed map[int32]int64, final bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p, c := range committed {
		pl := l.parts[p]
		if pl == nil {
			continue
		}
		for ; pl.cursor < c; pl.cursor++ {
			off := pl.cursor
			k, ok := pl.kinds[off]
			if !ok {
				if !final {
					break // its acknowledgement is on its way
				}
				continue // not produced by this run
			}
			l.settle(p, off, k, pl)
			delete(pl.kinds, off)
			delete(pl.shipped, off)
			delete(pl.dead, off)
		}
	}
}

func (l *ledger) settle(p int32, off int64, k Kind, pl *partLedger) {
	l.checked++
	class, dead := pl.dead[off]
	switch {
	case pl.shipped[off]:
		l.settledShip++
	case dead:
		l.settledDead++
		l.settledDeadBy[class]++
		if class != k.DeadLetterClass() {
			l.unexpected[fmt.Sprintf("%s record as %s", k, class)]++
		}
	case k == KindTest:
		l.filtered++
	default:
		l.lost++
		if len(l.lostExample) < 5 {
			l.lostExample = append(l.lostExample, fmt.Sprintf("%d@%d (%s)", p, off, k))
		}
	}
	if pl.shipped[off] && k != KindGood {
		l.unexpected[fmt.Sprintf("%s record shipped", k)]++
	}
}

// pendingHandledLocked counts the records the commit has not passed that
// were shipped or dead-lettered.
func (l *ledger) pendingHandledLocked() int {
	n := 0
	for _, pl := range l.parts {
		for off := range pl.kinds {
			if _, dead := pl.dead[off]; dead || pl.shipped[off] {
				n++
			}
		}
	}
	return n
}

// total is how many records were acknowledged so far.
func (l *ledger) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := 0
	for _, n := range l.produced {
		t += n
	}
	return t
}

// accounted reports whether every acknowledged record has been shipped,
// dead-lettered or filtered, given how many records the filter dropped.
func (l *ledger) accounted(filtered int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	total := 0
	for _, n := range l.produced {
		total += n
	}
	return l.shipped+l.deadTotal+filtered >= total
}

// countingDeadLetterer records every acknowledged dead letter in the ledger.
type countingDeadLetterer struct {
	next pipeline.DeadLetterer
	l    *ledger
}

func (d countingDeadLetterer) DeadLetter(ctx context.Context, dl pipeline.DeadLetter) error {
	if err := d.next.DeadLetter(ctx, dl); err != nil {
		return err
	}
	d.l.dead(dl)
	return nil
}
