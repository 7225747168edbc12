// Package devbroker starts franz-go's kfake cluster as a development broker:
// a real Kafka protocol endpoint on 127.0.0.1 with no install, used by
// `sluice dev broker`, `sluice demo` and the examples.
package devbroker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config describes a development broker.
type Config struct {
	// Port to listen on, on 127.0.0.1. Zero picks a free port.
	Port int
	// Topics to create at start, with their partition counts.
	Topics []Topic
	// AutoCreateTopics lets clients create topics by asking for them.
	AutoCreateTopics bool
	// DefaultPartitions is the partition count of auto-created topics;
	// zero means 1.
	DefaultPartitions int
	// DataDir, if set, persists the broker's data so it survives a restart.
	DataDir string
	// MaxMessageBytes, if positive, overrides the broker's message.max.bytes.
	MaxMessageBytes int
}

// Topic is a topic to create at start.
type Topic struct {
	Name       string
	Partitions int32
}

// ParseTopics parses "name:partitions,name:partitions". A name without a
// count gets one partition.
func ParseTopics(spec string) ([]Topic, error) {
	var topics []Topic
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, count, hasCount := strings.Cut(item, ":")
		t := Topic{Name: name, Partitions: 1}
		if name == "" {
			return nil, fmt.Errorf("topics: %q has no topic name", item)
		}
		if hasCount {
			n, err := strconv.ParseInt(count, 10, 32)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("topics: %q: partition count must be a positive integer", item)
			}
			t.Partitions = int32(n)
		}
		topics = append(topics, t)
	}
	return topics, nil
}

// Start starts a broker. Close the returned cluster to stop it.
func Start(cfg Config) (*kfake.Cluster, error) {
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("port: %d is not a TCP port", cfg.Port)
	}
	parts := cfg.DefaultPartitions
	if parts <= 0 {
		parts = 1
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(cfg.Port),
		kfake.DefaultNumPartitions(parts),
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
	for _, t := range cfg.Topics {
		opts = append(opts, kfake.SeedTopics(t.Partitions, t.Name))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start broker: %w", err)
	}
	if cfg.DataDir != "" && len(cfg.Topics) > 0 {
		// A broker that reloaded its data ignores seed topics: create the
		// ones it does not have yet.
		if err := ensureTopics(c.ListenAddrs(), cfg.Topics); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func ensureTopics(addrs []string, topics []Topic) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, t := range topics {
		resp, err := adm.CreateTopic(ctx, t.Partitions, 1, nil, t.Name)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", t.Name, err)
		}
	}
	return nil
}
