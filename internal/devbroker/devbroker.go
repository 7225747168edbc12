// Package devbroker starts franz-go's kfake cluster as a development broker:
// a real Kafka protocol endpoint on 127.0.0.1 with no install, used by
// `sluice dev broker`, `sluice demo` and the examples.
//
// # Decisions
//
//   - Partitions are capped at MaxPartitions (10,000) per topic, and the
//     topics created at start at MaxPartitions in all: kfake keeps every
//     partition in memory (about half a kilobyte each, plus a directory with
//     DataDir), and Kafka's own guidance is a few thousand partitions per
//     broker. Larger counts are refused with an error naming the flag, and
//     so are CreateTopics and CreatePartitions requests of clients that ask
//     for more (INVALID_PARTITIONS).
//   - A topic given without a partition count gets DefaultPartitions, the
//     count of auto-created topics; Start reports each topic it created
//     (Broker.Created) so that the command can say so.
//   - With DataDir, Start checks before the broker touches the directory
//     that it is writable, locks it (a second broker on the same directory
//     is refused; the lock is released by Close or when the process ends),
//     and verifies every segment's record batches. A segment whose
//     acknowledged records are damaged is refused with an error naming the
//     file: kfake would silently truncate it, emptying the partition. The
//     one damage that is repaired is an incomplete write at the end of a
//     partition's last segment past its last clean shutdown, which is what
//     a broker killed mid-write leaves (those records were never
//     acknowledged); it is reported in Broker.Recovered.
//   - With SASL, the broker's users are the ones Config gives: users saved
//     in DataDir by an earlier run are dropped. With TLS, the broker serves
//     TLS only.
//   - Start is interruptible: when ctx ends before the broker is up it
//     returns ctx's error at once, and a broker still loading its data
//     directory is closed in the background once loaded.
package devbroker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// MaxPartitions is the most partitions a topic may have on the development
// broker, and the most that Config.Topics may create in all.
const MaxPartitions = 10_000

// Config describes a development broker.
type Config struct {
	// Port to listen on, on 127.0.0.1. Zero picks a free port.
	Port int
	// Topics to create at start. A zero partition count means
	// DefaultPartitions.
	Topics []Topic
	// AutoCreateTopics lets clients create topics by asking for them.
	AutoCreateTopics bool
	// DefaultPartitions is the partition count of auto-created topics and
	// of Topics given without one; zero means 1.
	DefaultPartitions int
	// DataDir, if set, persists the broker's data so it survives a restart.
	DataDir string
	// MaxMessageBytes, if positive, overrides the broker's message.max.bytes.
	MaxMessageBytes int
	// SASL, when set, makes every client authenticate as this user (a
	// superuser).
	SASL *SASL
	// TLS, when set, is the listener's TLS configuration (with its
	// certificate; ClientAuth to require client certificates).
	TLS *tls.Config
}

// SASL is the one user of a broker that requires SASL.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (any case).
	Mechanism string
	User      string
	Password  string
}

// mechanism returns the mechanism as kfake spells it.
func (s *SASL) mechanism() (string, error) {
	m := strings.ToUpper(s.Mechanism)
	switch m {
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		return m, nil
	}
	return "", fmt.Errorf("--sasl-mechanism %q: want plain, scram-sha-256 or scram-sha-512", s.Mechanism)
}

// clientOpt is how a franz-go client authenticates as the user.
func (s *SASL) clientOpt() kgo.Opt {
	switch strings.ToUpper(s.Mechanism) {
	case "PLAIN":
		return kgo.SASL(plain.Auth{User: s.User, Pass: s.Password}.AsMechanism())
	case "SCRAM-SHA-512":
		return kgo.SASL(scram.Auth{User: s.User, Pass: s.Password}.AsSha512Mechanism())
	}
	return kgo.SASL(scram.Auth{User: s.User, Pass: s.Password}.AsSha256Mechanism())
}

// Topic is a topic to create at start.
type Topic struct {
	Name string
	// Partitions is the partition count; zero means the broker's
	// DefaultPartitions.
	Partitions int32
}

// ParseTopics parses "name:partitions,name:partitions". A name without a
// count gets partition count 0: the broker's default. Names must be valid
// Kafka topic names, given once, and counts between 1 and MaxPartitions.
func ParseTopics(spec string) ([]Topic, error) {
	var topics []Topic
	seen := map[string]string{}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, count, hasCount := strings.Cut(item, ":")
		t := Topic{Name: name}
		if err := ValidTopicName(name); err != nil {
			return nil, fmt.Errorf("--topics: %q: %w", item, err)
		}
		if hasCount {
			n, err := strconv.ParseInt(count, 10, 64)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("--topics: %q: partition count must be a positive integer", item)
			}
			if n > MaxPartitions {
				return nil, fmt.Errorf("--topics: %q: %d partitions is more than the development broker's limit of %d per topic", item, n, MaxPartitions)
			}
			t.Partitions = int32(n)
		}
		norm := strings.ReplaceAll(name, ".", "_")
		if prev, ok := seen[norm]; ok {
			if prev == name {
				return nil, fmt.Errorf("--topics: %q is given twice", name)
			}
			return nil, fmt.Errorf("--topics: %q and %q collide (Kafka treats '.' and '_' in topic names alike)", prev, name)
		}
		seen[norm] = name
		topics = append(topics, t)
	}
	return topics, nil
}

// ValidTopicName reports why Kafka would reject name as a topic name: it
// must be 1 to 249 characters of ASCII letters, digits, '.', '_' and '-',
// and not "." or "..".
func ValidTopicName(name string) error {
	switch {
	case name == "":
		return errors.New("empty topic name")
	case name == "." || name == "..":
		return fmt.Errorf("topic name %q is not allowed", name)
	case len(name) > 249:
		return fmt.Errorf("topic name is %d characters long, longer than Kafka's 249", len(name))
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("topic name %q has %q: Kafka allows only ASCII letters, digits, '.', '_' and '-'", name, r)
		}
	}
	return nil
}

// validate checks the config, naming the flag of `sluice dev broker` that
// sets a bad field, and fills in the defaults.
func (cfg *Config) validate() error {
	switch {
	case cfg.Port < 0 || cfg.Port > 65535:
		return fmt.Errorf("--port %d: not a TCP port", cfg.Port)
	case cfg.DefaultPartitions < 0:
		return fmt.Errorf("--default-partitions %d: must be at least 1", cfg.DefaultPartitions)
	case cfg.DefaultPartitions > MaxPartitions:
		return fmt.Errorf("--default-partitions %d: more than the development broker's limit of %d per topic", cfg.DefaultPartitions, MaxPartitions)
	case cfg.MaxMessageBytes < 0:
		return fmt.Errorf("--max-message-bytes %d: must not be negative (0 keeps the default)", cfg.MaxMessageBytes)
	}
	if cfg.DefaultPartitions == 0 {
		cfg.DefaultPartitions = 1
	}
	total := 0
	for i, t := range cfg.Topics {
		if err := ValidTopicName(t.Name); err != nil {
			return fmt.Errorf("--topics: %w", err)
		}
		if t.Partitions < 0 || t.Partitions > MaxPartitions {
			return fmt.Errorf("--topics: %s:%d: partition count must be between 1 and %d", t.Name, t.Partitions, MaxPartitions)
		}
		if t.Partitions == 0 {
			cfg.Topics[i].Partitions = int32(cfg.DefaultPartitions)
		}
		total += int(cfg.Topics[i].Partitions)
	}
	if total > MaxPartitions {
		return fmt.Errorf("--topics: %d partitions in all is more than the development broker's limit of %d", total, MaxPartitions)
	}
	if cfg.SASL != nil {
		if _, err := cfg.SASL.mechanism(); err != nil {
			return err
		}
		if cfg.SASL.User == "" || cfg.SASL.Password == "" {
			return errors.New("--sasl-mechanism needs --sasl-user and --sasl-password")
		}
	}
	return nil
}

// Broker is a running development broker. Close stops it.
type Broker struct {
	*kfake.Cluster
	// Created lists the topics created at start, with their partition
	// counts; topics that a data directory already had are not in it.
	Created []Topic
	// Recovered describes damage that Start repaired in the data
	// directory: incomplete writes of a broker killed mid-write.
	Recovered []string

	cfg  Config
	lock *dirLock
}

// Close stops the broker, saves its data (with DataDir) and releases the
// data directory. It may be called more than once.
func (b *Broker) Close() {
	b.Cluster.Close()
	b.lock.release()
}

// ClientOpts are the options a franz-go client needs to reach b: its
// address, and its SASL user and TLS (trusting any certificate: it is the
// loopback broker this process started).
func (b *Broker) ClientOpts() []kgo.Opt {
	return clientOpts(b.ListenAddrs(), b.cfg)
}

func clientOpts(addrs []string, cfg Config) []kgo.Opt {
	opts := []kgo.Opt{kgo.SeedBrokers(addrs...), kgo.WithLogger(nil)}
	if cfg.SASL != nil {
		opts = append(opts, cfg.SASL.clientOpt())
	}
	if cfg.TLS != nil {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true} //nolint:gosec // our own listener on loopback
		if cfg.TLS.ClientAuth >= tls.VerifyClientCertIfGiven {
			tc.Certificates = internalClientCert(cfg.TLS)
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	return opts
}

// Start starts a broker. Close the returned broker to stop it.
func Start(cfg Config) (*Broker, error) { return StartContext(context.Background(), cfg) }

// StartContext starts a broker; when ctx ends before it is up, it returns
// ctx's error.
func StartContext(ctx context.Context, cfg Config) (*Broker, error) {
	cfg.Topics = append([]Topic(nil), cfg.Topics...)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	b := &Broker{cfg: cfg}
	if cfg.DataDir != "" {
		lock, recovered, err := prepareDataDir(cfg.DataDir, cfg.SASL != nil)
		if err != nil {
			return nil, err
		}
		b.lock, b.Recovered = lock, recovered
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(cfg.Port),
		kfake.DefaultNumPartitions(cfg.DefaultPartitions),
		kfake.GroupMinSessionTimeout(100 * time.Millisecond), // fast tests and demos
	}
	if cfg.AutoCreateTopics {
		opts = append(opts, kfake.AllowAutoTopicCreation())
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if cfg.MaxMessageBytes > 0 {
		opts = append(opts, kfake.BrokerConfigs(map[string]string{
			"message.max.bytes": strconv.Itoa(cfg.MaxMessageBytes),
		}))
	}
	if cfg.SASL != nil {
		m, _ := cfg.SASL.mechanism()
		opts = append(opts, kfake.EnableSASL(), kfake.Superuser(m, cfg.SASL.User, cfg.SASL.Password))
	}
	if cfg.TLS != nil {
		opts = append(opts, kfake.TLS(serverTLS(cfg.TLS)))
	}
	for _, t := range cfg.Topics {
		opts = append(opts, kfake.SeedTopics(t.Partitions, t.Name))
	}

	// kfake.NewCluster is not interruptible (it may load or write a large
	// data directory): wait for it or for ctx, whichever is first.
	type started struct {
		c   *kfake.Cluster
		err error
	}
	done := make(chan started, 1)
	go func() {
		c, err := kfake.NewCluster(opts...)
		done <- started{c, err}
	}()
	var s started
	select {
	case s = <-done:
	case <-ctx.Done():
		go func() {
			if s := <-done; s.c != nil {
				s.c.Close()
			}
			b.lock.release()
		}()
		return nil, ctx.Err()
	}
	if s.err != nil {
		b.lock.release()
		return nil, fmt.Errorf("start broker: %w", s.err)
	}
	b.Cluster = s.c
	limitPartitions(s.c)
	if cfg.DataDir != "" && len(cfg.Topics) > 0 {
		// A broker that reloaded its data ignores seed topics: create the
		// ones it does not have yet.
		created, err := ensureTopics(ctx, clientOpts(s.c.ListenAddrs(), cfg), cfg.Topics)
		if err != nil {
			b.Close()
			return nil, err
		}
		b.Created = created
	} else {
		b.Created = cfg.Topics
	}
	return b, nil
}

// limitPartitions makes c refuse CreateTopics and CreatePartitions requests
// for more than MaxPartitions partitions in a topic, with
// INVALID_PARTITIONS for every topic of the request.
func limitPartitions(c *kfake.Cluster) {
	msg := fmt.Sprintf("sluice dev broker: at most %d partitions per topic", MaxPartitions)
	refuse := func(key kmsg.Key, over func(kmsg.Request) kmsg.Response) {
		c.ControlKey(int16(key), func(req kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			resp := over(req)
			return resp, nil, resp != nil
		})
	}
	refuse(kmsg.CreateTopics, func(kreq kmsg.Request) kmsg.Response {
		req := kreq.(*kmsg.CreateTopicsRequest)
		if !slices.ContainsFunc(req.Topics, func(t kmsg.CreateTopicsRequestTopic) bool {
			return t.NumPartitions > MaxPartitions || len(t.ReplicaAssignment) > MaxPartitions
		}) {
			return nil
		}
		resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
		resp.Version = req.Version
		for _, t := range req.Topics {
			resp.Topics = append(resp.Topics, kmsg.CreateTopicsResponseTopic{Topic: t.Topic, ErrorCode: kerr.InvalidPartitions.Code, ErrorMessage: &msg})
		}
		return resp
	})
	refuse(kmsg.CreatePartitions, func(kreq kmsg.Request) kmsg.Response {
		req := kreq.(*kmsg.CreatePartitionsRequest)
		if !slices.ContainsFunc(req.Topics, func(t kmsg.CreatePartitionsRequestTopic) bool { return t.Count > MaxPartitions }) {
			return nil
		}
		resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
		resp.Version = req.Version
		for _, t := range req.Topics {
			resp.Topics = append(resp.Topics, kmsg.CreatePartitionsResponseTopic{Topic: t.Topic, ErrorCode: kerr.InvalidPartitions.Code, ErrorMessage: &msg})
		}
		return resp
	})
}

// ensureTopics creates the topics the broker does not have and returns
// them.
func ensureTopics(ctx context.Context, opts []kgo.Opt, topics []Topic) ([]Topic, error) {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("create topics: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var created []Topic
	for _, t := range topics {
		resp, err := adm.CreateTopic(ctx, t.Partitions, 1, nil, t.Name)
		if err == nil {
			err = resp.Err
		}
		switch {
		case err == nil:
			created = append(created, t)
		case !errors.Is(err, kerr.TopicAlreadyExists):
			return nil, fmt.Errorf("create topic %s: %w", t.Name, err)
		}
	}
	return created, nil
}
