package consumer

import (
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/pipeline"
)

// earlyFraction is the part of CommitInterval after which a consumer that
// has read everything there is commits (at least once) or ends its
// transaction (exactly once), without waiting for the rest of the interval.
const earlyFraction = 4

// logEnds follows whether the consumer has read everything there is: the
// last fetch with records of every owned partition reached the end of its
// log, its last stable offset (read_committed reads no further; a
// read_uncommitted consumer may read past it into open transactions, which
// at worst makes it commit early once). Commits then need not wait for the
// rest of CommitInterval: no backlog waits behind them, and readers of what
// the consumer wrote see it sooner.
//
// A partition that has not brought records since it was assigned or
// rewound is left out (franz-go delivers no fetch without records, and a
// fetch session leaves unchanged partitions out of its responses): it is
// idle, or its first fetch, if it has a backlog, says so before long.
type logEnds struct {
	atEnd    map[pipeline.TopicPartition]bool // the poll loop's
	caughtUp atomic.Bool                      // set by the poll loop after each poll
}

// fetched notes a fetch of records of tp; the poll loop calls it.
func (e *logEnds) fetched(tp pipeline.TopicPartition, fp kgo.FetchTopicPartition) {
	if e.atEnd == nil {
		e.atEnd = map[pipeline.TopicPartition]bool{}
	}
	last := fp.Records[len(fp.Records)-1].Offset
	end := fp.LastStableOffset
	if end < 0 { // a broker too old to say
		end = fp.HighWatermark
	}
	e.atEnd[tp] = last+1 >= end
}

// update sets caughtUp from the owned partitions after a poll.
func (e *logEnds) update(owned []pipeline.TopicPartition) {
	caughtUp := len(e.atEnd) > 0
	for _, tp := range owned {
		if atEnd, ok := e.atEnd[tp]; ok && !atEnd {
			caughtUp = false
			break
		}
	}
	e.caughtUp.Store(caughtUp)
}

// reset forgets every partition: they are read again from their committed
// offsets.
func (e *logEnds) reset() {
	clear(e.atEnd)
	e.caughtUp.Store(false)
}
