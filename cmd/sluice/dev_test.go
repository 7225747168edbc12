package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/pipeline"
)

// devBroker is `sluice dev broker` running as a child process.
type devBroker struct {
	cmd    *exec.Cmd
	addr   string
	rest   chan string // stdout after the first line
	exited chan error
	seen   syncBuffer // stdout after the first line, so far

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
			b.seen.Write([]byte(lines.Text() + "\n"))
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

// lines returns what the broker printed after its first line, so far.
func (b *devBroker) lines() string { return b.seen.String() }

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
	c, err := consumer.New(consumer.Connection(sluice.Connection{Brokers: []string{addr}}), consumer.Group("interop-"+topic), consumer.Handle(listed{h, topic}), consumer.Logger(quietLog()))
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

// listed is a handler that reads one topic.
type listed struct {
	pipeline.Handler
	topic string
}

func (l listed) Topics() []string { return []string{l.topic} }

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
			if !strings.Contains(out, "created topic orders with 3 partitions\n") || !strings.Contains(out, "stopping") {
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

func TestDevBrokerBadFlags(t *testing.T) {
	for _, tt := range []struct {
		give []string
		want string
	}{
		{[]string{"--topics", "orders:zero"}, `--topics: "orders:zero": partition count must be a positive integer`},
		{[]string{"--topics", "orders:99999999"}, `"orders:99999999": 99999999 partitions is more than the development broker's limit of 10000 per topic`},
		{[]string{"--topics", "orders,orders"}, `--topics: "orders" is given twice`},
		{[]string{"--topics", "my topic:3"}, `topic name "my topic" has ' '`},
		{[]string{"--default-partitions", "-3"}, "--default-partitions -3: must be at least 1"},
		{[]string{"--default-partitions", "0"}, "--default-partitions 0: must be at least 1"},
		{[]string{"--max-message-bytes", "-1"}, "--max-message-bytes -1: must not be negative"},
		{[]string{"--sasl-user", "alice"}, "--sasl-user/--sasl-password need --sasl-mechanism"},
		{[]string{"--tls-cert", "c.pem"}, "--tls-cert and --tls-key go together"},
	} {
		t.Run(strings.Join(tt.give, " "), func(t *testing.T) {
			start := time.Now()
			out, stderr, code := runMain(t, append([]string{"dev", "broker", "--port", "0"}, tt.give...)...)
			if code != 1 || out != "" || stderr != "sluice: "+tt.want+"\n" && !strings.Contains(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
				t.Fatalf("exit %d, stdout %q, stderr %q: want exit 1 and one line with %q", code, out, stderr, tt.want)
			}
			// A child process of the test binary starts in well under a
			// second; the bound leaves room for a loaded machine.
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("took %v to refuse", d)
			}
		})
	}
}

// TestDevBrokerDataDirInUse: a second broker on a data directory in use is
// refused; two would corrupt it.
func TestDevBrokerDataDirInUse(t *testing.T) {
	dir := t.TempDir()
	b := startDevBroker(t, "--port", "0", "--data-dir", dir)
	_, stderr, code := runMain(t, "dev", "broker", "--port", "0", "--data-dir", dir)
	if code != 1 || !strings.Contains(stderr, "is in use by process") {
		t.Fatalf("second broker on %s: exit %d, stderr %q", dir, code, stderr)
	}
	b.signal(t, syscall.SIGTERM)
}

// TestDevBrokerSASLAndTLS: a user tries their client settings against
// `sluice dev broker --sasl-... --tls`: `sluice dlq list` with the same
// user and the printed certificate works, without them it fails.
func TestDevBrokerSASLAndTLS(t *testing.T) {
	b := startDevBroker(t, "--port", "0", "--topics", "orders.dlq:1",
		"--sasl-mechanism", "scram-sha-512", "--sasl-user", "alice", "--sasl-password", "s3cret", "--tls")
	var cert string
	waitFor(t, func() bool {
		if m := regexp.MustCompile(`--tls-ca (\S+)`).FindStringSubmatch(b.lines()); m != nil {
			cert = m[1]
		}
		return cert != ""
	}, "the certificate's file")
	conn := []string{"--brokers", b.addr, "--timeout", "3s", "--sasl-mechanism", "scram-sha-512", "--sasl-user", "alice"}
	t.Setenv("SLUICE_SASL_PASSWORD", "s3cret")
	if out := mustCLI(t, append([]string{"dlq", "list", "--tls-ca", cert}, conn...)...); !strings.Contains(out, "orders.dlq") {
		t.Fatalf("dlq list over SASL and TLS:\n%s", out)
	}
	if _, _, err := runCLI(t, append([]string{"dlq", "list"}, conn...)...); err == nil {
		t.Fatal("dlq list without TLS worked against a TLS broker")
	}
	out, _ := b.signal(t, syscall.SIGTERM)
	if !strings.Contains(out, "requires SASL SCRAM-SHA-512 as user alice") {
		t.Fatalf("broker printed %q", out)
	}
	if _, err := os.Stat(cert); !os.IsNotExist(err) {
		t.Fatalf("the temporary certificate %s is left behind: %v", cert, err)
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
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
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
