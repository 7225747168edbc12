// Command etl measures consume-transform-produce throughput of Sluice's
// Kafka sink against raw franz-go loops doing the same work, on the same
// broker, in the same run:
//
//   - raw-alo: a group consumer that, for each poll, produces one output
//     per record, waits for every acknowledgement, then commits the polled
//     offsets (a raw produce-per-record loop, at least once);
//   - sluice-alo: the consumer, a pipeline and the Kafka sink with a writer
//     of its own (at least once): kafka.Sink behind a fan-out of -workers,
//     then (-batch) stages.Batches and kafka.BatchSink, then (-write)
//     kafka.Write, which writes without waiting and settles on the
//     acknowledgements;
//   - raw-eos: a kgo.GroupTransactSession loop: begin, poll, produce,
//     end the transaction with the polled offsets (exactly once);
//   - sluice-eos: the consumer in exactly-once mode with the Kafka sink's
//     writer in its transactions, written the same three ways.
//
// The transform appends a suffix to the value. It starts `sluice dev broker` as a
// separate process, produces the input once, then runs the modes in turn
// for several rounds, each run with a fresh group and output topic.
// Throughput is input records per second from the start of a run until the
// group's committed offsets reach the end of the input; ratios compare each
// Sluice mode with the raw loop of the same guarantee in the same round.
// Each run also reports the CPU time per input record of this process and
// of the broker, and how many outputs a produce request carried (how well
// the producer batched), how the run's time splits into phases (until the
// first output is written, until the last one is, until the offsets are
// committed) and, for the Sluice modes, how often and how long the
// consumer paused fetching for its water marks. -cpuprofile, -memprofile
// and -trace profile the runs; -linger, -max-unsettled and -fetch-wait try
// other producer lingers, consumer marks and fetch waits.
//
//	go run ./bench/etl -records 200000 -partitions 6 -rounds 5
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/bench/internal/proc"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/sinks/kafka"
	"github.com/sluice-go/sluice/stages"
)

var (
	records    = flag.Int("records", 200_000, "input records")
	size       = flag.Int("size", 100, "value size in bytes")
	partitions = flag.Int("partitions", 6, "partitions of the input and output topics")
	rounds     = flag.Int("rounds", 5, "rounds; each runs every mode once")
	modesFlag  = flag.String("modes", "raw-alo,sluice-alo,sluice-alo-batch,sluice-alo-write,raw-eos,sluice-eos,sluice-eos-batch,sluice-eos-write", "modes to run")
	batch      = flag.Int("batch", 500, "batch size of the -batch modes (stages.Batches before kafka.BatchSink)")
	workers    = flag.Int("workers", 64, "fan-out workers per partition in the Sluice modes")
	interval   = flag.Duration("commit-interval", 200*time.Millisecond, "commit (transaction) interval of the Sluice modes")
	linger     = flag.Duration("linger", -1, "producer linger of the Sluice modes (kafka.ClientOpts at least once, consumer.ClientOpts exactly once); negative keeps the library's")
	unsettled  = flag.Int("max-unsettled", 0, "per-partition high-water mark of unsettled records of the Sluice modes (consumer.MaxUnsettled); 0 keeps the consumer's")
	fetchWait  = flag.Duration("fetch-wait", 0, "fetch max wait of the Sluice modes' consumer (kgo.FetchMaxWait through consumer.ClientOpts); 0 keeps the consumer's")
	debugLog   = flag.Bool("debug-log", false, "log the Sluice modes' consumer and client at debug level to stderr (barrier times: \"transaction committed\" ... took=)")
	brokerAddr = flag.String("broker", "", "use this broker instead of starting one")
	cpuProfile = flag.String("cpuprofile", "", "write a CPU profile of the runs (not the produce) to this file")
	memProfile = flag.String("memprofile", "", "write an allocation profile of the runs (not the produce) to this file")
	traceFile  = flag.String("trace", "", "write an execution trace of the runs (not the produce) to this file (go tool trace)")
)

const input = "etl-in"

type mode struct {
	name     string
	baseline string // the raw mode this one is compared with
	run      func(ctx context.Context, addr, group, out string) error
}

var modes = []mode{
	{name: "raw-alo", run: rawALO},
	{name: "sluice-alo", baseline: "raw-alo", run: sluiceALO(perRecord)},
	{name: "sluice-alo-batch", baseline: "raw-alo", run: sluiceALO(batched)},
	{name: "sluice-alo-write", baseline: "raw-alo", run: sluiceALO(async)},
	{name: "raw-eos", run: rawEOS},
	{name: "sluice-eos", baseline: "raw-eos", run: sluiceEOS(perRecord)},
	{name: "sluice-eos-batch", baseline: "raw-eos", run: sluiceEOS(batched)},
	{name: "sluice-eos-write", baseline: "raw-eos", run: sluiceEOS(async)},
}

func main() {
	if proc.Child(nil) {
		return
	}
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "etl:", err)
		os.Exit(1)
	}
}

func run() error {
	var selected []mode
	for _, name := range strings.Split(*modesFlag, ",") {
		i := indexOf(name)
		if i < 0 {
			return fmt.Errorf("unknown mode %q", name)
		}
		selected = append(selected, modes[i])
	}
	addr := *brokerAddr
	brokerCPU := func() time.Duration { return -1 }
	if addr == "" {
		b, err := proc.StartBroker(fmt.Sprintf("%s:%d", input, *partitions))
		if err != nil {
			return err
		}
		defer b.Stop()
		addr = b.Addr
		brokerCPU = b.CPU
	}
	ctx := context.Background()
	if err := proc.Produce(ctx, addr, input, *records, *size); err != nil {
		return err
	}
	fmt.Printf("%d records of %d bytes, %d partitions; %d rounds; sluice: fan-out %d, commit interval %v\n",
		*records, *size, *partitions, *rounds, *workers, *interval)
	stopProfile, err := proc.CPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	if *traceFile != "" {
		f, err := os.Create(*traceFile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return err
		}
		defer trace.Stop()
	}
	if *memProfile != "" {
		runtime.MemProfileRate = 64 << 10
		runtime.GC()
		// The allocations before the runs (the produce) stay in the profile
		// but are few beside the runs'.
		defer writeMemProfile(*memProfile)
	}
	rates := map[string][]float64{}
	ratios := map[string][]float64{}
	cpus, bcpus, perReq := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	for r := range *rounds {
		got := map[string]float64{}
		for _, m := range selected {
			group := fmt.Sprintf("%s-%d", m.name, r)
			out := group + "-out"
			if err := createTopic(ctx, addr, out); err != nil {
				return err
			}
			stats.reset()
			flowStats.reset()
			began, bcpu, cpu := time.Now(), brokerCPU(), proc.CPU(os.Getpid())
			if err := m.run(ctx, addr, group, out); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			ended := time.Now()
			took := ended.Sub(began)
			start, work, tail := stats.phases(began, ended)
			rate := float64(*records) / took.Seconds()
			got[m.name] = rate
			rates[m.name] = append(rates[m.name], rate)
			pcpu, brcpu := nsPerRecord(proc.CPU(os.Getpid())-cpu), nsPerRecord(brokerCPU()-bcpu)
			cpus[m.name] = append(cpus[m.name], pcpu)
			bcpus[m.name] = append(bcpus[m.name], brcpu)
			perReq[m.name] = append(perReq[m.name], stats.perRequest())
			line := fmt.Sprintf("round %d  %-17s %9.0f rec/s  cpu/rec: this process %4.0f ns, broker %4.0f ns",
				r+1, m.name, rate, pcpu, brcpu)
			line += fmt.Sprintf(", %4.0f outputs/produce request", stats.perRequest())
			line += fmt.Sprintf(", phases %v+%v+%v", start.Round(time.Millisecond), work.Round(time.Millisecond), tail.Round(time.Millisecond))
			if base, ok := got[m.baseline]; ok && m.baseline != "" {
				ratios[m.name] = append(ratios[m.name], rate/base)
				line += fmt.Sprintf("  %.2f of %s", rate/base, m.baseline)
			}
			fmt.Println(line)
			if strings.HasPrefix(m.name, "sluice") {
				fmt.Println("    ", flowStats.String())
			}
		}
	}
	fmt.Println()
	fmt.Println("| mode | records/s (median) | vs raw (median, range) | CPU/record, process | CPU/record, broker | outputs/produce request |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	for _, m := range selected {
		rs := ratios[m.name]
		cmp := "baseline"
		if len(rs) > 0 {
			lo, hi := minMax(rs)
			cmp = fmt.Sprintf("%.2f (%.2f-%.2f)", proc.Median(rs), lo, hi)
		}
		fmt.Printf("| %s | %.0f | %s | %.0f ns | %.0f ns | %.0f |\n", m.name, proc.Median(rates[m.name]), cmp,
			proc.Median(cpus[m.name]), proc.Median(bcpus[m.name]), proc.Median(perReq[m.name]))
	}
	return nil
}

func indexOf(name string) int {
	for i, m := range modes {
		if m.name == name {
			return i
		}
	}
	return -1
}

func minMax(xs []float64) (lo, hi float64) {
	lo, hi = xs[0], xs[0]
	for _, x := range xs {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

func createTopic(ctx context.Context, addr, topic string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return err
	}
	defer cl.Close()
	_, err = kadm.NewClient(cl).CreateTopic(ctx, int32(*partitions), 1, nil, topic)
	return err
}

// transform is the work: a copy of the value with a suffix.
func transform(v []byte) []byte { return append(bytes.Clone(v), "-enriched"...) }

// waitCommitted waits until group committed the end of the input.
func waitCommitted(ctx context.Context, addr, group string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, input)
	if err != nil {
		return err
	}
	for {
		committed, err := adm.FetchOffsets(ctx, group)
		if err == nil {
			done := true
			ends.Each(func(e kadm.ListedOffset) {
				if o, ok := committed.Lookup(e.Topic, e.Partition); !ok || o.At < e.Offset {
					done = false
				}
			})
			if done {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond): // polling the broker's state; the run's clock keeps going meanwhile
		}
	}
}

func groupOpts(addr, group string) []kgo.Opt {
	return []kgo.Opt{kgo.SeedBrokers(addr), kgo.ConsumerGroup(group), kgo.ConsumeTopics(input),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(), kgo.WithHooks(&stats)}
}

// rawALO: poll, produce one output per record, wait for the acks, commit.
func rawALO(ctx context.Context, addr, group, out string) error {
	cl, err := kgo.NewClient(groupOpts(addr, group)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	return rawLoop(ctx, addr, group, out, cl, func(fs kgo.Fetches) error {
		if err := produceAll(ctx, cl, out, fs); err != nil {
			return err
		}
		return cl.CommitUncommittedOffsets(ctx)
	})
}

// rawEOS: begin, poll, produce, end the transaction with the offsets.
func rawEOS(ctx context.Context, addr, group, out string) error {
	s, err := kgo.NewGroupTransactSession(append(groupOpts(addr, group),
		kgo.TransactionalID(group), kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return err
	}
	defer s.Close()
	cl := s.Client()
	if err := s.Begin(); err != nil {
		return err
	}
	return rawLoop(ctx, addr, group, out, cl, func(fs kgo.Fetches) error {
		if err := produceAll(ctx, cl, out, fs); err != nil {
			return err
		}
		if _, err := s.End(ctx, kgo.TryCommit); err != nil {
			return err
		}
		return s.Begin()
	})
}

// rawLoop polls and calls each for every poll until the group committed
// the end of the input.
func rawLoop(ctx context.Context, addr, group, out string, cl *kgo.Client, each func(kgo.Fetches) error) error {
	pollCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- waitCommitted(ctx, addr, group)
		cancel() // wake the poll: the input is done
	}()
	for {
		fs := cl.PollFetches(pollCtx)
		select {
		case err := <-done:
			return err
		default:
		}
		if err := fs.Err0(); err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		if err := each(fs); err != nil {
			return err
		}
	}
}

// produceAll writes one output per fetched record and waits for them all.
func produceAll(ctx context.Context, cl *kgo.Client, out string, fs kgo.Fetches) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	fs.EachRecord(func(r *kgo.Record) {
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Topic: out, Key: r.Key, Value: transform(r.Value)}, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				first = cmp(first, err)
				mu.Unlock()
			}
		})
	})
	wg.Wait()
	return first
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func route(out string) kafka.Route[[]byte] {
	return func(m pipeline.Message[[]byte], outs *kafka.Outputs) error {
		outs.Add(out, m.Key(), transform(m.Value()))
		return nil
	}
}

func sluiceALO(how sinkKind) func(ctx context.Context, addr, group, out string) error {
	return func(ctx context.Context, addr, group, out string) error {
		opts := []kafka.Opt{kafka.Connection(sluice.Connection{Brokers: []string{addr}}), kafka.ClientOpts(kgo.WithHooks(&stats))}
		if *linger >= 0 {
			opts = append(opts, kafka.ClientOpts(kgo.ProducerLinger(*linger)))
		}
		w, err := kafka.NewWriter(opts...)
		if err != nil {
			return err
		}
		defer w.Close()
		return runSluice(ctx, addr, group, out, w, how)
	}
}

func sluiceEOS(how sinkKind) func(ctx context.Context, addr, group, out string) error {
	return func(ctx context.Context, addr, group, out string) error {
		w, err := kafka.NewWriter()
		if err != nil {
			return err
		}
		extra := []consumer.Opt{consumer.ExactlyOnce(group, w), consumer.ClientOpts(kgo.WithHooks(&stats))}
		if *linger >= 0 {
			extra = append(extra, consumer.ClientOpts(kgo.ProducerLinger(*linger)))
		}
		return runSluice(ctx, addr, group, out, w, how, extra...)
	}
}

// sinkKind is how the Sluice modes write: kafka.Sink behind a fan-out,
// kafka.BatchSink behind stages.Batches, or kafka.Write.
type sinkKind int

const (
	perRecord sinkKind = iota
	batched
	async
)

func runSluice(ctx context.Context, addr, group, out string, w *kafka.Writer, how sinkKind, extra ...consumer.Opt) error {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if *debugLog {
		quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	p := pipeline.New(pipeline.Logger(quiet))
	src := pipeline.Source(p, input, pipeline.Bytes())
	switch how {
	case batched:
		pipeline.Sink(stages.Batches(src, "batch", *batch, 5*time.Millisecond), "out", kafka.BatchSink(w, route(out)))
	case async:
		kafka.Write(src, "out", w, route(out))
	default:
		pipeline.Sink(stages.FanOut(src, "workers", *workers), "out", kafka.Sink(w, route(out)))
	}
	if *fetchWait > 0 {
		extra = append(extra, consumer.ClientOpts(kgo.FetchMaxWait(*fetchWait)))
	}
	if *unsettled > 0 {
		extra = append(extra, consumer.MaxUnsettled(consumer.Water{Records: *unsettled}, consumer.Water{}))
	}
	extra = append(extra, consumer.Hooks(&flowStats))
	c, err := consumer.New(append([]consumer.Opt{consumer.Connection(sluice.Connection{Brokers: []string{addr}}), consumer.Group(group), consumer.Handle(p),
		consumer.CommitInterval(*interval), consumer.Logger(quiet)}, extra...)...)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	werr := waitCommitted(ctx, addr, group)
	cancel()
	if err := <-errc; err != nil {
		return err
	}
	return werr
}

// produceStats counts the produce requests of the clients that write the
// outputs, and the records they carry: how well the producer batches.
type produceStats struct {
	requests, records atomic.Int64
	first, last       atomic.Int64 // unix nanoseconds of the first output written, and of the one that made -records
}

var stats produceStats

func (s *produceStats) reset() {
	s.requests.Store(0)
	s.records.Store(0)
	s.first.Store(0)
	s.last.Store(0)
}

func (s *produceStats) perRequest() float64 {
	return float64(s.records.Load()) / float64(max(1, s.requests.Load()))
}

func (s *produceStats) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == 0 && err == nil { // Produce
		s.requests.Add(1)
	}
}

func (s *produceStats) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.ProduceBatchMetrics) {
	n := s.records.Add(int64(m.NumRecords))
	now := time.Now().UnixNano()
	s.first.CompareAndSwap(0, now)
	if n >= int64(*records) {
		s.last.CompareAndSwap(0, now)
	}
}

// phases splits a run that began at began and ended at end: until the
// first output was written (joining the group, the first fetch), until the
// last one was, and until the offsets were committed.
func (s *produceStats) phases(began, end time.Time) (start, work, tail time.Duration) {
	first, last := time.Unix(0, s.first.Load()), time.Unix(0, s.last.Load())
	if s.first.Load() == 0 || s.last.Load() == 0 {
		return 0, end.Sub(began), 0
	}
	return first.Sub(began), last.Sub(first), end.Sub(last)
}

// flowHooks counts the consumer's fetch pauses and fetched records.
type flowHooks struct {
	mu      sync.Mutex
	pauses  int
	since   map[pipeline.TopicPartition]time.Time
	paused  time.Duration
	fetches int
	recs    int
}

var flowStats flowHooks

func (h *flowHooks) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pauses, h.paused, h.fetches, h.recs = 0, 0, 0, 0
	h.since = map[pipeline.TopicPartition]time.Time{}
}

func (h *flowHooks) OnPaused(tp pipeline.TopicPartition, paused bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if paused {
		h.pauses++
		h.since[tp] = time.Now()
	} else if t, ok := h.since[tp]; ok {
		h.paused += time.Since(t)
		delete(h.since, tp)
	}
}

func (h *flowHooks) OnFetched(_ pipeline.TopicPartition, records int, _ int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fetches++
	h.recs += records
}

func (h *flowHooks) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return fmt.Sprintf("pauses %d (%v paused, summed over partitions), %d fetched batches of %d records", h.pauses,
		h.paused.Round(time.Millisecond), h.fetches, h.recs/max(1, h.fetches))
}

// writeMemProfile writes the allocation profile to path.
func writeMemProfile(path string) {
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etl: memprofile:", err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		fmt.Fprintln(os.Stderr, "etl: memprofile:", err)
	}
}

// nsPerRecord is d per input record, in nanoseconds (negative if unknown).
func nsPerRecord(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(*records) }
