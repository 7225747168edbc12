package sluicefx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/health"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/metrics"
	"github.com/sluice-go/sluice/metrics/metricstest"
	"github.com/sluice-go/sluice/pipeline"
	"github.com/sluice-go/sluice/sluicefx"
)

func TestConfigValidate(t *testing.T) {
	good := sluicefx.Config{Brokers: []string{"localhost:9092"}, Group: "shop"}
	with := func(f func(*sluicefx.Config)) sluicefx.Config {
		c := good
		f(&c)
		return c
	}
	for _, tt := range []struct {
		name      string
		give      sluicefx.Config
		wantField string // "" for valid
	}{
		{"valid", good, ""},
		{"valid with everything", with(func(c *sluicefx.Config) {
			c.Start, c.DrainTimeout, c.RebalanceTimeout, c.LowWater = "latest", 5*time.Second, 10*time.Second, 0.3
			c.SASL = sluicefx.SASL{Mechanism: "PLAIN", User: "u", Password: "p"}
			c.HTTPAddr = ":9090"
		}), ""},
		{"no brokers", with(func(c *sluicefx.Config) { c.Brokers = nil }), "Brokers"},
		{"no group", with(func(c *sluicefx.Config) { c.Group = "" }), "Group"},
		{"empty broker", with(func(c *sluicefx.Config) { c.Brokers = []string{"localhost:9092", ""} }), "Brokers"},
		{"bad dead-letter replication", with(func(c *sluicefx.Config) { c.DeadLetters.AutoCreate = -2 }), "DeadLetters.AutoCreate"},
		{"bad start", with(func(c *sluicefx.Config) { c.Start = "beginning" }), "Start"},
		{"negative commit interval", with(func(c *sluicefx.Config) { c.CommitInterval = -time.Second }), "CommitInterval"},
		{"drain outlasts rebalance", with(func(c *sluicefx.Config) { c.DrainTimeout = time.Minute }), "DrainTimeout"},
		{"bad low water", with(func(c *sluicefx.Config) { c.LowWater = 1.5 }), "LowWater"},
		{"total below partition marks", with(func(c *sluicefx.Config) {
			c.MaxUnsettled, c.MaxUnsettledTotal = consumer.Water{Records: 100}, consumer.Water{Records: 10}
		}), "MaxUnsettledTotal"},
		{"unknown mechanism", with(func(c *sluicefx.Config) { c.SASL = sluicefx.SASL{Mechanism: "GSSAPI", User: "u"} }), "SASL.Mechanism"},
		{"password without mechanism", with(func(c *sluicefx.Config) { c.SASL = sluicefx.SASL{User: "u", Password: "p"} }), "SASL.Mechanism"},
		{"SASL without user", with(func(c *sluicefx.Config) { c.SASL = sluicefx.SASL{Mechanism: "PLAIN"} }), "SASL.User"},
		{"bad HTTP address", with(func(c *sluicefx.Config) { c.HTTPAddr = "8080" }), "HTTPAddr"},
		{"valid share group", with(func(c *sluicefx.Config) {
			c.Group, c.ShareGroup = "", "jobs"
			c.Share = sluicefx.Share{MaxRecords: 50, Lanes: 2, DeliveryLimit: 3, RenewEvery: 5 * time.Second, SinkAttempts: 2}
		}), ""},
		{"valid KIP-848", with(func(c *sluicefx.Config) { c.GroupProtocol = "consumer" }), ""},
		{"group and share group", with(func(c *sluicefx.Config) { c.ShareGroup = "jobs" }), "ShareGroup"},
		{"share tuning without share group", with(func(c *sluicefx.Config) { c.Share.MaxRecords = 10 }), "ShareGroup"},
		{"bad share lanes", with(func(c *sluicefx.Config) { c.Group, c.ShareGroup, c.Share.Lanes = "", "jobs", -1 }), "Share.Lanes"},
		{"bad share sink attempts", with(func(c *sluicefx.Config) { c.Group, c.ShareGroup, c.Share.SinkAttempts = "", "jobs", -1 }), "Share.SinkAttempts"},
		{"share group with KIP-848", with(func(c *sluicefx.Config) { c.Group, c.ShareGroup, c.GroupProtocol = "", "jobs", "consumer" }), "GroupProtocol"},
		{"unknown group protocol", with(func(c *sluicefx.Config) { c.GroupProtocol = "eager" }), "GroupProtocol"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate()
			var field string
			var ce *sluice.ConfigError
			switch {
			case errors.As(err, &ce) && ce.Package == "sluicefx" && errors.Is(err, sluice.ErrConfig):
				field = ce.Option
			case err != nil:
				t.Fatalf("error %v names no Config field", err)
			}
			if field != tt.wantField {
				t.Fatalf("Validate: %v; want field %q", err, tt.wantField)
			}
			if _, err := tt.give.Connection(); strings.HasPrefix(tt.wantField, "SASL") && err == nil {
				t.Error("Connection accepted bad SASL settings")
			}
		})
	}
}

// TestSecretNeverPrinted: a Config printed, logged or marshalled shows no
// password.
func TestSecretNeverPrinted(t *testing.T) {
	const password = "hunter2-s3cret"
	cfg := sluicefx.Config{Brokers: []string{"b:9092"}, SASL: sluicefx.SASL{Mechanism: "PLAIN", User: "u", Password: password}}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "config", cfg, "sasl", cfg.SASL, "password", cfg.SASL.Password)
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "config", cfg, "password", cfg.SASL.Password)
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{
		"%v": fmt.Sprintf("%v", cfg), "%+v": fmt.Sprintf("%+v", cfg), "%#v": fmt.Sprintf("%#v", cfg),
		"%s": cfg.SASL.Password.String(), "slog": logged.String(), "json": string(js),
	} {
		if strings.Contains(out, password) || !strings.Contains(out, "[redacted]") {
			t.Errorf("%s: %s", name, out)
		}
	}
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLogsHideSecretsAndPayloads runs the application with SASL/SCRAM
// against a broker that requires it, logging at debug level (franz-go's
// logs included), with records that fail, are filtered and do not decode,
// and checks that neither the password nor any payload is in the logs.
func TestLogsHideSecretsAndPayloads(t *testing.T) {
	const (
		user     = "sluice-user"
		password = "pw-7f3c9e1b-never-logged"
		payload  = "payload-4d2a-card-number"
	)
	kc := kafkatest.New(t, kafkatest.Topic("orders", 2), kafkatest.Topic("orders.dlq", 2),
		kafkatest.Kfake(kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", user, password)))
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := testConfig(kc)
	cfg.SASL = sluicefx.SASL{Mechanism: "SCRAM-SHA-256", User: user, Password: password}
	log.Info("starting", "config", cfg) // applications log their config
	ta := newTestApp(t, cfg, log)
	ta.app.RequireStart()

	auth := kgo.SASL(scram.Auth{User: user, Pass: password}.AsSha256Mechanism())
	recs := []*kgo.Record{
		{Topic: "orders", Key: []byte(payload + "-key"), Value: []byte(`{"qty":1,"note":"` + payload + `"}`)},
		{Topic: "orders", Key: []byte("k2"), Value: []byte(`{"qty":0,"note":"` + payload + `"}`)},               // filtered
		{Topic: "orders", Key: []byte("k3"), Value: []byte(`{"qty":1,"poison":true,"note":"` + payload + `"}`)}, // dead-lettered
		{Topic: "orders", Key: []byte("k4"), Value: []byte(`{"qty":1,"flaky":true,"n":99,"note":"` + payload + `"}`)},
		{Topic: "orders", Key: []byte("k5"), Value: []byte(payload)}, // does not decode: dead-lettered
	}
	kc.ProduceWith(t, []kgo.Opt{auth}, recs...)
	kafkatest.Eventually(t, 20*time.Second, func() bool {
		s, err := metricstest.Take(ta.reg)
		return err == nil && s.Total(metrics.DeadLetters) == 2 &&
			s.Value(metrics.RecordsHandled, "stage", "store", "outcome", "ok") == 2 &&
			s.Value(metrics.RecordsHandled, "stage", "valid", "outcome", "filtered") == 1
	}, "records not handled")
	ta.app.RequireStop()

	out := logs.String()
	if strings.Contains(out, password) {
		t.Error("the SASL password is in the logs")
	}
	if strings.Contains(out, payload) {
		t.Error("a payload is in the logs")
	}
	// The logs are there: franz-go's debug logs of the SASL handshakes of
	// the consumer's and the dead-letter publisher's clients, and the
	// config with its password redacted.
	for _, want := range []string{`msg="beginning sasl authentication" lib=franz-go`, "client=dlq", "consumer starting", "Password:[redacted]"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q", want)
		}
	}
}

// failingHandler cannot open partitions: the consumer stops on it.
type failingHandler struct{}

func (failingHandler) Topics() []string { return []string{"orders"} }

func (failingHandler) OpenPartition(context.Context, pipeline.TopicPartition) (pipeline.Partition, error) {
	return nil, errors.New("no database")
}

// TestFatalErrorShutsAppDown: ConsumerModule alone; a consumer that fails
// stops the application with exit code 1.
func TestFatalErrorShutsAppDown(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("orders", 1))
	var runner *sluicefx.Runner
	app := fxtest.New(t, fx.NopLogger, fx.Supply(testConfig(kc)), sluicefx.Logger(testLogger()), sluicefx.ConsumerModule,
		sluicefx.Pipeline(func() failingHandler { return failingHandler{} }), fx.Populate(&runner))
	app.RequireStart()
	select {
	case sig := <-app.Wait():
		if sig.ExitCode != 1 {
			t.Errorf("exit code %d, want 1", sig.ExitCode)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the application kept running")
	}
	app.RequireStop()
	if err := runner.Err(); err == nil || !strings.Contains(err.Error(), "no database") {
		t.Fatalf("runner error: %v", err)
	}
}

// stuckHandler settles every record but offset 1, which it holds until its
// partition is cancelled.
type stuckHandler struct{ entered chan struct{} }

func (stuckHandler) Topics() []string { return []string{"orders"} }

func (h stuckHandler) OpenPartition(ctx context.Context, _ pipeline.TopicPartition) (pipeline.Partition, error) {
	return &stuckPartition{h: h, ctx: ctx}, nil
}

type stuckPartition struct {
	h   stuckHandler
	ctx context.Context
	wg  sync.WaitGroup
}

func (p *stuckPartition) Handle(_ context.Context, recs []*pipeline.Record) error {
	for _, r := range recs {
		if r.Offset != 1 {
			r.Settle()
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.h.entered <- struct{}{}
			<-p.ctx.Done() // never settles
		}()
	}
	return nil
}

func (p *stuckPartition) Close() { p.wg.Wait() }

// TestStopDeadlineStopsAtOnce: OnStop drains within the stop timeout; when
// the timeout passes first, the consumer is stopped at once and commits
// only what settled.
func TestStopDeadlineStopsAtOnce(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("orders", 1))
	cfg := testConfig(kc)
	cfg.DrainTimeout, cfg.RebalanceTimeout = 8*time.Second, 10*time.Second
	h := stuckHandler{entered: make(chan struct{}, 1)}
	var runner *sluicefx.Runner
	app := fxtest.New(t, fx.NopLogger, fx.Supply(cfg), sluicefx.Logger(testLogger()), sluicefx.ConsumerModule,
		sluicefx.Pipeline(func() stuckHandler { return h }), fx.Populate(&runner))
	app.RequireStart()
	kc.ProduceN(t, "orders", 3, kafkatest.KeyedValue(1))
	<-h.entered
	kafkatest.Eventually(t, 20*time.Second, func() bool { return kc.Committed(t, "shop", "orders")[0] == 1 }, "offset 0 not committed")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := app.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop: %v, want the deadline", err)
	}
	<-runner.Done()
	if took := time.Since(start); took >= cfg.DrainTimeout {
		t.Errorf("stopping took %v: the drain timeout, not the stop deadline, ended it", took)
	}
	if got := kc.Committed(t, "shop", "orders")[0]; got != 1 {
		t.Errorf("committed %d, want 1 (the stuck record is not settled)", got)
	}
}

// TestAppRegistersNothingGlobally runs the application with the
// application's registry and with none (the module's own); neither
// registers anything on the default registry, and /metrics serves the
// module's own registry when the application has none.
func TestAppRegistersNothingGlobally(t *testing.T) {
	families := func() string {
		s, err := metricstest.Take(prometheus.DefaultGatherer)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(s.Families(), ",")
	}
	before := families()
	kc := kafkatest.New(t, kafkatest.Topic("orders", 1))

	ta := newTestApp(t, testConfig(kc), nil)
	ta.app.RequireStart()
	kafkatest.Eventually(t, 20*time.Second, func() bool { return ta.cons.Status().Joined }, "never joined")
	ta.app.RequireStop()

	var srv *health.Server
	cfg := testConfig(kc)
	cfg.Group = "other"
	app := fxtest.New(t, fx.NopLogger, fx.Supply(cfg), sluicefx.Logger(testLogger()), sluicefx.Module,
		sluicefx.Pipeline(func() settleAll { return settleAll{} }), fx.Populate(&srv))
	app.RequireStart()
	kafkatest.Eventually(t, 20*time.Second, func() bool {
		resp, err := http.Get("http://" + srv.Addr() + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		s, err := metricstest.Parse(resp.Body)
		return err == nil && s[metrics.PartitionsAssigned] == 1 && s.Has("sluice_kafka_connects_total")
	}, "/metrics of the module's own registry")
	app.RequireStop()

	if after := families(); after != before {
		t.Fatalf("default registry changed:\nbefore %s\nafter  %s", before, after)
	}
}

// TestWithoutFx uses the constructors directly.
func TestWithoutFx(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("orders", 1))
	kc.ProduceN(t, "orders", 5, kafkatest.KeyedValue(1))
	reg := prometheus.NewRegistry()
	mr, err := sluicefx.NewMetrics(sluicefx.MetricsParams{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	cr, err := sluicefx.NewConsumer(sluicefx.ConsumerParams{Config: testConfig(kc), Handler: settleAll{}, Logger: testLogger(),
		Hooks: []consumer.Hook{mr.Hook}, ClientOpts: []kgo.Opt{mr.ClientOpt}})
	if err != nil {
		t.Fatal(err)
	}
	r := sluicefx.NewRunner(cr.Consumer, testLogger(), nil)
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	kafkatest.Eventually(t, 20*time.Second, func() bool { return kc.Committed(t, "shop", "orders")[0] == 5 }, "not committed")
	if err := r.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, err := metricstest.Take(mr.Scrape)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Total(metrics.RecordsConsumed); got != 5 {
		t.Fatalf("records consumed %v, want 5", got)
	}
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
}

// Start followed at once by Stop (a later fx OnStart failing does this)
// once exited the process with code 1: Close ran before Run, Run returned
// ErrClosed, and the runner took it for a fatal error.
func TestStartThenStopAtOnceIsACleanStop(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("orders", 1))
	for i := range 20 {
		cr, err := sluicefx.NewConsumer(sluicefx.ConsumerParams{Config: testConfig(kc), Handler: settleAll{}, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		var exits atomic.Int32
		r := sluicefx.NewRunner(cr.Consumer, testLogger(), func(error) { exits.Add(1) })
		if err := r.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := r.Stop(context.Background()); err != nil {
			t.Fatalf("try %d: Stop: %v", i, err)
		}
		<-r.Done()
		if n := exits.Load(); n != 0 || r.Err() != nil {
			t.Fatalf("try %d: onExit called %d times, Err %v: a requested stop was taken for a failure", i, n, r.Err())
		}
	}
}
