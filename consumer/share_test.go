package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

// shareCluster starts kfake with short share-group timers: a record lock of
// 3s (a killed member's records come back after it at the latest) and a
// lock sweep every 100ms.
func shareCluster(t *testing.T, topic string, partitions int32) *kafkatest.Cluster {
	return kafkatest.New(t, kafkatest.Topic(topic, partitions), kafkatest.Kfake(kfake.BrokerConfigs(map[string]string{
		"group.share.record.lock.duration.ms": "3000",
		"share.record.lock.sweep.interval.ms": "100",
		"group.share.session.timeout.ms":      "3000",
	})))
}

// memDLQ is an in-memory DeadLetterer.
type memDLQ struct {
	mu  sync.Mutex
	dls []pipeline.DeadLetter
}

func (d *memDLQ) DeadLetter(_ context.Context, dl pipeline.DeadLetter) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dls = append(d.dls, dl)
	return nil
}

func (d *memDLQ) all() []pipeline.DeadLetter {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]pipeline.DeadLetter(nil), d.dls...)
}

// shareLedger counts handlings of each record by member.
type shareLedger struct {
	mu       sync.Mutex
	handled  map[pipeline.TopicPartition]map[int64]int
	byMember map[string]int
	total    int
}

func newShareLedger() *shareLedger {
	return &shareLedger{handled: map[pipeline.TopicPartition]map[int64]int{}, byMember: map[string]int{}}
}

func (l *shareLedger) add(member string, topic string, part int32, off int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	tp := pipeline.TopicPartition{Topic: topic, Partition: part}
	if l.handled[tp] == nil {
		l.handled[tp] = map[int64]int{}
	}
	if l.handled[tp][off] == 0 {
		l.total++
	}
	l.handled[tp][off]++
	l.byMember[member]++
}

func (l *shareLedger) distinct() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

func (l *shareLedger) members() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for k, v := range l.byMember {
		out[k] = v
	}
	return out
}

// missing lists the offsets below ends that no one handled.
func (l *shareLedger) missing(topic string, ends map[int32]int64) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for p, end := range ends {
		for o := int64(0); o < end; o++ {
			if l.handled[pipeline.TopicPartition{Topic: topic, Partition: p}][o] == 0 {
				out = append(out, fmt.Sprintf("%d@%d", p, o))
			}
		}
	}
	return out
}

// sharePipeline builds a pipeline with one plain sink calling fn (the
// pipeline's own retries, no guard), dead letters to dl through
// ShareDeadLetters, and opts.
func sharePipeline(t *testing.T, topic string, dl pipeline.DeadLetterer, fn func(ctx context.Context, r *pipeline.Record) error, opts ...pipeline.Opt) *pipeline.Pipeline {
	t.Helper()
	opts = append([]pipeline.Opt{pipeline.Logger(quietLogger())}, opts...)
	if dl != nil {
		opts = append(opts, pipeline.DeadLetters(consumer.ShareDeadLetters(dl)))
	}
	p := pipeline.New(opts...)
	src := pipeline.Source(p, topic, pipeline.Bytes())
	pipeline.Sink(src, "work", func(ctx context.Context, m pipeline.Message[[]byte]) error {
		for r := range pipeline.Records(m.Token()) {
			if err := fn(ctx, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	return p
}

func shareOpts(kc *kafkatest.Cluster, group string, h pipeline.Handler, extra ...consumer.Opt) []consumer.Opt {
	return append([]consumer.Opt{
		consumer.Connection(sluice.Connection{Brokers: kc.Addrs}),
		consumer.ShareGroup(group),
		consumer.Handle(h),
		consumer.Logger(quietLogger()),
		consumer.DrainTimeout(2 * time.Second),
		consumer.CloseGrace(2 * time.Second),
	}, extra...)
}

func TestShareConfigErrors(t *testing.T) {
	p := pipeline.New()
	pipeline.Sink(pipeline.Source(p, "t", pipeline.Bytes()), "s", func(context.Context, pipeline.Message[[]byte]) error { return nil })
	base := []consumer.Opt{consumer.Connection(sluice.Connection{Brokers: []string{"localhost:1"}}), consumer.Handle(p)}
	tests := []struct {
		name string
		give []consumer.Opt
		want string
	}{
		{"group and share group", []consumer.Opt{consumer.Group("g"), consumer.ShareGroup("s")}, "ShareGroup"},
		{"share option without share group", []consumer.Opt{consumer.Group("g"), consumer.ShareMaxRecords(10)}, "ShareGroup"},
		{"neither", nil, "Group"},
		{"static member", []consumer.Opt{consumer.ShareGroup("s"), consumer.InstanceID("i")}, "InstanceID"},
		{"bad limit", []consumer.Opt{consumer.ShareGroup("s"), consumer.ShareDeliveryLimit(0)}, "ShareDeliveryLimit"},
		{"bad renew", []consumer.Opt{consumer.ShareGroup("s"), consumer.ShareRenewEvery(0)}, "ShareRenewEvery"},
		{"bad sink attempts", []consumer.Opt{consumer.ShareGroup("s"), consumer.ShareSinkAttempts(0)}, "ShareSinkAttempts"},
		{"bad lanes", []consumer.Opt{consumer.ShareGroup("s"), consumer.ShareLanes(0)}, "ShareLanes"},
		{"exactly once", []consumer.Opt{consumer.ShareGroup("s"), consumer.ExactlyOnce("tx", nopTxnWriter{})}, "ExactlyOnce"},
		{"transaction timeout without exactly once", []consumer.Opt{consumer.ShareGroup("s"), consumer.TransactionTimeout(time.Minute)}, "TransactionTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := consumer.Validate(append(base, tt.give...)...)
			var ce *sluice.ConfigError
			if !errors.As(err, &ce) || ce.Option != tt.want {
				t.Fatalf("got %v, want a ConfigError naming %s", err, tt.want)
			}
		})
	}
	if err := consumer.Validate(append(base, consumer.ShareGroup("s"))...); err != nil {
		t.Fatalf("share group alone: %v", err)
	}
}

// TestShareSixMembersTwoPartitions: more members than partitions all get
// work, and every record is handled.
func TestShareSixMembersTwoPartitions(t *testing.T) {
	const topic, n = "six", 1200
	kc := shareCluster(t, topic, 2)
	kc.ProduceN(t, topic, n, kafkatest.KeyedValue(50))
	l := newShareLedger()
	var stops []func() error
	for i := range 6 {
		name := fmt.Sprintf("m%d", i)
		p := sharePipeline(t, topic, &memDLQ{}, func(ctx context.Context, r *pipeline.Record) error {
			time.Sleep(time.Millisecond) // the work
			l.add(name, r.Topic, r.Partition, r.Offset)
			return nil
		})
		_, stop := runConsumer(t, shareOpts(kc, "six", p, consumer.ShareMaxRecords(20))...)
		stops = append(stops, stop)
	}
	kafkatest.Eventually(t, 60*time.Second, func() bool { return l.distinct() == n }, "handled %v of %d records",
		kafkatest.Lazy(func() any { return l.distinct() }), n)
	for _, stop := range stops {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}
	if miss := l.missing(topic, kc.EndOffsets(t, topic)); len(miss) > 0 {
		t.Fatalf("lost %d records: %v", len(miss), miss[:min(10, len(miss))])
	}
	got := l.members()
	t.Logf("records handled per member: %v", got)
	for i := range 6 {
		if got[fmt.Sprintf("m%d", i)] == 0 {
			t.Errorf("member m%d got no work: %v", i, got)
		}
	}
}

// exhausted is a transient failure past its retry policy, as a guarded
// sink (package handlers) returns it.
type exhausted struct{ error }

func (exhausted) FailureClass() string                  { return pipeline.ClassExhausted }
func (exhausted) FailureAttempts() int                  { return 3 }
func (exhausted) FailureTimes() (first, last time.Time) { return time.Time{}, time.Time{} }

// TestShareDeliveryLimitDeadLetters: a record whose sink keeps failing
// transiently is released and redelivered until its last delivery, where
// it is dead-lettered with ClassDeliveryLimit; the others are accepted.
func TestShareDeliveryLimitDeadLetters(t *testing.T) {
	const topic, n, limit = "limit", 50, 3
	kc := shareCluster(t, topic, 2)
	kc.ProduceN(t, topic, n, kafkatest.KeyedValue(5))
	dlq := &memDLQ{}
	l := newShareLedger()
	var mu sync.Mutex
	var deliveries []int32
	p := sharePipeline(t, topic, dlq, func(ctx context.Context, r *pipeline.Record) error {
		if r.Partition == 0 && r.Offset == 7 {
			mu.Lock()
			deliveries = append(deliveries, r.Deliveries)
			mu.Unlock()
			return exhausted{errors.New("downstream says no")}
		}
		l.add("m", r.Topic, r.Partition, r.Offset)
		return nil
	})
	_, stop := runConsumer(t, shareOpts(kc, "limit", p, consumer.ShareDeliveryLimit(limit))...)
	kafkatest.Eventually(t, 30*time.Second, func() bool { return len(dlq.all()) > 0 }, "no dead letter")
	kafkatest.Eventually(t, 30*time.Second, func() bool { return l.distinct() == n-1 }, "handled %v of %d",
		kafkatest.Lazy(func() any { return l.distinct() }), n-1)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	dls := dlq.all()
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	dl := dls[0]
	if dl.Record.Partition != 0 || dl.Record.Offset != 7 || dl.Class != pipeline.ClassDeliveryLimit || dl.Record.Deliveries != limit {
		t.Fatalf("dead letter %s class %q deliveries %d, want 0@7 %q %d", dl.Record, dl.Class, dl.Record.Deliveries, pipeline.ClassDeliveryLimit, limit)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []int32{1, 2, 3}; fmt.Sprint(deliveries) != fmt.Sprint(want) {
		t.Fatalf("the failing record was delivered %v, want %v", deliveries, want)
	}
}

// TestSharePermanentFailureRejectedOnce: a decode-like permanent failure is
// dead-lettered at its first delivery, not redelivered.
func TestSharePermanentFailureRejectedOnce(t *testing.T) {
	const topic, n = "perm", 20
	kc := shareCluster(t, topic, 1)
	kc.ProduceN(t, topic, n, kafkatest.KeyedValue(5))
	dlq := &memDLQ{}
	l := newShareLedger()
	p := sharePipeline(t, topic, dlq, func(ctx context.Context, r *pipeline.Record) error {
		if r.Offset == 3 {
			panic("bad record") // ClassPanic: permanent
		}
		l.add("m", r.Topic, r.Partition, r.Offset)
		return nil
	})
	_, stop := runConsumer(t, shareOpts(kc, "perm", p)...)
	kafkatest.Eventually(t, 30*time.Second, func() bool { return l.distinct() == n-1 && len(dlq.all()) == 1 }, "not all handled")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	dls := dlq.all()
	if len(dls) != 1 || dls[0].Class != pipeline.ClassPanic || dls[0].Record.Deliveries != 1 {
		t.Fatalf("dead letters %v, want one of class panic at delivery 1", dls)
	}
}

// TestShareShutdownReleasesUnfinished: a record still being handled when
// the member shuts down is released when the drain timeout passes, and
// another member gets it (delivery 2).
func TestShareShutdownReleasesUnfinished(t *testing.T) {
	const topic = "release"
	kc := shareCluster(t, topic, 1)
	kc.ProduceN(t, topic, 10, kafkatest.KeyedValue(5))
	started := make(chan struct{})
	var once sync.Once
	l1 := newShareLedger()
	p1 := sharePipeline(t, topic, &memDLQ{}, func(ctx context.Context, r *pipeline.Record) error {
		if r.Offset == 5 {
			once.Do(func() { close(started) })
			<-ctx.Done() // a long call that gives up only when cancelled
			return ctx.Err()
		}
		l1.add("a", r.Topic, r.Partition, r.Offset)
		return nil
	})
	_, stop1 := runConsumer(t, shareOpts(kc, "release", p1, consumer.DrainTimeout(300*time.Millisecond))...)
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the slow record never arrived")
	}
	if err := stop1(); err != nil {
		t.Fatal(err)
	}

	got := make(chan int32, 10)
	p2 := sharePipeline(t, topic, &memDLQ{}, func(ctx context.Context, r *pipeline.Record) error {
		if r.Offset == 5 {
			got <- r.Deliveries
		}
		return nil
	})
	_, stop2 := runConsumer(t, shareOpts(kc, "release", p2)...)
	select {
	case d := <-got:
		if d != 2 {
			t.Fatalf("the released record came back at delivery %d, want 2", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the released record never reached the second member")
	}
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
}

// TestShareRenewsLongRecords: a record handled for longer than the record
// lock (2s here) is renewed and not handed to another member meanwhile.
// franz-go sends acknowledgements, renewals included, within 1s.
func TestShareRenewsLongRecords(t *testing.T) {
	const topic = "renew"
	kc := kafkatest.New(t, kafkatest.Topic(topic, 1), kafkatest.Kfake(kfake.BrokerConfigs(map[string]string{
		"group.share.record.lock.duration.ms": "2000",
		"share.record.lock.sweep.interval.ms": "50",
	})))
	kc.ProduceN(t, topic, 1, kafkatest.KeyedValue(1))
	var mu sync.Mutex
	calls := 0
	finished := make(chan struct{})
	h := func(name string) pipeline.Handler {
		return sharePipeline(t, topic, &memDLQ{}, func(ctx context.Context, r *pipeline.Record) error {
			mu.Lock()
			calls++
			first := calls == 1
			mu.Unlock()
			if first {
				select { // the work: two and a half lock durations
				case <-time.After(5 * time.Second):
				case <-ctx.Done():
					return ctx.Err()
				}
				close(finished)
			}
			return nil
		})
	}
	_, stop1 := runConsumer(t, shareOpts(kc, "renew", h("a"), consumer.ShareRenewEvery(300*time.Millisecond))...)
	_, stop2 := runConsumer(t, shareOpts(kc, "renew", h("b"), consumer.ShareRenewEvery(300*time.Millisecond))...)
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		t.Fatal("the long record never finished")
	}
	for _, stop := range []func() error{stop1, stop2} {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Fatalf("the long record was handled %d times, want once (its lock was renewed)", calls)
	}
}

// shareChildEnv makes the test binary run as a share group member that
// appends "partition offset" for every record it handles to a file, until
// killed. The check runs in init, before TestMain, so that it needs no
// change to TestMain.
const shareChildEnv = "SLUICE_SHARE_CHILD"

func init() {
	if os.Getenv(shareChildEnv) != "" {
		os.Exit(runShareChild())
	}
}

func runShareChild() int {
	out, err := os.OpenFile(os.Getenv("SLUICE_CHILD_OUT"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var mu sync.Mutex
	p := pipeline.New(pipeline.Logger(quietLogger()))
	pipeline.Sink(pipeline.Source(p, os.Getenv("SLUICE_CHILD_TOPIC"), pipeline.Bytes()), "work",
		func(ctx context.Context, m pipeline.Message[[]byte]) error {
			time.Sleep(time.Millisecond) // the work
			mu.Lock()
			defer mu.Unlock()
			_, err := fmt.Fprintf(out, "%d %d\n", m.Partition(), m.Offset())
			return err
		})
	c, err := consumer.New(
		consumer.Connection(sluice.Connection{Brokers: []string{os.Getenv("SLUICE_CHILD_BROKERS")}}),
		consumer.ShareGroup(os.Getenv("SLUICE_CHILD_GROUP")),
		consumer.Handle(p),
		consumer.ShareMaxRecords(20),
		consumer.Logger(quietLogger()),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := c.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestShareNothingLostUnderKillsAndChurn: two member processes are killed
// (SIGKILL, no acknowledgement sent) while in-process members join and
// leave; every record is still handled by someone.
func TestShareNothingLostUnderKillsAndChurn(t *testing.T) {
	const topic, n, group = "churn", 3000, "churn"
	kc := shareCluster(t, topic, 2)
	kc.ProduceN(t, topic, n, kafkatest.KeyedValue(40))
	l := newShareLedger()
	member := func(name string) func() error {
		p := sharePipeline(t, topic, &memDLQ{}, func(ctx context.Context, r *pipeline.Record) error {
			time.Sleep(2 * time.Millisecond) // the work
			l.add(name, r.Topic, r.Partition, r.Offset)
			return nil
		})
		_, stop := runConsumer(t, shareOpts(kc, group, p, consumer.ShareMaxRecords(20))...)
		return stop
	}
	dir := t.TempDir()
	kill := func(i int) {
		out := filepath.Join(dir, fmt.Sprintf("child%d", i))
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), shareChildEnv+"=1",
			"SLUICE_CHILD_BROKERS="+kc.Addrs[0], "SLUICE_CHILD_GROUP="+group, "SLUICE_CHILD_TOPIC="+topic, "SLUICE_CHILD_OUT="+out)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		kafkatest.Eventually(t, 30*time.Second, func() bool {
			select {
			case err := <-exited:
				t.Fatalf("child %d exited early: %v", i, err)
			default:
			}
			return len(readHandled(t, out)) > 0 && countHandled(readHandled(t, out)) >= 100
		}, "child %d never handled 100 records", i)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-exited
		for p, offs := range readHandled(t, out) {
			for _, o := range offs {
				l.add(fmt.Sprintf("child%d", i), topic, p, o)
			}
		}
	}

	kill(0)
	stopA := member("a")
	kill(1)
	stopB := member("b")
	if err := stopA(); err != nil { // a graceful leave mid-stream
		t.Fatal(err)
	}
	stopC := member("c")
	kafkatest.Eventually(t, 60*time.Second, func() bool { return l.distinct() == n }, "handled %v of %d",
		kafkatest.Lazy(func() any { return l.distinct() }), n)
	for _, stop := range []func() error{stopB, stopC} {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}
	if miss := l.missing(topic, kc.EndOffsets(t, topic)); len(miss) > 0 {
		t.Fatalf("lost %d records: %v", len(miss), miss[:min(10, len(miss))])
	}
	t.Logf("handled per member: %v", l.members())
}

func countHandled(m map[int32][]int64) int {
	n := 0
	for _, offs := range m {
		n += len(offs)
	}
	return n
}

// TestShareJoinedWhileIdle: a share member with nothing to read reports
// Joined (readiness) once the group answers its heartbeat.
func TestShareJoinedWhileIdle(t *testing.T) {
	const topic = "idle"
	kc := shareCluster(t, topic, 2)
	p := sharePipeline(t, topic, nil, func(context.Context, *pipeline.Record) error { return nil })
	c, stop := runConsumer(t, shareOpts(kc, "idle", p)...)
	kafkatest.Eventually(t, 30*time.Second, func() bool { return c.Status().Joined }, "never joined")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if c.Status().Joined {
		t.Fatal("still joined after Run returned")
	}
}

// TestShareStopReleasesAtOnce: Stop cancels a record in progress without
// waiting for the drain timeout, and the record is released to the next
// member.
func TestShareStopReleasesAtOnce(t *testing.T) {
	const topic = "stop"
	kc := shareCluster(t, topic, 1)
	kc.ProduceN(t, topic, 1, kafkatest.KeyedValue(1))
	started := make(chan struct{})
	var once sync.Once
	p1 := sharePipeline(t, topic, &memDLQ{}, func(ctx context.Context, r *pipeline.Record) error {
		once.Do(func() { close(started) })
		<-ctx.Done()
		return ctx.Err()
	})
	c1, err := consumer.New(shareOpts(kc, "stop", p1, consumer.DrainTimeout(time.Hour), consumer.RebalanceTimeout(2*time.Hour))...)
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- c1.Run(context.Background()) }()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the record never arrived")
	}
	c1.Stop() // with a drain timeout of an hour, only Stop can end this in time
	select {
	case err := <-ran:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return 30s after Stop")
	}
	got := make(chan int32, 1)
	p2 := sharePipeline(t, topic, &memDLQ{}, func(ctx context.Context, r *pipeline.Record) error {
		got <- r.Deliveries
		return nil
	})
	_, stop2 := runConsumer(t, shareOpts(kc, "stop", p2)...)
	select {
	case d := <-got:
		if d != 2 {
			t.Fatalf("delivery %d, want 2", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stopped record never reached the next member")
	}
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
}

// TestShareDeadLettersFates: what ShareDeadLetters makes of each failure.
func TestShareDeadLettersFates(t *testing.T) {
	tests := []struct {
		name              string
		class             string
		deliveries, limit int32
		wantFate          pipeline.Fate
		wantWritten       bool
		wantClass         string
	}{
		{"classic group passes through", pipeline.ClassExhausted, 0, 0, pipeline.FateDone, true, pipeline.ClassExhausted},
		{"transient before the limit is released", pipeline.ClassExhausted, 1, 5, pipeline.FateReleased, false, ""},
		{"unclassified before the limit is released", pipeline.ClassError, 4, 5, pipeline.FateReleased, false, ""},
		{"deadline before the limit is released", pipeline.ClassDeadline, 2, 5, pipeline.FateReleased, false, ""},
		{"transient on the last delivery", pipeline.ClassBudget, 5, 5, pipeline.FateRejected, true, pipeline.ClassDeliveryLimit},
		{"permanent at once", pipeline.ClassPermanent, 1, 5, pipeline.FateRejected, true, pipeline.ClassPermanent},
		{"decode at once", pipeline.ClassDecode, 1, 5, pipeline.FateRejected, true, pipeline.ClassDecode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dlq := &memDLQ{}
			r := &pipeline.Record{Topic: "t", Deliveries: tt.deliveries, DeliveryLimit: tt.limit}
			err := consumer.ShareDeadLetters(dlq).DeadLetter(context.Background(), pipeline.DeadLetter{Record: r, Class: tt.class})
			fate := r.Fate()
			if errors.Is(err, pipeline.ErrReleased) {
				fate = pipeline.FateReleased // what the pipeline makes of it
			} else if err != nil {
				t.Fatal(err)
			}
			dls := dlq.all()
			if fate != tt.wantFate || (len(dls) == 1) != tt.wantWritten || (tt.wantWritten && dls[0].Class != tt.wantClass) {
				t.Fatalf("fate %d, dead letters %v; want fate %d, written %v with class %q", fate, dls, tt.wantFate, tt.wantWritten, tt.wantClass)
			}
		})
	}
	// The strongest fate of several holders wins: a released branch is
	// not lost to a rejected or successful one.
	r := &pipeline.Record{}
	r.SetFate(pipeline.FateReleased)
	r.SetFate(pipeline.FateRejected)
	if r.Fate() != pipeline.FateReleased {
		t.Fatalf("fate %d after release then reject, want released", r.Fate())
	}
}
