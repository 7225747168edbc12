package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/pipeline"
)

// Summary is what a demo run did with the orders it produced. Produced =
// Handled + DeadLettered + Lost + Pending.
type Summary struct {
	// Producing is how long orders were produced, Draining how long the
	// demo then waited for them to be handled, Stopping how long the
	// consumer then took to stop (letting the orders in flight settle for
	// at most StopTimeout).
	Producing, Draining, Stopping time.Duration
	// Interrupted says the run was cut short (ctx cancelled).
	Interrupted bool
	// Produced counts the orders the broker acknowledged; ByKind splits
	// them by what the producer made them (see Kind). NotAcked counts
	// writes the broker did not acknowledge (not part of the run).
	Produced int
	ByKind   map[string]int
	NotAcked int
	// Handled = Shipped (accepted by the downstream) + Filtered (test
	// orders the filter dropped), counting records the group's commit
	// passed.
	Handled, Shipped, Filtered int
	// DeadLettered counts the records whose dead letter was acknowledged
	// and that the group's commit passed; DeadByReason splits them by
	// failure class.
	DeadLettered int
	DeadByReason map[string]int
	// ReadBack counts this run's dead letters read back from the
	// dead-letter topic after the run, by class in ReadBackByReason.
	ReadBack         int
	ReadBackByReason map[string]int
	// Unexpected counts dead letters (or shipments) the record's kind does
	// not explain, such as a good order dead-lettered during the outage.
	// It must be empty.
	Unexpected map[string]int
	// Duplicates counts deliveries beyond the first (to the downstream or
	// to the dead-letter topic). OutOfOrder counts orders shipped after a
	// later order of the same customer. Lost counts records the commit
	// passed that were neither handled nor dead-lettered; it must be 0.
	// Pending counts records the commit had not passed when the demo
	// stopped: they stay in Kafka for the next run of the group.
	// PendingHandled of them had been shipped or dead-lettered (the next
	// run handles them again).
	Duplicates, OutOfOrder, Lost, Pending, PendingHandled int
	LostExamples                                          []string
	// CommittedToEnd says the group's final commit reached the end of
	// every partition.
	CommittedToEnd bool
	// Windows counts the totals windows, WindowOrders the orders in them
	// (each decodable, non-test order once), EarlyWindows those flushed
	// early when the partitions closed.
	Windows, WindowOrders, EarlyWindows int
	// BreakerOpened counts how often the ship sink's breaker opened;
	// Retries counts retries of the ship sink.
	BreakerOpened, Retries int
	// DLQTopic is the dead-letter topic; Next the commands to try next.
	DLQTopic string
	Next     []string
	// LogFile is where the logs went ("" for standard error).
	LogFile string
}

// commits is the consumer hook that remembers the last commit of each
// partition.
type commits struct {
	mu sync.Mutex
	at map[int32]int64
}

func (c *commits) OnCommitted(tp pipeline.TopicPartition, offset int64, err error) {
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at[tp.Partition] = max(c.at[tp.Partition], offset)
}

func (c *commits) snapshot() map[int32]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[int32]int64, len(c.at))
	for p, o := range c.at {
		out[p] = o
	}
	return out
}

// finish stops the consumer gracefully (drain, commit), showing what it
// waits for, settles the accounts against the group's committed offsets as
// the broker has them, reads the dead letters back, and sums up.
func (r *run) finish() (*Summary, error) {
	r.stopCons()
	err := r.waitStopped()
	r.stopEnd = time.Now()
	r.consDone = nil
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	r.stopWatch()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...), kgo.WithLogger(nil))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	committed, err := groupOffsets(ctx, adm, r.cfg.Topic)
	if err != nil {
		return nil, err
	}
	ends, err := endOffsets(ctx, adm, r.cfg.Topic)
	if err != nil {
		return nil, err
	}
	r.led.check(committed, true)
	dlqTopic := r.cfg.Topic + dlq.DefaultSuffix
	readBack, err := r.readBack(ctx, dlqTopic)
	if err != nil {
		return nil, err
	}

	l := r.led
	l.mu.Lock()
	defer l.mu.Unlock()
	s := &Summary{
		Producing:   r.produceEnd.Sub(r.produceStart),
		Draining:    r.drainEnd.Sub(r.produceEnd),
		Stopping:    r.stopEnd.Sub(r.drainEnd),
		Interrupted: r.interrupted,
		ByKind:      map[string]int{},
		NotAcked:    l.notAcked,
		Shipped:     l.settledShip, Filtered: l.filtered,
		DeadLettered: l.settledDead, DeadByReason: l.settledDeadBy,
		ReadBackByReason: readBack,
		Unexpected:       l.unexpected,
		Duplicates:       l.duplicates, OutOfOrder: l.outOfOrder, Lost: l.lost, LostExamples: l.lostExample,
		Windows: l.windows, WindowOrders: l.windowOrders, EarlyWindows: l.earlyWindows,
		BreakerOpened: int(r.finalGauges.breakerOpen), Retries: int(r.finalGauges.retries),
		DLQTopic: dlqTopic,
		LogFile:  r.logPath,
	}
	for k, n := range l.produced {
		s.Produced += n
		if n > 0 {
			s.ByKind[Kind(k).String()] = n
		}
	}
	s.Handled = s.Shipped + s.Filtered
	s.Pending = s.Produced - l.checked
	s.PendingHandled = l.pendingHandledLocked()
	s.ReadBack = sum(readBack)
	s.CommittedToEnd = true
	for p, e := range ends {
		if committed[p] != e {
			s.CommittedToEnd = false
		}
	}
	s.Next = r.next(dlqTopic)
	return s, nil
}

// endOffsets returns the end offsets of topic.
func endOffsets(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	listed, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	ends := map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	return ends, nil
}

// readBack counts, by class, this run's dead letters on the dead-letter
// topic: those whose provenance points at this run's part of the topic.
func (r *run) readBack(ctx context.Context, topic string) (map[string]int, error) {
	adm, err := dlq.NewAdmin(ctx, dlq.Conn{Connection: sluice.Connection{Brokers: r.brokers}})
	if err != nil {
		return nil, err
	}
	defer adm.Close()
	out := map[string]int{}
	err = adm.Read(ctx, topic, nil, func(l dlq.Letter) error {
		p := l.Provenance
		if l.ProvenanceErr == nil && p.Topic == r.cfg.Topic && p.Offset >= r.starts[p.Partition] {
			out[p.Class]++
		}
		return nil
	})
	if errors.Is(err, dlq.ErrUnknownTopic) {
		return out, nil // nothing was ever dead-lettered
	}
	return out, err
}

// next is the commands to try after the demo.
func (r *run) next(dlqTopic string) []string {
	c := r.cfg.Command
	if len(r.cfg.Brokers) > 0 {
		b := " --brokers " + strings.Join(r.cfg.Brokers, ",")
		return []string{
			fmt.Sprintf("%s dlq stats %s%s", c, dlqTopic, b),
			fmt.Sprintf("%s dlq inspect %s --class panic%s", c, dlqTopic, b),
		}
	}
	return []string{
		fmt.Sprintf("%s dev broker --data-dir %s &   # serve the demo's data on 127.0.0.1:9092", c, r.dataDir),
		fmt.Sprintf("%s dlq stats %s", c, dlqTopic),
		fmt.Sprintf("%s dlq inspect %s --class panic", c, dlqTopic),
		fmt.Sprintf("%s dlq replay %s --class permanent --dry-run", c, dlqTopic),
	}
}

// Print writes the summary for a person.
func (s *Summary) Print(w io.Writer) {
	fmt.Fprintln(w)
	how := fmt.Sprintf("%s of producing, then %s to drain and %s to stop", s.Producing.Round(100*time.Millisecond),
		s.Draining.Round(100*time.Millisecond), s.Stopping.Round(100*time.Millisecond))
	if s.Interrupted {
		how += " (interrupted)"
	}
	fmt.Fprintf(w, "summary: %s\n", how)
	row := func(name string, n int, detail string) {
		if detail != "" {
			detail = "  " + detail
		}
		fmt.Fprintf(w, "  %-16s %7d%s\n", name, n, detail)
	}
	row("produced", s.Produced, kinds(s.ByKind))
	row("handled", s.Handled, fmt.Sprintf("%d shipped, %d test orders filtered", s.Shipped, s.Filtered))
	row("dead-lettered", s.DeadLettered, fmt.Sprintf("%s; %d read back from %s", byReason(s.DeadByReason), s.ReadBack, s.DLQTopic))
	row("duplicates", s.Duplicates, "")
	row("out of order", s.OutOfOrder, "per customer")
	lost := ""
	if len(s.LostExamples) > 0 {
		lost = "e.g. " + strings.Join(s.LostExamples, ", ")
	}
	row("lost", s.Lost, lost)
	pending := "the group committed every partition to its end"
	if !s.CommittedToEnd {
		pending = fmt.Sprintf("not committed when the demo stopped, %d of them shipped or dead-lettered: the group's next run handles them (again)", s.PendingHandled)
	}
	row("pending", s.Pending, pending)
	row("windows", s.Windows, fmt.Sprintf("totalled %d orders; %d flushed early at shutdown", s.WindowOrders, s.EarlyWindows))
	row("breaker opened", s.BreakerOpened, fmt.Sprintf("times; %d retries", s.Retries))
	if s.NotAcked > 0 {
		row("not acknowledged", s.NotAcked, "writes refused, or cut short by the interrupt (not part of the run)")
	}
	if len(s.Unexpected) > 0 {
		fmt.Fprintf(w, "  UNEXPECTED: %s\n", byReason(s.Unexpected))
	} else if s.DeadLettered > 0 {
		fmt.Fprintf(w, "  every dead letter is a poison record (%s): the outage dead-lettered nothing\n", strings.Join(sortedKeys(s.DeadByReason), ", "))
	}
	if len(s.Next) > 0 {
		fmt.Fprintln(w, "\nnext, look at the dead letters:")
		for _, n := range s.Next {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
	if s.LogFile != "" {
		fmt.Fprintf(w, "logs: %s\n", s.LogFile)
	}
}

func kinds(by map[string]int) string {
	var parts []string
	for k := range numKinds {
		if n := by[k.String()]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, k))
		}
	}
	return strings.Join(parts, ", ")
}
