package devbroker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

func TestParseTopics(t *testing.T) {
	long := strings.Repeat("x", 250)
	for _, tt := range []struct {
		give    string
		want    []Topic
		wantErr string
	}{
		{give: "orders:3, orders.dlq:3", want: []Topic{{"orders", 3}, {"orders.dlq", 3}}},
		{give: "orders", want: []Topic{{"orders", 0}}}, // the broker's default
		{give: "", want: nil},
		{give: "orders:99999999", wantErr: `--topics: "orders:99999999": 99999999 partitions is more than the development broker's limit of 10000 per topic`},
		{give: "orders:0", wantErr: "partition count must be a positive integer"},
		{give: "orders:-3", wantErr: "partition count must be a positive integer"},
		{give: ":3", wantErr: "empty topic name"},
		{give: "or ders:1", wantErr: `has ' ': Kafka allows only ASCII letters`},
		{give: "..:1", wantErr: `topic name ".." is not allowed`},
		{give: long, wantErr: "longer than Kafka's 249"},
		{give: "orders:1,orders:2", wantErr: `--topics: "orders" is given twice`},
		{give: "a.b,a_b", wantErr: `"a.b" and "a_b" collide`},
	} {
		got, err := ParseTopics(tt.give)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ParseTopics(%.20q) = %v, %v; want error with %q", tt.give, got, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || fmt.Sprint(got) != fmt.Sprint(tt.want)):
			t.Errorf("ParseTopics(%q) = %v, %v; want %v", tt.give, got, err, tt.want)
		}
	}
}

func TestStartRejectsBadConfig(t *testing.T) {
	many := make([]Topic, 11)
	for i := range many {
		many[i] = Topic{Name: fmt.Sprint("t", i), Partitions: 1000}
	}
	for _, tt := range []struct {
		give Config
		want string
	}{
		{Config{DefaultPartitions: -3}, "--default-partitions -3: must be at least 1"},
		{Config{DefaultPartitions: MaxPartitions + 1}, "--default-partitions 10001: more than the development broker's limit"},
		{Config{MaxMessageBytes: -1}, "--max-message-bytes -1: must not be negative"},
		{Config{Port: 70000}, "--port 70000: not a TCP port"},
		{Config{Topics: many}, "--topics: 11000 partitions in all is more than the development broker's limit of 10000"},
		{Config{Topics: []Topic{{"bad name", 1}}}, `--topics: topic name "bad name" has ' '`},
		{Config{SASL: &SASL{Mechanism: "kerberos", User: "u", Password: "p"}}, `--sasl-mechanism "kerberos"`},
		{Config{SASL: &SASL{Mechanism: "plain"}}, "needs --sasl-user and --sasl-password"},
	} {
		start := time.Now()
		b, err := Start(tt.give)
		if err == nil {
			b.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) || time.Since(start) > time.Second {
			t.Errorf("Start(%+v) = %v after %v, want an error with %q at once", tt.give, err, time.Since(start), tt.want)
		}
	}
}

func TestTopicsWithoutCountGetDefaultPartitions(t *testing.T) {
	b, err := Start(Config{DefaultPartitions: 4, Topics: []Topic{{Name: "orders"}, {Name: "audit", Partitions: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got := fmt.Sprint(b.Created); got != "[{orders 4} {audit 2}]" {
		t.Fatalf("created %s", got)
	}
	if n := partitions(t, b, "orders"); n != 4 {
		t.Fatalf("orders has %d partitions, want 4", n)
	}
}

func partitions(t *testing.T, b *Broker, topic string) int {
	t.Helper()
	adm := admin(t, b.ClientOpts()...)
	ds, err := adm.ListTopics(ctxT(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	return len(ds[topic].Partitions)
}

func admin(t *testing.T, opts ...kgo.Opt) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestClientsCannotCreateHugeTopics: a client's CreateTopics or
// CreatePartitions for more than MaxPartitions is refused, instead of
// growing the broker's memory without bound.
func TestClientsCannotCreateHugeTopics(t *testing.T) {
	b, err := Start(Config{Topics: []Topic{{"orders", 1}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	adm := admin(t, b.ClientOpts()...)
	resp, err := adm.CreateTopic(ctxT(t), 99_999_999, 1, nil, "huge")
	if err == nil {
		err = resp.Err
	}
	if !errors.Is(err, kerr.InvalidPartitions) || !strings.Contains(resp.ErrMessage, "at most 10000 partitions") {
		t.Fatalf("create a topic of 99999999 partitions: %v (%q), want INVALID_PARTITIONS", err, resp.ErrMessage)
	}
	cr, err := adm.CreatePartitions(ctxT(t), 99_999_999, "orders")
	if err == nil {
		err = cr["orders"].Err
	}
	if !errors.Is(err, kerr.InvalidPartitions) {
		t.Fatalf("add 99999999 partitions: %v, want INVALID_PARTITIONS", err)
	}
	if resp, err := adm.CreateTopic(ctxT(t), 3, 1, nil, "fine"); err != nil || resp.Err != nil {
		t.Fatalf("create a topic of 3 partitions: %v %v", err, resp.Err)
	}
}

func produce(t *testing.T, b *Broker, topic string, n int) {
	t.Helper()
	cl, err := kgo.NewClient(append(b.ClientOpts(), kgo.ProducerLinger(0))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range n {
		if err := cl.ProduceSync(ctxT(t), &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "v%d", i)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

func endOffset(t *testing.T, b *Broker, topic string) int64 {
	t.Helper()
	ends, err := admin(t, b.ClientOpts()...).ListEndOffsets(ctxT(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	o, _ := ends.Lookup(topic, 0)
	return o.Offset
}

// TestDataDirLocked: a second broker on a data directory in use is
// refused, naming the process that holds it; once the first is closed the
// directory is free.
func TestDataDirLocked(t *testing.T) {
	dir := t.TempDir()
	b, err := Start(Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Start(Config{DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("is in use by process %d", os.Getpid())) {
		t.Fatalf("second broker on %s: %v, want a refusal", dir, err)
	}
	b.Close()
	b, err = Start(Config{DataDir: dir})
	if err != nil {
		t.Fatalf("after the first broker closed: %v", err)
	}
	b.Close()
}

// TestDataDirNotWritable: a data directory the broker cannot write is
// refused at start, not discovered at the first produce.
func TestDataDirNotWritable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	b, err := Start(Config{DataDir: dir, Topics: []Topic{{"orders", 1}}})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	if checkWritable(dir) == nil {
		// root writes anyway: try a directory root cannot write.
		if checkWritable("/sys") == nil {
			t.Skip("no read-only directory to try (running as root, and /sys is writable)")
		}
		dir = "/sys"
	}
	b, err = Start(Config{DataDir: dir})
	if err == nil {
		b.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "is not writable") {
		t.Fatalf("start on a read-only %s: %v, want an error saying it is not writable", dir, err)
	}
}

// stoppedWithRecords runs a broker on a new data directory, writes 5
// records to orders, stops it, and returns the directory and the path of
// the one segment of orders' partition 0.
func stoppedWithRecords(t *testing.T) (dir, segment string) {
	t.Helper()
	dir = t.TempDir()
	b, err := Start(Config{DataDir: dir, Topics: []Topic{{"orders", 1}}})
	if err != nil {
		t.Fatal(err)
	}
	produce(t, b, "orders", 5)
	b.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "partitions", "orders-0", "*.dat"))
	if len(segs) != 1 {
		t.Fatalf("segments of orders: %v", segs)
	}
	return dir, segs[0]
}

// TestDataDirDamagedSegmentRefused: a segment whose acknowledged records
// fail their checksum is refused with an error naming it, and left as it
// was (kfake would truncate it, emptying the partition).
func TestDataDirDamagedSegmentRefused(t *testing.T) {
	dir, seg := stoppedWithRecords(t)
	raw, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/3] ^= 0xff // inside the records, not at the tail
	if err := os.WriteFile(seg, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Start(Config{DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), "segment partitions/orders-0/0.dat is damaged") || !strings.Contains(err.Error(), "fails its checksum") {
		t.Fatalf("start on a damaged segment: %v", err)
	}
	after, _ := os.ReadFile(seg)
	if len(after) != len(raw) {
		t.Fatalf("the damaged segment was cut from %d to %d bytes", len(raw), len(after))
	}
}

// TestDataDirTornWriteRecovered: a write cut short at the end of the last
// segment (a broker killed mid-write) is dropped with a report, and the
// records before it are kept.
func TestDataDirTornWriteRecovered(t *testing.T) {
	dir, seg := stoppedWithRecords(t)
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The first 20 bytes of a batch of offset 5 that claims 100 bytes.
	torn := make([]byte, 20)
	torn[7], torn[11] = 5, 88
	if _, err := f.Write(torn); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b, err := Start(Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if len(b.Recovered) != 1 || !strings.Contains(b.Recovered[0], "partitions/orders-0/0.dat ended in 20 bytes of a write cut short") {
		t.Fatalf("recovered %q", b.Recovered)
	}
	if n := endOffset(t, b, "orders"); n != 5 {
		t.Fatalf("orders ends at %d after the repair, want 5", n)
	}
}

// TestSASLAndTLS: a broker that requires SCRAM over TLS serves a client
// with the user and the certificate, and refuses a wrong password; topics
// of a reloaded data directory are created through TLS that requires
// client certificates too.
func TestSASLAndTLS(t *testing.T) {
	cert, err := SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	clientCA, err := newCert("test client CA", nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(clientCA.Leaf)
	server := &tls.Config{Certificates: []tls.Certificate{cert.Certificate}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	user := &SASL{Mechanism: "scram-sha-256", User: "alice", Password: "s3cret"}
	dir := t.TempDir()
	b, err := Start(Config{DataDir: dir, SASL: user, TLS: server, Topics: []Topic{{"orders", 1}}})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	b, err = Start(Config{DataDir: dir, SASL: user, TLS: server, Topics: []Topic{{"orders", 1}, {"added", 2}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if fmt.Sprint(b.Created) != "[{added 2}]" {
		t.Fatalf("created %v on restart, want added only", b.Created)
	}

	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(cert.PEM) {
		t.Fatal("no certificate in the PEM")
	}
	client := func(pass string, timeout time.Duration) error {
		tc := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCA.Certificate}, MinVersion: tls.VersionTLS12}
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.ListenAddrs()...), kgo.DialTLSConfig(tc),
			kgo.SASL(scram.Auth{User: "alice", Pass: pass}.AsSha256Mechanism()), kgo.WithLogger(nil))
		if err != nil {
			return err
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return cl.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: []byte("v")}).FirstErr()
	}
	if err := client("s3cret", 20*time.Second); err != nil {
		t.Fatalf("client with the user and the certificate: %v", err)
	}
	if err := client("wrong", time.Second); err == nil {
		t.Fatal("a wrong password was accepted")
	}
}

// TestStartInterruptible: a start that creates many partitions in a new
// data directory (seconds of work for kfake) returns as soon as its context
// ends; the broker it was starting is closed in the background and the
// directory released.
func TestStartInterruptible(t *testing.T) {
	if testing.Short() {
		t.Skip("creates thousands of partitions on disk")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	b, err := StartContext(ctx, Config{DataDir: dir, Topics: []Topic{{"wide", 800}}})
	if err == nil {
		b.Close()
		t.Skipf("the broker started within 50ms (%v): nothing to interrupt", time.Since(start))
	}
	// "At once" within a bound a busy machine keeps: creating the 800
	// partitions takes seconds on a quiet one, and an uninterruptible start
	// (the bug) held on for minutes.
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second {
		t.Fatalf("StartContext = %v after %v, want the context's error at once", err, time.Since(start))
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := Start(Config{DataDir: dir})
		if err == nil {
			b.Close()
			return
		}
		if !strings.Contains(err.Error(), "is in use by") || time.Now().After(deadline) {
			t.Fatalf("after the interrupted start: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // the background close owns the lock
	}
}
