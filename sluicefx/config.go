package sluicefx

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/pipeline"
)

// DefaultHTTPAddr is where HealthModule serves /healthz, /readyz and
// /metrics unless Config.HTTPAddr says otherwise.
const DefaultHTTPAddr = ":8080"

// Config configures the consumer, the dead-letter publisher and the health
// server. Load it however the application loads configuration; a zero
// field means the default, documented on the consumer option of the same
// name. The connection (Brokers, ClientID, SASL, TLS) is given once and
// serves the consumer and the dead-letter publisher (Connection). The
// topics are the pipeline's: each Source names one. Validate reports the
// first bad field by name.
type Config struct {
	// Brokers are the seed brokers, as host:port. Required.
	Brokers []string
	// Group is the consumer group. Required, unless ShareGroup is set.
	Group string
	// ShareGroup makes the consumer a member of this share group
	// (consumer.ShareGroup: queue mode, KIP-932) instead of a consumer
	// group; set Group or ShareGroup, not both. Share tunes it.
	// Kit.Pipeline wraps the dead letters with consumer.ShareDeadLetters
	// (harmless for a consumer group), so that transient failures are
	// released for redelivery until the delivery limit.
	ShareGroup string
	// Share tunes a share group member; only with ShareGroup.
	Share Share
	// GroupProtocol is the consumer group protocol: "classic" (the
	// default, cooperative-sticky) or "consumer" (KIP-848,
	// consumer.ProtocolConsumer). Not with ShareGroup.
	GroupProtocol string
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

	// DeadLetters configures DeadLetterModule's publisher.
	DeadLetters DeadLetters

	// HTTPAddr is where HealthModule serves /healthz, /readyz and /metrics.
	// Default DefaultHTTPAddr (":8080").
	HTTPAddr string
	// StalledUnready makes stalled partitions fail /readyz (see
	// health.StalledUnready). Default false: they are only reported.
	StalledUnready bool
}

// Share tunes a share group member (Config.ShareGroup); a zero field keeps
// the default of the consumer option of the same name with the prefix
// Share (consumer.ShareMaxRecords, ShareLanes, ShareDeliveryLimit,
// ShareRenewEvery, ShareSinkAttempts).
type Share struct {
	MaxRecords    int
	Lanes         int
	DeliveryLimit int
	RenewEvery    time.Duration
	SinkAttempts  int
}

// opts are the consumer options of the set fields.
func (s Share) opts() []consumer.Opt {
	return append(setOpts(
		field[int]{s.MaxRecords, consumer.ShareMaxRecords},
		field[int]{s.Lanes, consumer.ShareLanes},
		field[int]{s.DeliveryLimit, consumer.ShareDeliveryLimit},
		field[int]{s.SinkAttempts, consumer.ShareSinkAttempts},
	), setOpts(field[time.Duration]{s.RenewEvery, consumer.ShareRenewEvery})...)
}

// field is a Config field and the consumer option that sets it.
type field[T comparable] struct {
	v   T
	opt func(T) consumer.Opt
}

// setOpts returns the options of the fields that are set (not zero), so
// that zero fields keep the consumer's defaults.
func setOpts[T comparable](fields ...field[T]) []consumer.Opt {
	var opts []consumer.Opt
	var zero T
	for _, f := range fields {
		if f.v != zero {
			opts = append(opts, f.opt(f.v))
		}
	}
	return opts
}

// groupName is the group named in dead letters: the consumer group or the
// share group.
func (c Config) groupName() string {
	if c.ShareGroup != "" {
		return c.ShareGroup
	}
	return c.Group
}

// DeadLetters configures the dead-letter publisher of DeadLetterModule
// (package dlq), which reaches the cluster through the Config's connection.
type DeadLetters struct {
	// Suffix names a source topic's dead-letter topic: the source topic
	// plus Suffix. Default ".dlq" (dlq.DefaultSuffix).
	Suffix string
	// AutoCreate, when not zero, creates a missing dead-letter topic with
	// the source topic's partition count and this replication factor (-1:
	// the broker's default). Default 0: off, topics are created by the
	// cluster's own tooling (dlq.AutoCreate).
	AutoCreate int16
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

// configErr is a *sluice.ConfigError naming a Config field.
func configErr(field string, value any, reason string) error {
	return &sluice.ConfigError{Package: "sluicefx", Option: field, Value: value, Reason: reason}
}

// Validate checks the fields this package interprets (Start, SASL,
// HTTPAddr, DeadLetters) and then the consumer's own validation, by
// building a consumer from the config without contacting the brokers. Its
// errors are *sluice.ConfigError of package "sluicefx" whose Option is the
// Config field (a path such as "SASL.Mechanism"); a field the consumer
// checks carries the consumer's error as Err. It returns the first problem
// found.
func (c Config) Validate() error {
	opts, err := c.ConsumerOpts()
	if err != nil {
		return err
	}
	if c.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			return configErr("HTTPAddr", c.HTTPAddr, err.Error())
		}
	}
	switch d := c.DeadLetters; {
	case d.AutoCreate < -1:
		return configErr("DeadLetters.AutoCreate", d.AutoCreate, "want 0 (off), -1 (the broker's default replication factor) or at least 1")
	}
	return fieldError(consumer.Validate(append(opts, consumer.Handle(noHandler{}))...))
}

// fieldError turns a consumer configuration error into one naming the
// Config field that set the option.
func fieldError(err error) error {
	var ce *sluice.ConfigError
	if !errors.As(err, &ce) || ce.Package != "consumer" {
		return err
	}
	field := ce.Option
	switch {
	case ce.Option == "Connection":
		field = ce.Field // Brokers
	case ce.Option == "MaxUnsettled" && ce.Field == "total":
		field = "MaxUnsettledTotal"
	case ce.Option != "ShareGroup" && strings.HasPrefix(ce.Option, "Share"):
		field = "Share." + strings.TrimPrefix(ce.Option, "Share") // Share.MaxRecords
	}
	return &sluice.ConfigError{Package: "sluicefx", Option: field, Value: ce.Value, Reason: ce.Reason, Err: err}
}

// noHandler stands in for the pipeline when only the config is checked
// (the pipeline's topics are checked when the consumer is made).
type noHandler struct{}

func (noHandler) Topics() []string { return []string{"(the pipeline's topics)"} }

func (noHandler) OpenPartition(context.Context, pipeline.TopicPartition) (pipeline.Partition, error) {
	return nil, errors.New("sluicefx: validation only")
}

// Connection returns the connection of the config (Brokers, ClientID, SASL,
// TLS), which the consumer and DeadLetterModule's publisher share; give it
// to any other client the application creates (dlq.Connection,
// kafka.Connection of sinks/kafka, or ClientOpts for an admin client).
func (c Config) Connection() (sluice.Connection, error) {
	if err := c.SASL.validate(); err != nil {
		return sluice.Connection{}, err
	}
	return sluice.Connection{Brokers: c.Brokers, ClientID: c.ClientID, TLS: c.TLS, SASL: c.SASL.mechanism()}, nil
}

// ConsumerOpts translates the config into consumer options: one for each
// set field, so that zero fields keep the consumer's defaults. It checks
// the fields the consumer does not see as such (Start, SASL). The handler,
// logger and hooks are not part of it.
func (c Config) ConsumerOpts() ([]consumer.Opt, error) {
	conn, err := c.Connection()
	if err != nil {
		return nil, err
	}
	opts := []consumer.Opt{consumer.Connection(conn)}
	if c.Group != "" || c.ShareGroup == "" {
		opts = append(opts, consumer.Group(c.Group))
	}
	if c.ShareGroup != "" {
		opts = append(opts, consumer.ShareGroup(c.ShareGroup))
	}
	opts = append(opts, c.Share.opts()...)
	switch c.GroupProtocol {
	case "", "classic":
	case "consumer":
		opts = append(opts, consumer.GroupProtocol(consumer.ProtocolConsumer))
	default:
		return nil, configErr("GroupProtocol", c.GroupProtocol, `want "classic" or "consumer"`)
	}
	switch c.Start {
	case "", "earliest":
	case "latest":
		opts = append(opts, consumer.Start(consumer.Latest))
	default:
		return nil, configErr("Start", c.Start, `want "earliest" or "latest"`)
	}
	if c.InstanceID != "" {
		opts = append(opts, consumer.InstanceID(c.InstanceID))
	}
	type d = field[time.Duration]
	opts = append(opts, setOpts(
		d{c.CommitInterval, consumer.CommitInterval},
		d{c.DrainTimeout, consumer.DrainTimeout},
		d{c.CloseGrace, consumer.CloseGrace},
		d{c.StallAfter, consumer.StallAfter},
		d{c.RecordBudget, consumer.RecordBudget},
		d{c.SessionTimeout, consumer.SessionTimeout},
		d{c.RebalanceTimeout, consumer.RebalanceTimeout},
	)...)
	if c.MaxUnsettled != (consumer.Water{}) || c.MaxUnsettledTotal != (consumer.Water{}) {
		opts = append(opts, consumer.MaxUnsettled(c.MaxUnsettled, c.MaxUnsettledTotal))
	}
	if c.LowWater != 0 {
		opts = append(opts, consumer.LowWater(c.LowWater))
	}
	return opts, nil
}

// validate checks the mechanism, and that credentials come with one.
func (s SASL) validate() error {
	switch s.Mechanism {
	case "":
		if s.User != "" || s.Password != "" {
			return configErr("SASL.Mechanism", nil, "credentials given without a mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
		}
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if s.User == "" {
			return configErr("SASL.User", nil, s.Mechanism+" needs a user")
		}
	default:
		return configErr("SASL.Mechanism", s.Mechanism, "want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
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
