// Command consume measures consume throughput of Sluice against a raw
// franz-go PollFetches loop, on the same broker, in the same run. The -work
// modes compare the two again with some work per record (-work rounds of
// SHA-256 over the value), done in the poll loop for raw-work and in the
// handler for consumer-work.
//
// It starts `sluice dev broker` (franz-go's kfake) as a separate process (this
// binary re-executed in broker mode), produces the records once, then runs
// each mode in turn for several rounds, every run with a fresh consumer group
// that reads the topic from the start. Throughput is records per second from
// the first record received to the last; ratios compare each mode with the
// raw loop of the same round.
//
//	go run ./bench/consume -records 1000000 -size 200 -partitions 12 -rounds 3
package main

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/backpressure"
	"github.com/sluice-go/sluice/bench/internal/proc"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/handlers"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/stages"
)

type mode struct {
	name string
	run  func(ctx context.Context, addr, group string, f *flow) error
}

var (
	records    = flag.Int("records", 1_000_000, "records to produce and consume")
	size       = flag.Int("size", 200, "value size in bytes")
	partitions = flag.Int("partitions", 12, "partitions of the topic")
	rounds     = flag.Int("rounds", 3, "rounds; each runs every mode once")
	modesFlag  = flag.String("modes", "raw,consumer,guarded", "modes to run: "+strings.Join(modeNames(), ","))
	brokerAddr = flag.String("broker", "", "use this broker instead of starting one")
	partMark   = flag.Int("partition-records", 0, "consumer high-water mark in records per partition (0: the consumer's default)")
	cpuProfile = flag.String("cpuprofile", "", "write a CPU profile of the consuming runs (not the produce) to this file")
	mutexProf  = flag.String("mutexprofile", "", "write a profile of lock contention (sync.Mutex) during the consuming runs to this file: where lanes queue on a shared lock")
	memProfile = flag.String("memprofile", "", "write a heap profile to this file when the first consumer run is half done")
	work       = flag.Int("work", 2, "the -work modes hash each record's value this many times (SHA-256), standing for a handler's own work")
	decisions  = flag.Bool("decisions", false, "print the adaptive limiter's decisions of the guarded modes")
	guardsArg  = flag.String("guards", allGuards, "the guards of the guarded modes, outer to inner (a subset, to tell one guard's cost from another's)")
	limiterArg = flag.String("limiter", "adaptive", "the guarded modes' concurrency limiter: adaptive, or fixed:N (a fixed limit of N, to tell the chain's cost from the adaptive limit's)")
)

const topic = "bench"

// allGuards is every guard, as the DESIGN target asks.
const allGuards = "budget,retry,breaker,rate,limiter,timeout"

func main() {
	if proc.Child(nil) {
		return
	}
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "consume:", err)
		os.Exit(1)
	}
}

func run() error {
	var selected []mode
	for _, name := range strings.Split(*modesFlag, ",") {
		i := slices.IndexFunc(allModes, func(m mode) bool { return m.name == name })
		if i < 0 {
			return fmt.Errorf("unknown mode %q (have %s)", name, strings.Join(modeNames(), ", "))
		}
		selected = append(selected, allModes[i])
	}
	addr := *brokerAddr
	if addr == "" {
		b, err := proc.StartBroker(fmt.Sprintf("%s:%d", topic, *partitions))
		if err != nil {
			return err
		}
		defer b.Stop()
		addr = b.Addr
		brokerCPU = b.CPU
		defer func() { brokerCPU = func() time.Duration { return -1 } }()
	}
	fmt.Printf("broker %s (separate process), %d records x %d B over %d partitions, GOMAXPROCS %d, %s\n",
		addr, *records, *size, *partitions, runtime.GOMAXPROCS(0), runtime.Version())
	if d, err := pageFaultCost(); err == nil {
		// Every fault below costs this much; on some virtual machines it
		// is tens of times what it is on bare metal.
		fmt.Printf("a minor page fault costs %v here (GODEBUG=%q)\n", d, os.Getenv("GODEBUG"))
	}
	if err := produce(addr); err != nil {
		return err
	}

	stopProfile, err := proc.CPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	if *mutexProf != "" {
		runtime.SetMutexProfileFraction(5)
		defer func() {
			if err := writeProfile("mutex", *mutexProf); err != nil {
				fmt.Fprintln(os.Stderr, "consume:", err)
			}
		}()
	}
	ctx := context.Background()
	// The first read of freshly produced data is slower (the broker's
	// buffers, this process's heap growing): a warm-up pass, not reported,
	// keeps it out of the first round's baseline.
	if err := runRaw(ctx, addr, fmt.Sprintf("warmup-%d", time.Now().UnixNano()), &flow{}); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	results := map[string][]float64{}
	ratios := map[string][]float64{}
	cpu := map[string][]float64{}     // consumer-process CPU ns per record
	faults := map[string][]float64{}  // consumer-process minor page faults per 1000 records
	gcs := map[string][]float64{}     // consumer-process GC CPU ns per record (the runtime's estimate)
	brokers := map[string][]float64{} // broker-process CPU ns per record
	cores := map[string][]float64{}   // cores this process and the broker kept busy
	for r := range *rounds {
		base := map[bool]float64{} // the raw loop's rate this round, without and with -work
		for _, m := range selected {
			group := fmt.Sprintf("%s-%d-%d", m.name, r, time.Now().UnixNano())
			runtime.GC() // the previous run's garbage is not this run's cost
			f := &flow{}
			var err error
			// Labelled, so that one profile splits by mode:
			// go tool pprof -tagfocus mode=consumer ...
			pprof.Do(ctx, pprof.Labels("mode", m.name), func(ctx context.Context) { err = m.run(ctx, addr, group, f) })
			if err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			b, e := f.begin, f.end
			d := e.at.Sub(b.at)
			rate := float64(*records) / d.Seconds()
			perRecord := func(x time.Duration) float64 { return float64(x.Nanoseconds()) / float64(*records) }
			cpuPer := perRecord(e.cpu - b.cpu)
			gcPer := (e.gc.cpu - b.gc.cpu) * 1e9 / float64(*records)
			brokerPer, used := -1.0, -1.0
			if b.broker >= 0 && e.broker >= 0 {
				brokerPer = perRecord(e.broker - b.broker)
				used = (cpuPer + brokerPer) * rate / 1e9 // cores both processes kept busy
				brokers[m.name] = append(brokers[m.name], brokerPer)
				cores[m.name] = append(cores[m.name], used)
			}
			faultsPer := float64(e.faults-b.faults) * 1000 / float64(*records)
			cpu[m.name] = append(cpu[m.name], cpuPer)
			gcs[m.name] = append(gcs[m.name], gcPer)
			faults[m.name] = append(faults[m.name], faultsPer)
			results[m.name] = append(results[m.name], rate)
			withWork := strings.HasSuffix(m.name, "-work")
			if strings.HasPrefix(m.name, "raw") {
				base[withWork] = rate
			}
			if b := base[withWork]; b > 0 {
				ratios[m.name] = append(ratios[m.name], rate/b)
			}
			fmt.Printf("round %d %-13s %9.0f records/s (%v), CPU per record: %4.0f ns (GC %3.0f ns, %d cycles), broker %s, cores used %s; %3.0f page faults per 1000 records\n",
				r+1, m.name, rate, d.Round(time.Millisecond), cpuPer, gcPer, e.gc.cycles-b.gc.cycles, orDash("%.0f ns", brokerPer), orDash("%.2f", used), faultsPer)
		}
	}
	fmt.Println()
	fmt.Println("| mode | median records/s | median ratio to raw (raw-work for -work modes; same round) | consumer-process CPU per record | of which GC | broker-process CPU per record | cores used | page faults per 1000 records |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, m := range selected {
		ratio := "-"
		if rs := ratios[m.name]; len(rs) > 0 {
			ratio = fmt.Sprintf("%.2f", median(rs))
		}
		broker, used := "-", "-"
		if bs := brokers[m.name]; len(bs) > 0 {
			broker, used = orDash("%.0f ns", median(bs)), orDash("%.2f", median(cores[m.name]))
		}
		fmt.Printf("| %s | %.0f | %s | %.0f ns | %.0f ns | %s | %s | %.0f |\n", m.name, median(results[m.name]), ratio, median(cpu[m.name]), median(gcs[m.name]), broker, used, median(faults[m.name]))
	}
	return nil
}

func produce(addr string) error {
	start := time.Now()
	if err := proc.Produce(context.Background(), addr, topic, *records, *size); err != nil {
		return err
	}
	fmt.Printf("produced in %v\n", time.Since(start).Round(time.Millisecond))
	return nil
}

var allModes = []mode{
	{"raw", runRaw},
	{"consumer", runConsumer},
	{"sink", runSink},
	{"guarded", runGuarded},
	{"guarded-batch", runGuardedBatch},
	{"raw-work", runRawWork},
	{"consumer-work", runConsumerWork},
}

func modeNames() []string {
	var names []string
	for _, m := range allModes {
		names = append(names, m.name)
	}
	return names
}

// runRaw is the baseline: a group consumer polling fetches with franz-go's
// default autocommit, doing the least work any consumer does: it looks at
// every record (its value's length).
func runRaw(ctx context.Context, addr, group string, f *flow) error {
	return pollLoop(ctx, addr, group, f, func([]byte) {})
}

// runRawWork is runRaw with each record's work (-work) done in the poll
// loop, one record after the other: the simplest program a franz-go user
// would write.
func runRawWork(ctx context.Context, addr, group string, f *flow) error {
	return pollLoop(ctx, addr, group, f, doWork)
}

// doWork is a handler's own work on a record: -work rounds of SHA-256 over
// its value.
func doWork(v []byte) {
	for range *work {
		sum := sha256.Sum256(v)
		workSink.Add(uint64(sum[0]))
	}
}

// workSink keeps doWork's results, so the work is not optimized away.
var workSink atomic.Uint64

func pollLoop(ctx context.Context, addr, group string, f *flow, each func([]byte)) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic))
	if err != nil {
		return err
	}
	defer cl.Close()
	var n, bytes int
	for n < *records {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			return err
		}
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) > 0 {
				f.first()
			}
			for _, r := range p.Records {
				bytes += len(r.Value)
				each(r.Value)
			}
			n += len(p.Records)
		})
	}
	f.last()
	if bytes < n { // keep the loop's work
		return fmt.Errorf("read %d bytes from %d records", bytes, n)
	}
	return nil
}

// runConsumer runs Sluice's consumer with a handler that settles every
// record as soon as it gets it.
func runConsumer(ctx context.Context, addr, group string, f *flow) error {
	h := &noopHandler{want: int64(*records), done: make(chan struct{}), flow: f}
	return runSluice(ctx, addr, group, f, h, h.done)
}

// runConsumerWork is runConsumer with each record's work (-work) done in the
// handler before it settles: the consumer runs partitions side by side.
func runConsumerWork(ctx context.Context, addr, group string, f *flow) error {
	h := &noopHandler{want: int64(*records), done: make(chan struct{}), work: true, flow: f}
	return runSluice(ctx, addr, group, f, h, h.done)
}

func runSluice(ctx context.Context, addr, group string, f *flow, h pipeline.Handler, done <-chan struct{}, extra ...consumer.Opt) error {
	pc := &pauseCounter{}
	opts := []consumer.Opt{consumer.Connection(sluice.Connection{Brokers: []string{addr}}), consumer.Group(group), consumer.Handle(h),
		consumer.Logger(slog.New(slog.NewTextHandler(io.Discard, nil))), consumer.Hooks(pc)}
	opts = append(opts, extra...)
	if *partMark > 0 {
		opts = append(opts, consumer.MaxUnsettled(consumer.Water{Records: *partMark}, consumer.Water{Records: max(*partMark*12, 100_000)}))
	}
	defer func() {
		if n := pc.n.Load(); n > 0 {
			fmt.Printf("  (fetches paused %d times at the water marks)\n", n)
		}
	}()
	c, err := consumer.New(opts...)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	select {
	case <-done:
	case err := <-errc:
		cancel()
		return fmt.Errorf("consumer stopped early: %v", err)
	}
	f.last()
	cancel()
	return <-errc
}

type pauseCounter struct{ n atomic.Int64 }

func (p *pauseCounter) OnPaused(_ pipeline.TopicPartition, paused bool) {
	if paused {
		p.n.Add(1)
	}
}

// runSink is runGuarded without the guards: the same pipeline and
// per-record deadline, the no-op sink called directly. It tells the guards'
// cost from the pipeline's.
func runSink(ctx context.Context, addr, group string, f *flow) error {
	c := newCounter(f)
	p := pipeline.New(pipeline.Logger(slog.New(slog.DiscardHandler)))
	pipeline.Sink(pipeline.Source(p, topic, pipeline.Bytes()), "noop", func(context.Context, pipeline.Message[[]byte]) error {
		c.add(1)
		return nil
	})
	if err := p.Err(); err != nil {
		return err
	}
	return runSluice(ctx, addr, group, f, p, c.done, consumer.RecordBudget(time.Minute))
}

// runGuarded runs the DESIGN target's case: a pipeline whose no-op sink is
// wrapped in every guard (deadline budget, retry, breaker, rate limit,
// adaptive concurrency limit, per-attempt timeout, panic recovery), with a
// per-record deadline from the consumer. Each partition runs its own
// instance, so the sink is called from as many goroutines as partitions.
func runGuarded(ctx context.Context, addr, group string, f *flow) error {
	c := newCounter(f)
	sink, err := guard(func(context.Context, pipeline.Message[[]byte]) error {
		c.add(1)
		return nil
	})
	if err != nil {
		return err
	}
	p := pipeline.New(pipeline.Logger(slog.New(slog.DiscardHandler)))
	pipeline.Sink(pipeline.Source(p, topic, pipeline.Bytes()), "noop", sink)
	if err := p.Err(); err != nil {
		return err
	}
	return runSluice(ctx, addr, group, f, p, c.done, consumer.RecordBudget(time.Minute))
}

// runGuardedBatch is runGuarded with the records grouped in batches of 100
// (or whatever arrived in 5ms) before the guarded sink, as a bulk sink
// would take them: the guards run once per batch.
func runGuardedBatch(ctx context.Context, addr, group string, f *flow) error {
	c := newCounter(f)
	sink, err := guard(func(_ context.Context, m pipeline.Message[stages.Batch[[]byte]]) error {
		c.add(int64(len(m.Value())))
		return nil
	})
	if err != nil {
		return err
	}
	p := pipeline.New(pipeline.Logger(slog.New(slog.DiscardHandler)))
	pipeline.Sink(stages.Batches(pipeline.Source(p, topic, pipeline.Bytes()), "batch", 100, 5*time.Millisecond), "noop", sink)
	if err := p.Err(); err != nil {
		return err
	}
	return runSluice(ctx, addr, group, f, p, c.done, consumer.RecordBudget(time.Minute))
}

// counter counts handled records and says when all were.
type counter struct {
	n    atomic.Int64
	flow *flow
	done chan struct{}
}

func newCounter(f *flow) *counter { return &counter{flow: f, done: make(chan struct{})} }

func (c *counter) add(n int64) {
	c.flow.first()
	want := int64(*records)
	if now := c.n.Add(n); now >= want && now-n < want {
		close(c.done)
	}
}

// guard wraps sink in the guards -guards names (default: every guard, as
// the DESIGN target asks).
func guard[M any](sink func(context.Context, M) error) (handlers.Guarded[M], error) {
	opts := []handlers.Opt{handlers.Name("noop"), handlers.Logger(slog.New(slog.DiscardHandler))}
	for _, g := range strings.Split(*guardsArg, ",") {
		switch g {
		case "budget":
			opts = append(opts, handlers.Budget(30*time.Second))
		case "retry":
			opts = append(opts, handlers.Retry(handlers.RetryPolicy{}))
		case "breaker":
			opts = append(opts, handlers.Breaker(handlers.BreakerPolicy{}))
		case "rate":
			opts = append(opts, handlers.RateLimit(rate.Inf, 1))
		case "limiter":
			limiter, err := newLimiter()
			if err != nil {
				return nil, err
			}
			opts = append(opts, handlers.Limiter(limiter))
		case "timeout":
			opts = append(opts, handlers.Timeout(10*time.Second))
		case "":
		default:
			return nil, fmt.Errorf("-guards: unknown guard %q (have %s)", g, allGuards)
		}
	}
	return handlers.Guard(sink, opts...)
}

// newLimiter returns the guarded modes' limiter, as -limiter asks.
func newLimiter() (backpressure.Limiter, error) {
	if n, ok := strings.CutPrefix(*limiterArg, "fixed:"); ok {
		limit, err := strconv.Atoi(n)
		if err != nil {
			return nil, fmt.Errorf("-limiter %q: %w", *limiterArg, err)
		}
		return backpressure.NewFixed(limit)
	}
	if *limiterArg != "adaptive" {
		return nil, fmt.Errorf("-limiter %q: want adaptive or fixed:N", *limiterArg)
	}
	var opts []backpressure.AdaptiveOpt
	if *decisions {
		opts = append(opts, backpressure.Hooks(printer{}))
	}
	return backpressure.NewAdaptive(opts...)
}

// printer prints an adaptive limiter's decisions.
type printer struct{}

func (printer) OnDecision(d backpressure.Decision) {
	fmt.Printf("  %s %-10s limit %4d n %6.1f max %4d q %v base %v x %.0f/s\n", d.At.Format("15:04:05.000"), d.Reason, d.Limit,
		d.InFlight, d.MaxInFlight, d.Latency, d.Baseline, d.Throughput)
}

type noopHandler struct {
	work bool // do each record's work (-work) before settling it
	want int64
	n    atomic.Int64
	flow *flow
	done chan struct{}
}

// Topics is the topic the benchmark reads.
func (h *noopHandler) Topics() []string { return []string{topic} }

func (h *noopHandler) OpenPartition(context.Context, pipeline.TopicPartition) (pipeline.Partition, error) {
	return h, nil
}

func (h *noopHandler) Handle(_ context.Context, recs []*pipeline.Record) error {
	h.flow.first()
	for _, r := range recs {
		if h.work {
			doWork(r.Value)
		}
		r.Settle()
	}
	n := h.n.Add(int64(len(recs)))
	if half := h.want / 2; n >= half && n-int64(len(recs)) < half {
		writeHeapProfile()
	}
	if n >= h.want && n-int64(len(recs)) < h.want {
		close(h.done)
	}
	return nil
}

func (h *noopHandler) Close() {}

var heapProfiled atomic.Bool

// writeProfile writes the runtime profile name to path.
func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeHeapProfile writes -memprofile once.
func writeHeapProfile() {
	if *memProfile == "" || !heapProfiled.CompareAndSwap(false, true) {
		return
	}
	f, err := os.Create(*memProfile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "memprofile:", err)
		return
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "memprofile:", err)
	}
}

// minorFaults is how many minor page faults this process has taken: memory
// the kernel had to map on first touch.
func minorFaults() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Minflt
}

// cpuTime is the user+system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// flow measures one run from its first record to its last: the time, and
// the counters of this process and the broker's CPU.
type flow struct {
	once       sync.Once
	begin, end sample
}

// sample is the counters at one moment.
type sample struct {
	at     time.Time
	cpu    time.Duration // this process, user+system
	broker time.Duration // the broker process; -1 when it is not ours
	faults int64
	gc     gcStat
}

func takeSample() sample {
	return sample{at: time.Now(), cpu: cpuTime(), broker: brokerCPU(), faults: minorFaults(), gc: gcStats()}
}

// first marks the first record; only the first call counts, and later
// calls cost one atomic load.
func (f *flow) first() { f.once.Do(func() { f.begin = takeSample() }) }

// last marks the last record.
func (f *flow) last() { f.end = takeSample() }

// brokerCPU is the CPU time the broker process has used, or -1 when the
// broker is not a process this program started.
var brokerCPU = func() time.Duration { return -1 }

// gcStat is the runtime's count of GC cycles and its estimate of the CPU
// time spent in GC (mark assists, background workers, pauses).
type gcStat struct {
	cycles uint64
	cpu    float64 // seconds
}

func gcStats() gcStat {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(s)
	return gcStat{cycles: s[0].Value.Uint64(), cpu: s[1].Value.Float64()}
}

// pageFaultCost measures a minor page fault: the first touch of each page
// of fresh anonymous memory.
func pageFaultCost() (time.Duration, error) {
	const size = 32 << 20
	page := os.Getpagesize()
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return 0, err
	}
	defer func() { _ = syscall.Munmap(b) }()
	start := time.Now()
	for i := 0; i < size; i += page {
		b[i] = 1
	}
	return time.Since(start) / time.Duration(size/page), nil
}

// orDash formats v, or a dash for a value that could not be measured (-1).
func orDash(format string, v float64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

func median(xs []float64) float64 { return proc.Median(xs) }
