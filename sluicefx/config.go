package sluicefx

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/pipeline"
)

// DefaultHTTPAddr is where HealthModule serves /healthz, /readyz and
// /metrics unless Config.HTTPAddr says otherwise.
const DefaultHTTPAddr = ":8080"

// Config configures the consumer and the health server. Load it however
// the application loads configuration; a zero field means the consumer's
// default, documented on the consumer option of the same name. Validate
// reports the first bad field by name.
type Config struct {
	// Brokers are the seed brokers, as host:port. Required.
	Brokers []string
	// Group is the consumer group. Required.
	Group string
	// Topics are the topics to consume. Default: every topic the
	// pipeline has a Source for; if set, a subset of those.
	Topics []string
	// ClientID is the Kafka client ID. Default "sluice".
	ClientID string
	// InstanceID makes the member static (KIP-345). Default: dynamic.
	InstanceID string
	// Start is where a partition without a committed offset starts:
	// "earliest" (the default) or "latest".
	Start string

	// CommitInterval, DrainTimeout, CloseGrace, StallAfter, RecordBudget,
	// SessionTimeout and RebalanceTimeout: see the consumer options of the
	// same names.
	CommitInterval   time.Duration
	DrainTimeout     time.Duration
	CloseGrace       time.Duration
	StallAfter       time.Duration
	RecordBudget     time.Duration
	SessionTimeout   time.Duration
	RebalanceTimeout time.Duration
	// MaxUnsettled and MaxUnsettledTotal are the per-partition and total
	// high-water marks (consumer.MaxUnsettled); zero fields keep their
	// defaults.
	MaxUnsettled      consumer.Water
	MaxUnsettledTotal consumer.Water
	// LowWater is the low-water mark as a fraction of the high-water
	// marks (consumer.LowWater). Zero keeps the default.
	LowWater float64

	// SASL authenticates to the brokers; a zero value means none.
	SASL SASL
	// TLS dials the brokers with TLS when set. It is not marshalled: a
	// *tls.Config holds functions and keys; build it in code.
	TLS *tls.Config `json:"-" yaml:"-"`

	// HTTPAddr is where HealthModule serves /healthz, /readyz and /metrics.
	// Default DefaultHTTPAddr (":8080").
	HTTPAddr string
	// StalledUnready makes stalled partitions fail /readyz (see
	// health.StalledUnready). Default false: they are only reported.
	StalledUnready bool
}

// SASL holds SASL credentials.
type SASL struct {
	// Mechanism is "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512"; empty
	// means no SASL.
	Mechanism string
	User      string
	// Password is never printed or logged: see Secret.
	Password Secret
}

// Secret is a string that prints, logs and marshals as "[redacted]", so
// that a Config can be logged or dumped without leaking the password.
// Convert it with string(s) where the value is needed.
type Secret string

const redacted = "[redacted]"

// String returns "[redacted]" (or "" for an empty secret).
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the secret.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// LogValue keeps slog from logging the secret.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps encoders (JSON, YAML) from writing the secret.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// ErrConfig is wrapped by every configuration error of this package; a
// consumer.ConfigError (which wraps consumer.ErrConfig) names fields that
// the consumer checks.
var ErrConfig = errors.New("invalid sluicefx config")

// ConfigError names the Config field that is wrong.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("sluicefx: config: %s: %s", e.Field, e.Reason)
}

// Unwrap ties the error to ErrConfig.
func (e *ConfigError) Unwrap() error { return ErrConfig }

// Validate checks the fields this package interprets (Start, SASL,
// HTTPAddr) and then the consumer's own validation, by building a consumer
// from the config without contacting the brokers; its errors are
// *consumer.ConfigError naming the consumer option, which has the name of
// the Config field. It returns the first problem found.
func (c Config) Validate() error {
	opts, err := c.ConsumerOpts()
	if err != nil {
		return err
	}
	if c.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			return &ConfigError{Field: "HTTPAddr", Reason: err.Error()}
		}
	}
	if err := consumer.Validate(append(opts, consumer.Handle(noHandler{topics: c.Topics}))...); err != nil {
		return fmt.Errorf("sluicefx: config: %w", err)
	}
	return nil
}

// noHandler stands in for the pipeline when only the config is checked:
// it reads the configured topics, or one it names itself when none are
// configured (the pipeline's own are checked when the consumer is made).
type noHandler struct{ topics []string }

func (h noHandler) Topics() []string {
	if len(h.topics) == 0 {
		return []string{"(the pipeline's topics)"}
	}
	return h.topics
}

func (noHandler) OpenPartition(context.Context, pipeline.TopicPartition) (pipeline.Partition, error) {
	return nil, errors.New("sluicefx: validation only")
}

// ConsumerOpts translates the config into consumer options: one for each
// set field, so that zero fields keep the consumer's defaults. It checks
// the fields the consumer does not see as such (Start, SASL). The handler,
// logger and hooks are not part of it.
func (c Config) ConsumerOpts() ([]consumer.Opt, error) {
	opts := []consumer.Opt{consumer.Brokers(c.Brokers...), consumer.Group(c.Group)}
	if len(c.Topics) > 0 {
		opts = append(opts, consumer.Topics(c.Topics...))
	}
	switch c.Start {
	case "", "earliest":
	case "latest":
		opts = append(opts, consumer.Start(consumer.Latest))
	default:
		return nil, &ConfigError{Field: "Start", Reason: fmt.Sprintf("want \"earliest\" or \"latest\", got %q", c.Start)}
	}
	if c.ClientID != "" {
		opts = append(opts, consumer.ClientID(c.ClientID))
	}
	if c.InstanceID != "" {
		opts = append(opts, consumer.InstanceID(c.InstanceID))
	}
	for _, d := range []struct {
		v   time.Duration
		opt func(time.Duration) consumer.Opt
	}{
		{c.CommitInterval, consumer.CommitInterval},
		{c.DrainTimeout, consumer.DrainTimeout},
		{c.CloseGrace, consumer.CloseGrace},
		{c.StallAfter, consumer.StallAfter},
		{c.RecordBudget, consumer.RecordBudget},
		{c.SessionTimeout, consumer.SessionTimeout},
		{c.RebalanceTimeout, consumer.RebalanceTimeout},
	} {
		if d.v != 0 {
			opts = append(opts, d.opt(d.v))
		}
	}
	if c.MaxUnsettled != (consumer.Water{}) || c.MaxUnsettledTotal != (consumer.Water{}) {
		opts = append(opts, consumer.MaxUnsettled(c.MaxUnsettled, c.MaxUnsettledTotal))
	}
	if c.LowWater != 0 {
		opts = append(opts, consumer.LowWater(c.LowWater))
	}
	if err := c.SASL.validate(); err != nil {
		return nil, err
	}
	switch c.SASL.Mechanism {
	case "PLAIN":
		opts = append(opts, consumer.SASLPlain(c.SASL.User, string(c.SASL.Password)))
	case "SCRAM-SHA-256", "SCRAM-SHA-512":
		opts = append(opts, consumer.SASLScram(c.SASL.Mechanism, c.SASL.User, string(c.SASL.Password)))
	}
	if c.TLS != nil {
		opts = append(opts, consumer.TLS(c.TLS))
	}
	return opts, nil
}

// KafkaOpts returns the connection options of the config (SASL, TLS,
// ClientID) as franz-go options, for the other clients an application
// creates: a dead-letter publisher with its own client
// (dlq.ClientOpts), an admin client. Seed brokers are not included.
func (c Config) KafkaOpts() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if c.ClientID != "" {
		opts = append(opts, kgo.ClientID(c.ClientID))
	}
	if err := c.SASL.validate(); err != nil {
		return nil, err
	}
	if m := c.SASL.mechanism(); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	if c.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(c.TLS.Clone()))
	}
	return opts, nil
}

// validate checks the mechanism, and that credentials come with one.
func (s SASL) validate() error {
	switch s.Mechanism {
	case "":
		if s.User != "" || s.Password != "" {
			return &ConfigError{Field: "SASL.Mechanism", Reason: "credentials given without a mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"}
		}
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		return &ConfigError{Field: "SASL.Mechanism", Reason: fmt.Sprintf("want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got %q", s.Mechanism)}
	}
	return nil
}

// mechanism is the franz-go mechanism of a validated SASL, nil for none.
func (s SASL) mechanism() sasl.Mechanism {
	user, pass := s.User, string(s.Password)
	switch s.Mechanism {
	case "PLAIN":
		return plain.Auth{User: user, Pass: pass}.AsMechanism()
	case "SCRAM-SHA-256":
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
	case "SCRAM-SHA-512":
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()
	}
	return nil
}

func (c Config) httpAddr() string {
	if c.HTTPAddr == "" {
		return DefaultHTTPAddr
	}
	return c.HTTPAddr
}
