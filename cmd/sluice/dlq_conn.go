package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/dlq"
)

// connFlags are the connection flags every `sluice dlq` subcommand shares.
// A flag not given on the command line takes its environment variable.
// Defaults from the environment are applied at run time, not shown as flag
// defaults, so that `--help` never prints a password.
type connFlags struct {
	brokers       string
	timeout       time.Duration
	saslMechanism string
	saslUser      string
	saslPassword  string
	tls           bool
	tlsCA         string
	tlsCert       string
	tlsKey        string
	tlsInsecure   bool
}

// connEnv maps each connection flag to its environment variable.
var connEnv = []struct{ flag, env string }{
	{"brokers", "SLUICE_BROKERS"},
	{"timeout", "SLUICE_TIMEOUT"},
	{"sasl-mechanism", "SLUICE_SASL_MECHANISM"},
	{"sasl-user", "SLUICE_SASL_USER"},
	{"sasl-password", "SLUICE_SASL_PASSWORD"},
	{"tls", "SLUICE_TLS"},
	{"tls-ca", "SLUICE_TLS_CA"},
	{"tls-cert", "SLUICE_TLS_CERT"},
	{"tls-key", "SLUICE_TLS_KEY"},
	{"tls-insecure-skip-verify", "SLUICE_TLS_INSECURE_SKIP_VERIFY"},
}

func (c *connFlags) register(f *pflag.FlagSet) {
	f.StringVar(&c.brokers, "brokers", "127.0.0.1:9092", "comma-separated seed brokers, host:port [$SLUICE_BROKERS]")
	f.DurationVar(&c.timeout, "timeout", dlq.DefaultTimeout, "dial and first-request timeout; unreachable brokers fail after it [$SLUICE_TIMEOUT]")
	f.StringVar(&c.saslMechanism, "sasl-mechanism", "", "SASL mechanism: plain, scram-sha-256 or scram-sha-512 [$SLUICE_SASL_MECHANISM]")
	f.StringVar(&c.saslUser, "sasl-user", "", "SASL user [$SLUICE_SASL_USER]")
	f.StringVar(&c.saslPassword, "sasl-password", "", "SASL password; prefer the environment variable, which stays out of shell history [$SLUICE_SASL_PASSWORD]")
	f.BoolVar(&c.tls, "tls", false, "connect with TLS (implied by the other --tls-* flags) [$SLUICE_TLS]")
	f.StringVar(&c.tlsCA, "tls-ca", "", "PEM file of CA certificates to trust instead of the system's [$SLUICE_TLS_CA]")
	f.StringVar(&c.tlsCert, "tls-cert", "", "PEM client certificate file, with --tls-key [$SLUICE_TLS_CERT]")
	f.StringVar(&c.tlsKey, "tls-key", "", "PEM client key file, with --tls-cert [$SLUICE_TLS_KEY]")
	f.BoolVar(&c.tlsInsecure, "tls-insecure-skip-verify", false, "do not verify the brokers' certificates (testing only) [$SLUICE_TLS_INSECURE_SKIP_VERIFY]")
}

// applyEnv sets every connection flag the command line left alone from its
// environment variable, if set.
func applyEnv(f *pflag.FlagSet) error {
	for _, e := range connEnv {
		fl := f.Lookup(e.flag)
		v, ok := os.LookupEnv(e.env)
		if fl == nil || fl.Changed || !ok {
			continue
		}
		if err := fl.Value.Set(v); err != nil {
			if e.flag == "sasl-password" {
				return fmt.Errorf("%s: invalid value", e.env)
			}
			return fmt.Errorf("%s=%q: %v", e.env, v, err)
		}
	}
	return nil
}

// conn turns the flags into a dlq.Conn. It reads the TLS files but does
// not connect.
func (c *connFlags) conn(cmd *cobra.Command) (dlq.Conn, error) {
	if err := applyEnv(cmd.Flags()); err != nil {
		return dlq.Conn{}, err
	}
	var brokers []string
	for b := range strings.SplitSeq(c.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	if len(brokers) == 0 {
		return dlq.Conn{}, fmt.Errorf("--brokers: no broker address")
	}
	if c.timeout <= 0 {
		return dlq.Conn{}, fmt.Errorf("--timeout %v: must be positive", c.timeout)
	}
	conn := dlq.Conn{Connection: sluice.Connection{Brokers: brokers}, Timeout: c.timeout}
	var err error
	if conn.SASL, err = c.sasl(); err != nil {
		return dlq.Conn{}, err
	}
	if conn.TLS, err = c.tlsConfig(); err != nil {
		return dlq.Conn{}, err
	}
	return conn, nil
}

func (c *connFlags) sasl() (sasl.Mechanism, error) {
	mech := strings.ToLower(c.saslMechanism)
	if mech == "" {
		if c.saslUser != "" || c.saslPassword != "" {
			return nil, fmt.Errorf("--sasl-user/--sasl-password need --sasl-mechanism (plain, scram-sha-256 or scram-sha-512)")
		}
		return nil, nil
	}
	if c.saslUser == "" || c.saslPassword == "" {
		return nil, fmt.Errorf("--sasl-mechanism %s needs --sasl-user and --sasl-password (or $SLUICE_SASL_USER and $SLUICE_SASL_PASSWORD)", mech)
	}
	switch mech {
	case "plain":
		return plain.Auth{User: c.saslUser, Pass: c.saslPassword}.AsMechanism(), nil
	case "scram-sha-256":
		return scram.Auth{User: c.saslUser, Pass: c.saslPassword}.AsSha256Mechanism(), nil
	case "scram-sha-512":
		return scram.Auth{User: c.saslUser, Pass: c.saslPassword}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("--sasl-mechanism %q: want plain, scram-sha-256 or scram-sha-512", c.saslMechanism)
}

func (c *connFlags) tlsConfig() (*tls.Config, error) {
	if !c.tls && c.tlsCA == "" && c.tlsCert == "" && c.tlsKey == "" && !c.tlsInsecure {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.tlsInsecure} //nolint:gosec // opt-in flag for test clusters
	if c.tlsCA != "" {
		pem, err := os.ReadFile(c.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", c.tlsCA)
		}
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return nil, fmt.Errorf("--tls-cert and --tls-key go together")
	}
	if c.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			// The error names the files, never the key's bytes.
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
