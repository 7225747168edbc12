// Command share measures the share-group (KIP-932) mode of the consumer
// against a classic consumer group, on the same broker in the same run:
// records per second with 1, 2 and 4 members on a topic of 2 partitions,
// with a sink that takes 5 ms a record (-sink) and runs one call at a time
// per pipeline partition, as a plain pipeline.Sink does.
//
// A classic group cannot use more members than partitions: each partition
// is one member's, handled in offset order, so throughput stops at
// partitions / sink time whatever the members. A share group hands records
// to every member, each of which runs its batch's partitions in parallel,
// so throughput grows with members.
//
// It starts `sluice dev broker` (kfake) as a separate process, produces the
// input once, then runs every mode in turn for several rounds, each run with
// a fresh group. A run has two figures: from the start, the input records
// over the time from starting the members until every record has been
// handled once; and steady, the records handled after every member that can
// get work (all of a share group's, at most one per partition of a classic
// group's) has handled one, over the time since then. Joining takes
// heartbeats (kfake's share heartbeat interval is 5s), so the figure from
// the start counts it against the short runs of the faster modes. Ratios
// compare each mode with the classic group of one member in the same round.
//
//	go run ./bench/share -records 3000 -rounds 3
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/bench/internal/proc"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/pipeline"
)

var (
	records    = flag.Int("records", 3000, "input records")
	partitions = flag.Int("partitions", 2, "partitions of the input topic")
	rounds     = flag.Int("rounds", 3, "rounds; each runs every mode once")
	sinkTime   = flag.Duration("sink", 5*time.Millisecond, "time the sink takes per record")
	batch      = flag.Int("batch", 50, "ShareMaxRecords of the share members")
	lanes      = flag.Int("lanes", 2, "ShareLanes of the share members; 2, as many as the partitions a classic member owns alone")
	modesFlag  = flag.String("modes", "classic-1,classic-2,classic-4,share-1,share-2,share-4", "modes to run: classic-N or share-N (N members)")
	timeout    = flag.Duration("timeout", 5*time.Minute, "longest a run may take")
)

type mode struct {
	name    string
	share   bool
	members int
}

func parseModes(s string) ([]mode, error) {
	var ms []mode
	for _, f := range strings.Split(s, ",") {
		var m mode
		var kind string
		if _, err := fmt.Sscanf(strings.Replace(f, "-", " ", 1), "%s %d", &kind, &m.members); err != nil || m.members < 1 || (kind != "classic" && kind != "share") {
			return nil, fmt.Errorf("bad mode %q: want classic-N or share-N", f)
		}
		m.name, m.share = f, kind == "share"
		ms = append(ms, m)
	}
	return ms, nil
}

func main() {
	if proc.Child(nil) {
		return
	}
	flag.Parse()
	modes, err := parseModes(*modesFlag)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	const topic = "in"
	b, err := proc.StartBroker(fmt.Sprintf("%s:%d", topic, *partitions))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer b.Stop()
	ctx := context.Background()
	if err := proc.Produce(ctx, b.Addr, topic, *records, 100); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("# %d records, %d partitions, sink %v per record, share batch %d, %d lanes, %d rounds\n\n",
		*records, *partitions, *sinkTime, *batch, *lanes, *rounds)
	rates, steady := map[string][]float64{}, map[string][]float64{}
	ratios, sratios := map[string][]float64{}, map[string][]float64{}
	for r := range *rounds {
		var base, sbase float64
		for i, m := range modes {
			rate, srate, err := run(b.Addr, topic, fmt.Sprintf("g-%d-%d", r, i), m)
			if err != nil {
				fmt.Fprintf(os.Stderr, "round %d %s: %v\n", r+1, m.name, err)
				os.Exit(1)
			}
			if i == 0 {
				base, sbase = rate, srate
			}
			rates[m.name] = append(rates[m.name], rate)
			ratios[m.name] = append(ratios[m.name], rate/base)
			steady[m.name] = append(steady[m.name], srate)
			sratios[m.name] = append(sratios[m.name], srate/sbase)
			fmt.Fprintf(os.Stderr, "round %d %-10s %8.0f records/s from the start, %8.0f steady\n", r+1, m.name, rate, srate)
		}
	}
	fmt.Printf("| mode | members | steady records/s (median) | steady vs %s (median, min-max) | from the start, records/s | from the start vs %s |\n|---|---|---|---|---|---|\n", modes[0].name, modes[0].name)
	for _, m := range modes {
		rs := append([]float64(nil), ratios[m.name]...)
		sort.Float64s(rs)
		ss := append([]float64(nil), sratios[m.name]...)
		sort.Float64s(ss)
		fmt.Printf("| %s | %d | %.0f | %.2f (%.2f-%.2f) | %.0f | %.2f (%.2f-%.2f) |\n", m.name, m.members,
			proc.Median(steady[m.name]), proc.Median(ss), ss[0], ss[len(ss)-1],
			proc.Median(rates[m.name]), proc.Median(rs), rs[0], rs[len(rs)-1])
	}
}

// run starts m.members members in group, waits until every record has been
// handled once, stops them and returns records per second from the start
// and steady (from when every member that can work has handled a record).
func run(addr, topic, group string, m mode) (rate, steady float64, err error) {
	var mu sync.Mutex
	seen := make(map[[2]int64]bool, *records)
	all := make(chan struct{})
	working := m.members
	if !m.share {
		working = min(m.members, *partitions)
	}
	perMember := make([]int, m.members)
	var t0 time.Time
	var n0 int
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var cs []*consumer.Consumer
	for member := range m.members {
		p := pipeline.New(pipeline.Logger(log))
		pipeline.Sink(pipeline.Source(p, topic, pipeline.Bytes()), "work", func(ctx context.Context, msg pipeline.Message[[]byte]) error {
			time.Sleep(*sinkTime) // the downstream call
			mu.Lock()
			if perMember[member]++; perMember[member] == 1 && t0.IsZero() {
				started := 0
				for _, c := range perMember {
					if c > 0 {
						started++
					}
				}
				if started == working {
					t0, n0 = time.Now(), len(seen)
				}
			}
			k := [2]int64{int64(msg.Partition()), msg.Offset()}
			if !seen[k] {
				seen[k] = true
				if len(seen) == *records {
					close(all)
				}
			}
			mu.Unlock()
			return nil
		})
		opts := []consumer.Opt{consumer.Connection(sluice.Connection{Brokers: []string{addr}}), consumer.Handle(p), consumer.Logger(log)}
		if m.share {
			opts = append(opts, consumer.ShareGroup(group), consumer.ShareMaxRecords(*batch), consumer.ShareLanes(*lanes))
		} else {
			opts = append(opts, consumer.Group(group))
		}
		c, err := consumer.New(opts...)
		if err != nil {
			return 0, 0, err
		}
		cs = append(cs, c)
	}
	began := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(cs))
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Run(context.Background()); err != nil {
				errs <- err
			}
		}()
	}
	select {
	case <-all:
	case <-time.After(*timeout):
		mu.Lock()
		err = fmt.Errorf("handled %d of %d records in %v", len(seen), *records, *timeout)
		mu.Unlock()
	}
	ended := time.Now()
	for _, c := range cs {
		go c.Close()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		if err == nil {
			err = e
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if t0.IsZero() {
		return 0, 0, fmt.Errorf("only some of %d members ever handled a record: %v", working, perMember)
	}
	return float64(*records) / ended.Sub(began).Seconds(), float64(*records-n0) / ended.Sub(t0).Seconds(), err
}
