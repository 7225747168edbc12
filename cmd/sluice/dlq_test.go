package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/dlq"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

// runCLI runs the sluice command in-process and returns its output.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// exitCode is the exit status main gives err.
func exitCode(err error) int {
	var ec interface{ ExitCode() int }
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ec):
		return ec.ExitCode()
	}
	return exitError
}

// mustCLI runs the command and fails t if it fails.
func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("sluice %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// runMain runs the real main, exit code and all, in a child process of
// the test binary (see TestMain).
func runMain(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"--"}, args...)...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

func TestDLQHelp(t *testing.T) {
	for _, path := range [][]string{{"dlq"}, {"dlq", "list"}, {"dlq", "stats"}, {"dlq", "inspect"}, {"dlq", "replay"}} {
		t.Run(strings.Join(path, " "), func(t *testing.T) {
			out := mustCLI(t, append(path, "--help")...)
			if !strings.Contains(out, "Usage:") || !strings.Contains(out, "--brokers") || strings.Contains(out, "Slice") {
				t.Fatalf("help:\n%s", out)
			}
		})
	}
}

func TestDLQBadInvocationsExitNonZeroWithOneLine(t *testing.T) {
	tests := []struct {
		name string
		give []string
		want string
	}{
		{"unknown flag", []string{"dlq", "replay", "t", "--bogus"}, "unknown flag: --bogus"},
		{"missing topic", []string{"dlq", "inspect"}, "missing TOPIC"},
		{"extra argument", []string{"dlq", "stats", "a", "b"}, "want one TOPIC"},
		{"bad regexp", []string{"dlq", "inspect", "t", "--error", "/(/"}, `bad --error filter "/(/"`},
		{"bad offset range", []string{"dlq", "replay", "t", "--offset-range", "9-1"}, "bad --offset-range filter"},
		{"bad class", []string{"dlq", "stats", "t", "--class", "decoded"}, `bad --class filter "decoded"`},
		{"bad since", []string{"dlq", "replay", "t", "--since", "yesterday"}, "bad --since filter"},
		{"bad flag value", []string{"dlq", "replay", "t", "--rate", "fast"}, `invalid argument "fast"`},
		{"negative rate", []string{"dlq", "replay", "t", "--rate", "-1"}, "--rate -1"},
		{"unreachable", []string{"dlq", "list", "--brokers", "127.0.0.1:1", "--timeout", "2s"}, "cannot reach brokers 127.0.0.1:1"},
		{"sasl without user", []string{"dlq", "list", "--sasl-mechanism", "plain", "--sasl-password", "hunter2"}, "needs --sasl-user"},
		{"bad mechanism", []string{"dlq", "list", "--sasl-mechanism", "kerberos", "--sasl-user", "u", "--sasl-password", "hunter2"}, `--sasl-mechanism "kerberos"`},
		{"half a client cert", []string{"dlq", "list", "--tls-cert", "c.pem"}, "--tls-cert and --tls-key go together"},
		{"empty topic", []string{"dlq", "stats", ""}, "TOPIC: empty topic name"},
		{"bad topic name", []string{"dlq", "inspect", "a b"}, `TOPIC: topic name "a b" has ' '`},
		{"NaN rate", []string{"dlq", "replay", "t", "--rate", "NaN"}, "--rate NaN: want records per second, 0 or more"},
		{"infinite rate", []string{"dlq", "replay", "t", "--rate", "+Inf"}, "--rate +Inf: want records per second"},
		{"replay onto itself", []string{"dlq", "replay", "t.dlq", "--to", "t.dlq"}, "--to t.dlq: must differ from the topic being replayed"},
		{"zero produce timeout", []string{"dlq", "replay", "t", "--produce-timeout", "0s"}, "--produce-timeout 0s: must be positive"},
		{"negative max value bytes", []string{"dlq", "inspect", "t", "--max-value-bytes", "-1"}, "--max-value-bytes -1: must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runMain(t, tt.give...)
			if code == 0 {
				t.Fatalf("exit 0\nstdout:\n%s", out)
			}
			if out != "" {
				t.Errorf("stdout not empty:\n%s", out)
			}
			if strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "sluice: ") || !strings.Contains(errOut, tt.want) {
				t.Errorf("stderr = %q, want one line with %q", errOut, tt.want)
			}
			if strings.Contains(out+errOut, "hunter2") {
				t.Errorf("password printed: %q", errOut)
			}
		})
	}
}

// publish writes n hand-made dead letters of orders (partitions 0 and 1):
// record i fails with class decode in sink "json" when i is even and
// permanent in sink "pg" when odd.
func publish(t *testing.T, c *kafkatest.Cluster, n int) {
	t.Helper()
	pub, err := dlq.New(dlq.Connection(sluice.Connection{Brokers: c.Addrs}), dlq.Group("billing"), dlq.AutoCreate(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i := range n {
		class, sink := pipeline.ClassDecode, "json"
		if i%2 == 1 {
			class, sink = pipeline.ClassPermanent, "pg"
		}
		rec := &pipeline.Record{
			Topic: "orders", Partition: int32(i % 2), Offset: int64(i), Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i),
			Timestamp: time.Now(), Headers: []pipeline.Header{{Key: "traceparent", Value: []byte("00-trace-" + fmt.Sprint(i))}},
		}
		now := time.Now()
		err := pub.DeadLetter(context.Background(), pipeline.DeadLetter{
			Record: rec, Stage: sink, Err: fmt.Errorf("record %d: %s failure", i, class), Class: class, Attempts: 1 + i%3,
			FirstFailure: now, LastFailure: now,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func total(m map[int32]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func TestDLQStatsInspectReplay(t *testing.T) {
	c := kafkatest.New(t, kafkatest.Topic("orders", 2))
	publish(t, c, 10)
	b := "--brokers=" + c.Addrs[0]

	out := mustCLI(t, "dlq", "list", b)
	if !strings.Contains(out, "orders.dlq") || !strings.Contains(out, " 2 ") || !strings.HasSuffix(strings.TrimSpace(out), "10") {
		t.Fatalf("list:\n%s", out)
	}

	out = mustCLI(t, "dlq", "stats", "orders.dlq", b)
	for _, want := range []string{"orders.dlq: 10 dead letters", "decode     5", "permanent  5", "json  5", "orders/0  5", "orders/1  5", "oldest failure: 20"} {
		if !strings.Contains(out, want) {
			t.Errorf("stats lacks %q:\n%s", want, out)
		}
	}
	var st struct {
		Total    int            `json:"total"`
		BySource map[string]int `json:"by_source_partition"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "dlq", "stats", "orders.dlq", b, "--json", "--sink", "pg")), &st); err != nil || st.Total != 5 || st.BySource["orders/1"] != 5 {
		t.Fatalf("stats --json --sink pg: %+v, %v", st, err)
	}

	out = mustCLI(t, "dlq", "inspect", "orders.dlq", b, "--limit", "3")
	if strings.Count(out, "  source ") != 3 || !strings.Contains(out, "3 dead letters shown") || !strings.Contains(out, `header      traceparent="00-trace-`) {
		t.Fatalf("inspect --limit 3:\n%s", out)
	}
	out = mustCLI(t, "dlq", "inspect", "orders.dlq", b, "--json", "--class", "decode", "--error", "/record [0-9]+: decode/")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("inspect --json --class decode: %d lines:\n%s", len(lines), out)
	}
	for _, line := range lines {
		var l struct {
			Key        string            `json:"key"`
			Headers    map[string]string `json:"headers"`
			Provenance struct {
				Topic string `json:"topic"`
				Class string `json:"class"`
				Group string `json:"group"`
				Sink  string `json:"sink"`
			} `json:"provenance"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatal(err)
		}
		if l.Provenance.Class != "decode" || l.Provenance.Topic != "orders" || l.Provenance.Group != "billing" || l.Provenance.Sink != "json" || !strings.HasPrefix(l.Headers["traceparent"], "00-trace-") {
			t.Fatalf("inspect --json line %s", line)
		}
	}

	// --dry-run changes nothing.
	out, errOut, err := runCLI(t, "dlq", "replay", "orders.dlq", b, "--class", "decode", "--dry-run")
	if err != nil || !strings.Contains(out, "would replay 5") || !strings.Contains(out, "nothing was produced or committed") ||
		!strings.Contains(errOut, "would replay 5") {
		t.Fatalf("dry run: %v\n%s%s", err, out, errOut)
	}
	if n := total(c.EndOffsets(t, "orders")); n != 0 {
		t.Fatalf("dry run produced %d records", n)
	}

	// replay republishes exactly the filtered records, once.
	out, errOut, err = runCLI(t, "dlq", "replay", "orders.dlq", b, "--class", "decode", "--rate", "1000")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "matched 5, replayed 5, refused 0") || !strings.Contains(out, "to orders: 5") ||
		!regexp.MustCompile(`progress in group sluice-dlq-replay\.orders\.dlq\.\w+: continues at orders.dlq/0@5, orders.dlq/1@5\n`).MatchString(out) {
		t.Fatalf("replay:\n%s", out)
	}
	group := regexp.MustCompile(`group (\S+):`).FindStringSubmatch(out)[1]
	if got := c.Committed(t, group, "orders.dlq"); got[0] != 5 || got[1] != 5 {
		t.Fatalf("the summary says orders.dlq/0@5, orders.dlq/1@5; the group committed %v", got)
	}
	if !strings.Contains(errOut, "progress: 10/10 100.0%  replayed 5  refused 0  skipped 5  ETA 0s") {
		t.Fatalf("replay progress:\n%s", errOut)
	}
	assertReplayed(t, c, 5)

	// A second run continues where the first stopped: nothing new.
	out = mustCLI(t, "dlq", "replay", "orders.dlq", b, "--class", "decode", "--rate", "1000")
	if !strings.Contains(out, "examined 0 of 0, matched 0, replayed 0") {
		t.Fatalf("second replay:\n%s", out)
	}
	assertReplayed(t, c, 5)
}

// assertReplayed checks that orders holds n replayed decode records, each
// in its original partition with key, value and trace header intact and
// only the replay count left of the provenance.
func assertReplayed(t *testing.T, c *kafkatest.Cluster, n int) {
	t.Helper()
	if got := total(c.EndOffsets(t, "orders")); got != int64(n) {
		t.Fatalf("orders holds %d records, want %d", got, n)
	}
	cl := c.Client(t, kgo.ConsumeTopics("orders"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for seen := 0; seen < n; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read orders: %v", err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			seen++
			var i int
			fmt.Sscanf(string(r.Key), "k%d", &i)
			hs := r.Headers
			if i%2 != 0 || string(r.Value) != fmt.Sprint("v", i) || r.Partition != int32(i%2) ||
				len(hs) != 2 || string(hs[0].Value) != fmt.Sprint("00-trace-", i) || hs[1].Key != dlq.HeaderReplayCount || string(hs[1].Value) != "1" {
				t.Errorf("replayed record %s=%s in partition %d with headers %v", r.Key, r.Value, r.Partition, hs)
			}
		})
	}
}

func TestDLQReplayGuardStopsLoop(t *testing.T) {
	c := kafkatest.New(t, kafkatest.Topic("orders", 2))
	publish(t, c, 2)
	b := "--brokers=" + c.Addrs[0]
	pub, err := dlq.New(dlq.Connection(sluice.Connection{Brokers: c.Addrs}))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	// The sink keeps failing: every replayed record is dead-lettered
	// again, carrying its replay count.
	var outs []string
	seen := map[int32]int64{}
	for range 5 {
		out, _, err := runCLI(t, "dlq", "replay", "orders.dlq", b, "--max-replays", "2")
		outs = append(outs, out)
		if strings.Contains(out, "replayed 0") {
			if exitCode(err) != exitRefused || !strings.Contains(err.Error(), "2 dead letters refused") {
				t.Fatalf("refusal: %v (exit %d), want exit 3", err, exitCode(err))
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		cl := c.Client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"orders": {0: kgo.NewOffset().At(seen[0]), 1: kgo.NewOffset().At(seen[1])}}))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for got := 0; got < 2; {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				got++
				seen[r.Partition] = r.Offset + 1
				rec := &pipeline.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value}
				for _, h := range r.Headers {
					rec.Headers = append(rec.Headers, pipeline.Header{Key: h.Key, Value: h.Value})
				}
				if err := pub.DeadLetter(ctx, pipeline.DeadLetter{Record: rec, Stage: "pg", Err: errors.New("still failing"), Class: pipeline.ClassPermanent}); err != nil {
					t.Error(err)
				}
			})
			if ctx.Err() != nil {
				t.Fatal("replayed records not found")
			}
		}
		cancel()
		cl.Close()
	}
	if len(outs) != 3 || !strings.Contains(outs[0], "replayed 2, refused 0") || !strings.Contains(outs[1], "replayed 2, refused 0") ||
		!strings.Contains(outs[2], "replayed 0, refused 2 (replayed 2 times or more)") || !strings.Contains(outs[2], "refused records wait in orders.dlq for the same command with --force") {
		t.Fatalf("rounds:\n%s", strings.Join(outs, "\n"))
	}
	if n := total(c.EndOffsets(t, "orders")); n != 4 {
		t.Fatalf("orders holds %d records, want 4", n)
	}
	// The refused records stay reachable: the same command with --force
	// replays exactly them, once.
	out := mustCLI(t, "dlq", "replay", "orders.dlq", b, "--max-replays", "2", "--force")
	if !strings.Contains(out, "examined 2 of 2, matched 2, replayed 2") || !strings.Contains(out, "forced: 2 of them had been refused by an earlier run") {
		t.Fatalf("forced replay:\n%s", out)
	}
	out = mustCLI(t, "dlq", "replay", "orders.dlq", b, "--max-replays", "2", "--force")
	if !strings.Contains(out, "examined 0 of 0") || total(c.EndOffsets(t, "orders")) != 6 {
		t.Fatalf("second forced replay:\n%s", out)
	}
}

func TestDLQUserErrors(t *testing.T) {
	c := kafkatest.New(t, kafkatest.Topic("orders", 1), kafkatest.Topic("bare", 1))
	c.Produce(t, &kgo.Record{Topic: "bare", Value: []byte("no provenance")})
	b := "--brokers=" + c.Addrs[0]
	tests := []struct {
		name string
		give []string
		want string
	}{
		{"unknown topic", []string{"dlq", "stats", "nope.dlq", b}, `topic "nope.dlq" does not exist`},
		{"unknown target", []string{"dlq", "replay", "bare", b, "--to", "nope"}, `replay target: topic "nope" does not exist`},
		{"no provenance, no --to", []string{"dlq", "replay", "bare", b}, "no replay target for bare/0@0 (no provenance headers): pass --to TOPIC"},
		{"replay onto itself", []string{"dlq", "replay", "bare", b, "--to", "bare"}, "must differ from the topic being replayed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runCLI(t, tt.give...)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line with %q", err, tt.want)
			}
		})
	}
	out := mustCLI(t, "dlq", "replay", "bare", b, "--to", "orders")
	if !strings.Contains(out, "replayed 1") {
		t.Fatalf("replay --to:\n%s", out)
	}
	out = mustCLI(t, "dlq", "inspect", "bare", b)
	if !strings.Contains(out, "provenance  unreadable: no provenance headers") {
		t.Fatalf("inspect of a bare record:\n%s", out)
	}
}

func TestDLQConnectionFromEnvironmentAndSASL(t *testing.T) {
	c := kafkatest.New(t, kafkatest.Topic("orders.dlq", 1),
		kafkatest.Kfake(kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "admin", "s3cret-pw")))
	t.Setenv("SLUICE_BROKERS", c.Addrs[0])
	t.Setenv("SLUICE_SASL_MECHANISM", "scram-sha-256")
	t.Setenv("SLUICE_SASL_USER", "admin")
	t.Setenv("SLUICE_SASL_PASSWORD", "s3cret-pw")
	t.Setenv("SLUICE_TIMEOUT", "3s")
	if out := mustCLI(t, "dlq", "list"); !strings.Contains(out, "orders.dlq") {
		t.Fatalf("list:\n%s", out)
	}
	// A flag beats its environment variable; the password is never shown.
	out, errOut, err := runCLI(t, "dlq", "list", "--sasl-password", "wrong-pw")
	if err == nil {
		t.Fatalf("wrong password accepted:\n%s", out)
	}
	if all := out + errOut + err.Error(); strings.Contains(all, "pw") {
		t.Fatalf("password printed: %s", all)
	}
	help := mustCLI(t, "dlq", "list", "--help")
	if strings.Contains(help, "s3cret") || strings.Contains(help, c.Addrs[0]) {
		t.Fatalf("help shows environment values:\n%s", help)
	}
}

func TestProgressPlainLines(t *testing.T) {
	now := time.Unix(0, 0)
	var buf bytes.Buffer
	p := newProgress(&buf, func() time.Time { return now }, false)
	p.update(dlq.ReplayStats{Total: 100, Examined: 10, Matched: 10, Replayed: 10, Elapsed: time.Second})
	now = now.Add(time.Second)
	p.update(dlq.ReplayStats{Total: 100, Examined: 20, Matched: 20, Replayed: 20, Elapsed: 2 * time.Second}) // too soon
	now = now.Add(lineEvery)
	p.update(dlq.ReplayStats{Total: 100, Examined: 50, Matched: 40, Replayed: 39, Refused: 1, Elapsed: 10 * time.Second})
	p.done(dlq.ReplayStats{Total: 100, Examined: 100, Matched: 80, Replayed: 79, Refused: 1, Elapsed: 20 * time.Second})
	want := "progress: 10/100  10.0%  replayed 10  refused 0  skipped 0  ETA 9s\n" +
		"progress: 50/100  50.0%  replayed 39  refused 1  skipped 10  ETA 10s\n" +
		"progress: 100/100 100.0%  replayed 79  refused 1  skipped 20  ETA 0s\n"
	if buf.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestProgressBar(t *testing.T) {
	now := time.Unix(0, 0)
	var buf bytes.Buffer
	p := newProgress(&buf, func() time.Time { return now }, false)
	p.tty, p.every = true, barEvery // as on a terminal
	p.update(dlq.ReplayStats{Total: 4, Examined: 1, Matched: 1, Replayed: 1, Elapsed: time.Second})
	p.done(dlq.ReplayStats{Total: 4, Examined: 4, Matched: 4, Replayed: 4, Elapsed: 4 * time.Second})
	want := "\r[=======                       ] 1/4  25.0%  replayed 1  refused 0  skipped 0  ETA 3s\x1b[K" +
		"\r[==============================] 4/4 100.0%  replayed 4  refused 0  skipped 0  ETA 0s\x1b[K\n"
	if buf.String() != want {
		t.Fatalf("got  %q\nwant %q", buf.String(), want)
	}
	if isTerminal(&buf) {
		t.Fatal("a buffer is not a terminal")
	}
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key to
// dir and returns the server's TLS config and the certificate's path.
func selfSigned(t *testing.T, dir string) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sluice test broker"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(path, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, path
}

func TestDLQTLS(t *testing.T) {
	dir := t.TempDir()
	srv, ca := selfSigned(t, dir)
	c := kafkatest.New(t, kafkatest.Topic("orders.dlq", 1), kafkatest.Kfake(kfake.TLS(srv)))
	b := "--brokers=" + c.Addrs[0]
	tests := []struct {
		name    string
		give    []string
		wantErr string
	}{
		{"trusted CA", []string{"--tls-ca", ca}, ""},
		{"skip verify", []string{"--tls", "--tls-insecure-skip-verify"}, ""},
		{"system CAs", []string{"--tls", "--timeout", "3s"}, "certificate"},
		{"missing CA file", []string{"--tls-ca", filepath.Join(dir, "nope.pem")}, "--tls-ca: open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runCLI(t, append([]string{"dlq", "list", b}, tt.give...)...)
			switch {
			case tt.wantErr == "" && (err != nil || !strings.Contains(out, "orders.dlq")):
				t.Fatalf("list: %v\n%s", err, out)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestProgressFinalLineOnce is the regression test for the last progress
// line printed twice: once by the last update, once by done.
func TestProgressFinalLineOnce(t *testing.T) {
	now := time.Unix(0, 0)
	var buf bytes.Buffer
	p := newProgress(&buf, func() time.Time { return now }, false)
	final := dlq.ReplayStats{Total: 3, Examined: 3, Matched: 3, Replayed: 3, Elapsed: time.Second}
	p.update(final)
	p.done(final)
	if n := strings.Count(buf.String(), "progress:"); n != 1 {
		t.Fatalf("%d progress lines:\n%s", n, buf.String())
	}
}
