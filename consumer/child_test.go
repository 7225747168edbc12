package consumer_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

// childEnv makes the test binary run as a consumer process that appends
// "partition offset" for every record it handles to a file, until killed.
const childEnv = "SLUICE_CONSUMER_CHILD"

func runChild() int {
	out, err := os.OpenFile(os.Getenv("SLUICE_CHILD_OUT"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var mu sync.Mutex
	h := &workHandler{workers: 4, fn: func(ctx context.Context, r *pipeline.Record) error {
		time.Sleep(time.Millisecond) // the workload
		mu.Lock()
		defer mu.Unlock()
		_, err := fmt.Fprintf(out, "%d %d\n", r.Partition, r.Offset)
		return err
	}}
	c, err := consumer.New(
		consumer.Connection(sluice.Connection{Brokers: []string{os.Getenv("SLUICE_CHILD_BROKERS")}}),
		consumer.Group(os.Getenv("SLUICE_CHILD_GROUP")),
		consumer.Handle(listed(h, os.Getenv("SLUICE_CHILD_TOPIC"))),
		consumer.CommitInterval(20*time.Millisecond),
		// After a kill the group waits this long before it reassigns.
		consumer.SessionTimeout(time.Second),
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

// readHandled parses a child's output file.
func readHandled(t *testing.T, path string) map[int32][]int64 {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[int32][]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			continue // a line cut by the kill
		}
		p, err1 := strconv.ParseInt(fields[0], 10, 32)
		o, err2 := strconv.ParseInt(fields[1], 10, 64)
		if err1 == nil && err2 == nil {
			out[int32(p)] = append(out[int32(p)], o)
		}
	}
	return out
}

// TestCrashReplaysFromLastCommit kills a consumer process with SIGKILL
// mid-stream, so no final commit happens: every committed offset must cover
// only handled records, and a restarted consumer must resume at exactly the
// committed watermark and handle everything that remains.
func TestCrashReplaysFromLastCommit(t *testing.T) {
	const topic = "crash"
	kc := kafkatest.New(t, kafkatest.Topic(topic, 3))
	kc.ProduceN(t, topic, 3000, kafkatest.KeyedValue(40))
	out := filepath.Join(t.TempDir(), "handled")

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1",
		"SLUICE_CHILD_BROKERS="+kc.Addrs[0], "SLUICE_CHILD_GROUP=crash", "SLUICE_CHILD_TOPIC="+topic, "SLUICE_CHILD_OUT="+out)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	kafkatest.Eventually(t, 30*time.Second, func() bool {
		select {
		case err := <-exited:
			t.Fatalf("the child consumer exited early: %v", err)
		default:
		}
		n := 0
		for _, offs := range readHandled(t, out) {
			n += len(offs)
		}
		return n >= 600 && len(kc.Committed(t, "crash", topic)) > 0
	}, "the child consumer never handled 600 records and committed")
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no drain, no final commit
		t.Fatal(err)
	}
	<-exited

	committed := kc.Committed(t, "crash", topic)
	first := readHandled(t, out)
	handled := map[int32]map[int64]bool{}
	for p, offs := range first {
		handled[p] = map[int64]bool{}
		for _, o := range offs {
			handled[p][o] = true
		}
	}
	for p, c := range committed {
		for o := int64(0); o < c; o++ {
			if !handled[p][o] {
				t.Fatalf("partition %d committed %d but offset %d was never handled", p, c, o)
			}
		}
	}

	l := newLedger()
	var mu sync.Mutex
	lowest := map[int32]int64{}
	h := &workHandler{workers: 4, fn: func(ctx context.Context, r *pipeline.Record) error {
		mu.Lock()
		if lo, ok := lowest[r.Partition]; !ok || r.Offset < lo {
			lowest[r.Partition] = r.Offset
		}
		mu.Unlock()
		l.add(r)
		return nil
	}}
	_, stop := runConsumer(t, baseOpts(kc, "crash", h, topic)...)
	ends := kc.WaitCommittedEnd(t, "crash", topic, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	dups := 0
	for p, end := range ends {
		if lowest[p] != committed[p] {
			t.Errorf("partition %d: restart began at %d, want the committed watermark %d", p, lowest[p], committed[p])
		}
		for o := int64(0); o < end; o++ {
			again := l.handled[pipeline.TopicPartition{Topic: topic, Partition: p}][o]
			if !handled[p][o] && again == 0 {
				t.Fatalf("partition %d offset %d lost", p, o)
			}
			if handled[p][o] && again > 0 {
				dups++
			}
		}
	}
	t.Logf("handled again after the crash: %d records (those finished after the last commit)", dups)
}
