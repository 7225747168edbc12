package consumer

import (
	"fmt"
	"sort"
)

// tracker follows the records of one partition from the moment they are
// handed to the handler until they settle, in any order, and answers the
// commit watermark: the offset of the lowest unsettled record, or the offset
// after the last record when every record has settled.
//
// Entries are kept in offset order. Settled entries at the front are dropped
// at once; settled entries behind an unsettled one are dropped by compaction
// once they outnumber the unsettled ones, so memory stays proportional to the
// records in flight, not to the offset range behind a stuck record.
//
// A tracker is not safe for concurrent use; its partition serializes access.
type tracker struct {
	entries []entry // entries[head:] are tracked, sorted by offset
	head    int
	done    int // settled entries in entries[head:]

	unsettled      int
	unsettledBytes int64

	next      int64 // offset after the last added record; -1 before any
	nextEpoch int32 // leader epoch of the last added record
}

type entry struct {
	offset int64
	// prevEpoch is the leader epoch of the record added just before this
	// one: the epoch to commit with when this record is the watermark
	// (Kafka commits the epoch of the last consumed record, KIP-320).
	prevEpoch int32
	size      int32
	settled   bool
}

func newTracker() *tracker { return &tracker{next: -1, nextEpoch: -1} }

// add tracks a record handed to the handler. Offsets must increase.
func (t *tracker) add(offset int64, epoch int32, size int32) {
	if offset < t.next {
		panic(fmt.Sprintf("consumer: tracker: offset %d added after %d", offset, t.next-1))
	}
	t.entries = append(t.entries, entry{offset: offset, prevEpoch: t.nextEpoch, size: size})
	t.next = offset + 1
	t.nextEpoch = epoch
	t.unsettled++
	t.unsettledBytes += int64(size)
}

// settle marks the record at offset settled and returns the size it was
// added with; ok is false if it was not tracked or already settled.
func (t *tracker) settle(offset int64) (size int32, ok bool) {
	live := t.entries[t.head:]
	i := t.index(live, offset)
	if i == len(live) || live[i].offset != offset || live[i].settled {
		return 0, false
	}
	live[i].settled = true
	size = live[i].size
	t.unsettled--
	t.unsettledBytes -= int64(size)
	if i > 0 {
		t.done++
		t.maybeCompact()
		return size, true
	}
	// The front settled: drop it and every settled entry behind it.
	t.head++
	for t.head < len(t.entries) && t.entries[t.head].settled {
		t.head++
		t.done--
	}
	if t.head == len(t.entries) {
		t.entries, t.head = t.entries[:0], 0
	} else if t.head > 1024 && t.head > len(t.entries)/2 {
		n := copy(t.entries, t.entries[t.head:])
		t.entries, t.head = t.entries[:n], 0
	}
	return size, true
}

// index returns where offset is, or would be, in live. Offsets of one
// partition are mostly consecutive (gaps come from compaction and
// transaction markers), so the distance from the first entry finds most
// records at once; a binary search finds the rest.
func (t *tracker) index(live []entry, offset int64) int {
	if len(live) > 0 {
		if d := offset - live[0].offset; d >= 0 && d < int64(len(live)) && live[d].offset == offset {
			return int(d)
		}
	}
	return sort.Search(len(live), func(i int) bool { return live[i].offset >= offset })
}

// maybeCompact drops settled entries behind the front once they outnumber
// the unsettled ones. The front entry is never settled, so the watermark and
// its epoch are unchanged.
func (t *tracker) maybeCompact() {
	if t.done < 64 || t.done < t.unsettled {
		return
	}
	kept := t.entries[:0]
	for _, e := range t.entries[t.head:] {
		if !e.settled {
			kept = append(kept, e)
		}
	}
	t.entries, t.head, t.done = kept, 0, 0
}

// watermark returns the offset to commit and the leader epoch that goes with
// it; ok is false before any record was added.
func (t *tracker) watermark() (offset int64, epoch int32, ok bool) {
	if t.head < len(t.entries) {
		e := t.entries[t.head]
		return e.offset, e.prevEpoch, true
	}
	return t.next, t.nextEpoch, t.next >= 0
}

// tracked is how many entries the tracker holds, settled or not.
func (t *tracker) tracked() int { return len(t.entries) - t.head }
