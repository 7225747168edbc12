package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluice-go/sluice/internal/devbroker"
)

func newDevCmd() *cobra.Command {
	dev := &cobra.Command{
		Use:   "dev",
		Short: "Development tools",
	}
	dev.AddCommand(newDevBrokerCmd())
	return dev
}

// devTLSFlags are the TLS flags of `sluice dev broker`.
type devTLSFlags struct {
	selfSigned bool
	cert, key  string
	clientCA   string
}

// config returns the listener's TLS configuration (nil: plaintext) and,
// for a self-signed certificate, its PEM encoding.
func (f *devTLSFlags) config() (*tls.Config, []byte, error) {
	if !f.selfSigned && f.cert == "" && f.key == "" && f.clientCA == "" {
		return nil, nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	var certPEM []byte
	switch {
	case (f.cert == "") != (f.key == ""):
		return nil, nil, fmt.Errorf("--tls-cert and --tls-key go together")
	case f.cert != "" && f.selfSigned:
		return nil, nil, fmt.Errorf("--tls makes a self-signed certificate; with --tls-cert and --tls-key leave it out")
	case f.cert != "":
		cert, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	default:
		c, err := devbroker.SelfSigned()
		if err != nil {
			return nil, nil, err
		}
		tc.Certificates, certPEM = []tls.Certificate{c.Certificate}, c.PEM
	}
	if f.clientCA != "" {
		pem, err := os.ReadFile(f.clientCA)
		if err != nil {
			return nil, nil, fmt.Errorf("--tls-client-ca: %w", err)
		}
		tc.ClientCAs = x509.NewCertPool()
		if !tc.ClientCAs.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("--tls-client-ca %s: no PEM certificate in it", f.clientCA)
		}
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, certPEM, nil
}

// writeCert writes a self-signed certificate where clients can find it:
// beside the data in dataDir, else in a temporary file that remove
// deletes.
func writeCert(pem []byte, dataDir string) (path string, remove func(), err error) {
	if dataDir != "" {
		path = filepath.Join(dataDir, "tls-cert.pem")
		if err := os.WriteFile(path, pem, 0o644); err != nil {
			return "", nil, fmt.Errorf("--tls: %w", err)
		}
		return path, func() {}, nil
	}
	f, err := os.CreateTemp("", "sluice-dev-broker-*.pem")
	if err != nil {
		return "", nil, fmt.Errorf("--tls: %w", err)
	}
	_, err = f.Write(pem)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", nil, fmt.Errorf("--tls: %w", err)
	}
	return f.Name(), func() { os.Remove(f.Name()) }, nil
}

func newDevBrokerCmd() *cobra.Command {
	var (
		cfg     devbroker.Config
		topics  string
		control string
		sasl    devbroker.SASL
		tlsF    devTLSFlags
	)
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run an embedded Kafka broker (franz-go kfake) on 127.0.0.1",
		Long: fmt.Sprintf(`Run an embedded Kafka-protocol broker on 127.0.0.1, with no Docker and no
Kafka install. It speaks the real protocol, so any Kafka client (kcat, the Java
client, franz-go) can use it. It stops on SIGINT or SIGTERM (a second one
quits at once). With --data-dir its topics, records and committed offsets
survive a restart; the directory is locked while the broker runs, and a
damaged segment is refused rather than silently truncated.

A topic has at most %d partitions, and --topics creates at most %d in all.

To try client settings locally, --sasl-mechanism with --sasl-user and
--sasl-password makes every client authenticate as that user, and --tls
serves TLS with a self-signed certificate for 127.0.0.1 and localhost (its
file is printed at start: clients trust it with --tls-ca), or --tls-cert and
--tls-key with yours; --tls-client-ca requires client certificates signed by
that CA.`, devbroker.MaxPartitions, devbroker.MaxPartitions),
		Example: `  sluice dev broker --topics orders:12,orders.dlq:12
  sluice dev broker --port 19092 --data-dir /tmp/sluice-data
  sluice dev broker --sasl-mechanism scram-sha-256 --sasl-user alice --sasl-password secret --tls`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{quietInterrupt: "yes"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.DefaultPartitions < 1 {
				return fmt.Errorf("--default-partitions %d: must be at least 1", cfg.DefaultPartitions)
			}
			var err error
			if cfg.Topics, err = devbroker.ParseTopics(topics); err != nil {
				return err
			}
			if control != "" {
				if err := devbroker.CheckControlAddr(control); err != nil {
					return err
				}
			}
			if sasl.Mechanism != "" || sasl.User != "" || sasl.Password != "" {
				if sasl.Mechanism == "" {
					return fmt.Errorf("--sasl-user/--sasl-password need --sasl-mechanism (plain, scram-sha-256 or scram-sha-512)")
				}
				cfg.SASL = &sasl
			}
			var certPEM []byte
			if cfg.TLS, certPEM, err = tlsF.config(); err != nil {
				return err
			}
			c, err := devbroker.StartContext(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer c.Close()
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			for _, r := range c.Recovered {
				fmt.Fprintf(errOut, "sluice dev broker: --data-dir: %s\n", r)
			}
			// Tools and tests read the first line (and the second with
			// --control): keep them first.
			fmt.Fprintf(out, "sluice dev broker listening on %s\n", c.ListenAddrs()[0])
			if control != "" {
				srv, err := devbroker.ServeControl(c.Cluster, control)
				if err != nil {
					return err
				}
				defer srv.Close()
				fmt.Fprintf(out, "sluice dev broker fault control on %s\n", srv.URL())
			}
			for _, t := range c.Created {
				fmt.Fprintf(out, "sluice dev broker created topic %s with %d %s\n", t.Name, t.Partitions, plural(int(t.Partitions), "partition", "partitions"))
			}
			if cfg.SASL != nil {
				fmt.Fprintf(out, "sluice dev broker requires SASL %s as user %s\n", strings.ToUpper(sasl.Mechanism), sasl.User)
			}
			if certPEM != nil {
				path, remove, err := writeCert(certPEM, cfg.DataDir)
				if err != nil {
					return err
				}
				defer remove()
				fmt.Fprintf(out, "sluice dev broker serves TLS; clients trust its certificate with --tls-ca %s\n", path)
			} else if cfg.TLS != nil {
				fmt.Fprintln(out, "sluice dev broker serves TLS with --tls-cert")
			}
			<-cmd.Context().Done()
			fmt.Fprintln(out, "sluice dev broker stopping")
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Port, "port", 9092, "TCP port on 127.0.0.1 (0 picks a free one)")
	f.StringVar(&topics, "topics", "", "topics to create, as `name:partitions,...` (a name alone gets --default-partitions)")
	f.BoolVar(&cfg.AutoCreateTopics, "auto-create-topics", true, "create topics that clients ask for")
	f.IntVar(&cfg.DefaultPartitions, "default-partitions", 1, "partitions of auto-created topics and of --topics given without a count")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory that keeps the broker's data across restarts (default: memory only)")
	f.IntVar(&cfg.MaxMessageBytes, "max-message-bytes", 0, "broker message.max.bytes (0 keeps kfake's default, about 1 MiB)")
	f.StringVar(&sasl.Mechanism, "sasl-mechanism", "", "require SASL: plain, scram-sha-256 or scram-sha-512")
	f.StringVar(&sasl.User, "sasl-user", "", "the SASL user clients authenticate as (a superuser)")
	f.StringVar(&sasl.Password, "sasl-password", "", "the SASL user's password")
	f.BoolVar(&tlsF.selfSigned, "tls", false, "serve TLS with a self-signed certificate for 127.0.0.1 and localhost")
	f.StringVar(&tlsF.cert, "tls-cert", "", "serve TLS with this PEM certificate `file` (with --tls-key)")
	f.StringVar(&tlsF.key, "tls-key", "", "PEM private key `file` of --tls-cert")
	f.StringVar(&tlsF.clientCA, "tls-client-ca", "", "require client certificates signed by the CAs in this PEM `file` (implies TLS)")
	// --control is for reliability tests of clients in other processes: an
	// HTTP API on a loopback address that injects broker-side errors
	// (devbroker.Control). Hidden because it is no user feature.
	f.StringVar(&control, "control", "", "serve the fault-injection API on this loopback address (tests only)")
	_ = f.MarkHidden("control")
	return cmd
}

// plural picks the word for n.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
