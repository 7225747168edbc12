package sluice

import (
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
)

// DefaultClientID is the Kafka client ID of a Connection that sets none.
const DefaultClientID = "sluice"

// Connection says how to reach and authenticate to a Kafka cluster. Give the
// same value to consumer.Connection, dlq.Connection and kafka.Connection
// (sinks/kafka): the consumer, the dead-letter publisher and the Kafka sink
// then reach the cluster the same way, and the settings are written once.
//
//	conn := sluice.Connection{
//		Brokers: []string{"kafka-1:9093", "kafka-2:9093"},
//		TLS:     &tls.Config{},                                       // system roots
//		SASL:    scram.Auth{User: u, Pass: p}.AsSha512Mechanism(), // franz-go pkg/sasl/scram
//	}
//
// A Connection holds credentials (in SASL); String and %v print only the
// brokers, the client ID and which of TLS and SASL are set.
type Connection struct {
	// Brokers are the seed brokers, as host:port. Required.
	Brokers []string
	// TLS dials the brokers with TLS when non-nil; an empty tls.Config
	// uses the system roots. Default nil: plaintext.
	TLS *tls.Config
	// SASL authenticates each connection with this mechanism, from
	// franz-go's pkg/sasl/plain, pkg/sasl/scram, pkg/sasl/oauth or
	// pkg/sasl/aws. Use it with TLS. Default nil: no SASL.
	SASL sasl.Mechanism
	// ClientID is the Kafka client ID the brokers log and quota by.
	// Default DefaultClientID ("sluice").
	ClientID string
}

// Check returns a *ConfigError of package pkg, naming the option
// "Connection", when c has no broker or an empty broker address; nil
// otherwise. Every constructor that takes a Connection calls it.
func (c Connection) Check(pkg string) error {
	if len(c.Brokers) == 0 {
		return &ConfigError{Package: pkg, Option: "Connection", Field: "Brokers", Reason: "at least one broker address (host:port) is required"}
	}
	for i, b := range c.Brokers {
		if strings.TrimSpace(b) == "" {
			return &ConfigError{Package: pkg, Option: "Connection", Field: "Brokers", Value: c.Brokers,
				Reason: fmt.Sprintf("address %d is empty", i)}
		}
	}
	return nil
}

// ClientOpts returns the franz-go options of the connection: seed brokers,
// client ID, TLS (a clone of c.TLS) and SASL. Packages that create a client
// start from them; use them for a client of your own (an admin client).
func (c Connection) ClientOpts() []kgo.Opt {
	id := c.ClientID
	if id == "" {
		id = DefaultClientID
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.ClientID(id)}
	if c.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(c.TLS.Clone()))
	}
	if c.SASL != nil {
		opts = append(opts, kgo.SASL(c.SASL))
	}
	return opts
}

// String prints the brokers, the client ID, and whether TLS and SASL (by
// mechanism name) are used; never credentials.
func (c Connection) String() string {
	s := "brokers=" + strings.Join(c.Brokers, ",")
	if c.ClientID != "" {
		s += " client_id=" + c.ClientID
	}
	if c.TLS != nil {
		s += " tls"
	}
	if c.SASL != nil {
		s += " sasl=" + c.SASL.Name()
	}
	return s
}

// GoString keeps %#v from printing credentials.
func (c Connection) GoString() string { return "sluice.Connection{" + c.String() + "}" }
