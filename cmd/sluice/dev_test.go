package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/pipeline"
)

// devBroker is `sluice dev broker` running as a child process.
type devBroker struct {
	cmd    *exec.Cmd
	addr   string
	rest   chan string // stdout after the first line
	exited chan error

	once    sync.Once
	out     string
	exitErr error
}

// startDevBroker runs `sluice dev broker args...` in a child process and
// waits for it to say where it listens.
func startDevBroker(t *testing.T, args ...string) *devBroker {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"--", "dev", "broker"}, args...)...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &devBroker{cmd: cmd, rest: make(chan string, 1), exited: make(chan error, 1)}
	lines := bufio.NewScanner(stdout)
	first := make(chan string, 1)
	go func() {
		var rest strings.Builder
		for i := 0; lines.Scan(); i++ {
			if i == 0 {
				first <- lines.Text()
				continue
			}
			rest.WriteString(lines.Text() + "\n")
		}
		close(first)
		b.rest <- rest.String()
		b.exited <- cmd.Wait()
	}()
	t.Cleanup(func() { b.signal(t, syscall.SIGKILL) })
	select {
	case line, ok := <-first:
		if !ok {
			t.Fatalf("sluice dev broker exited before listening: %v", <-b.exited)
		}
		const prefix = "sluice dev broker listening on "
		if !strings.HasPrefix(line, prefix) {
			t.Fatalf("first line %q, want %q...", line, prefix)
		}
		b.addr = strings.TrimPrefix(line, prefix)
	case <-time.After(30 * time.Second):
		t.Fatal("sluice dev broker did not say where it listens")
	}
	return b
}

// signal sends sig and returns what the broker printed after its first line
// and its exit error.
func (b *devBroker) signal(t *testing.T, sig syscall.Signal) (string, error) {
	t.Helper()
	_ = b.cmd.Process.Signal(sig)
	b.once.Do(func() {
		select {
		case b.out = <-b.rest:
			b.exitErr = <-b.exited
		case <-time.After(30 * time.Second):
			t.Fatalf("sluice dev broker ignored %v", sig)
		}
	})
	return b.out, b.exitErr
}

// consumeAll consumes topic with the Sluice consumer until n records were
// handled, and returns "key=value" for each in handling order per partition.
func consumeAll(t *testing.T, addr, topic string, n int) []string {
	t.Helper()
	var (
		mu   sync.Mutex
		got  []string
		done = make(chan struct{})
	)
	h := handlerFunc(func(r *pipeline.Record) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, fmt.Sprintf("%s=%s", r.Key, r.Value))
		if len(got) == n {
			close(done)
		}
	})
	c, err := consumer.New(consumer.Brokers(addr), consumer.Group("interop-"+topic), consumer.Topics(topic),
		consumer.Handle(h), consumer.Logger(quietLog()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Errorf("consumed %d of %d records", len(got), n)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return got
}

// handlerFunc handles records in order, one partition at a time.
type handlerFunc func(*pipeline.Record)

func (f handlerFunc) OpenPartition(context.Context, pipeline.TopicPartition) (pipeline.Partition, error) {
	return f, nil
}

func (f handlerFunc) Handle(_ context.Context, recs []*pipeline.Record) error {
	for _, r := range recs {
		f(r)
		r.Settle()
	}
	return nil
}

func (f handlerFunc) Close() {}

func TestDevBrokerServesAndStopsOnSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			b := startDevBroker(t, "--port", "0", "--topics", "orders:3")
			cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "orders", Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
				t.Fatalf("produce to the dev broker: %v", err)
			}
			if got := consumeAll(t, b.addr, "orders", 1); len(got) != 1 || got[0] != "k=v" {
				t.Fatalf("consumed %v", got)
			}
			out, err := b.signal(t, sig)
			if err != nil {
				t.Fatalf("exit after %v: %v", sig, err)
			}
			if !strings.Contains(out, "stopping") {
				t.Fatalf("after %v printed %q", sig, out)
			}
		})
	}
}

func TestDevBrokerDataDirSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	b := startDevBroker(t, "--port", "0", "--topics", "kept:1", "--data-dir", dir)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "kept", Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	if _, err := b.signal(t, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	b = startDevBroker(t, "--port", "0", "--topics", "kept:1,added:2", "--data-dir", dir)
	got := consumeAll(t, b.addr, "kept", 5)
	if want := "k0=v k1=v k2=v k3=v k4=v"; strings.Join(got, " ") != want {
		t.Fatalf("after restart consumed %q, want %q", strings.Join(got, " "), want)
	}
}

func TestDevBrokerBadTopicsFlag(t *testing.T) {
	_, stderr, code := runMain(t, "dev", "broker", "--port", "0", "--topics", "orders:zero")
	if code == 0 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, `"orders:zero"`) {
		t.Fatalf("exit %d, stderr %q: want a non-zero exit and one line naming the bad topic", code, stderr)
	}
}

// TestKcatInterop produces with kcat, a librdkafka client, into `sluice dev
// broker` and consumes with the Sluice consumer.
func TestKcatInterop(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat is not installed (CI installs Debian's kcat)")
	}
	b := startDevBroker(t, "--port", "0", "--topics", "interop:2")
	var in strings.Builder
	var want []string
	for i := range 50 {
		fmt.Fprintf(&in, "key%d:value%d\n", i%7, i)
		want = append(want, fmt.Sprintf("key%d=value%d", i%7, i))
	}
	cmd := exec.Command(kcat, "-P", "-b", b.addr, "-t", "interop", "-K", ":")
	cmd.Stdin = strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}
	got := consumeAll(t, b.addr, "interop", len(want))
	// kcat partitions by key, so order holds per key: compare per key.
	if perKey(got) != perKey(want) {
		t.Fatalf("consumed per key:\n%s\nwant:\n%s", perKey(got), perKey(want))
	}
}

func perKey(kvs []string) string {
	m := map[string][]string{}
	var keys []string
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		if _, ok := m[k]; !ok {
			keys = append(keys, k)
		}
		m[k] = append(m[k], v)
	}
	var b strings.Builder
	for i := range 7 {
		k := fmt.Sprintf("key%d", i)
		fmt.Fprintf(&b, "%s: %s\n", k, strings.Join(m[k], ","))
	}
	return b.String()
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
