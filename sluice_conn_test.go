package sluice_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/sluice-go/sluice"
)

func TestConnectionCheck(t *testing.T) {
	tests := []struct {
		name      string
		give      sluice.Connection
		wantField string
	}{
		{"ok", sluice.Connection{Brokers: []string{"k:9092"}}, ""},
		{"no broker", sluice.Connection{}, "Brokers"},
		{"empty address", sluice.Connection{Brokers: []string{"k:9092", " "}}, "Brokers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Check("dlq")
			var ce *sluice.ConfigError
			switch {
			case tt.wantField == "" && err != nil:
				t.Fatalf("Check: %v, want nil", err)
			case tt.wantField != "" && (!errors.As(err, &ce) || !errors.Is(err, sluice.ErrConfig) ||
				ce.Package != "dlq" || ce.Option != "Connection" || ce.Field != tt.wantField):
				t.Fatalf("Check: %v, want a ConfigError of dlq naming Connection.%s", err, tt.wantField)
			}
		})
	}
}

func TestConnectionClientOpts(t *testing.T) {
	conn := sluice.Connection{
		Brokers: []string{"k1:9092", "k2:9092"},
		TLS:     &tls.Config{ServerName: "kafka"},
		SASL:    plain.Auth{User: "u", Pass: "secret"}.AsMechanism(),
	}
	cl, err := kgo.NewClient(conn.ClientOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if got := cl.OptValue(kgo.ClientID); got != sluice.DefaultClientID {
		t.Errorf("client ID %v, want %q", got, sluice.DefaultClientID)
	}
	if got, _ := cl.OptValue(kgo.SeedBrokers).([]string); strings.Join(got, ",") != "k1:9092,k2:9092" {
		t.Errorf("seed brokers %v", got)
	}
	if got, _ := cl.OptValue(kgo.DialTLSConfig).(*tls.Config); got == nil || got == conn.TLS || got.ServerName != "kafka" {
		t.Errorf("TLS config %v, want a clone of the connection's", got)
	}
	if got, _ := cl.OptValue(kgo.SASL).([]sasl.Mechanism); len(got) != 1 || got[0].Name() != "PLAIN" {
		t.Errorf("SASL %v, want PLAIN", got)
	}
	conn.ClientID = "orders-svc"
	cl2, err := kgo.NewClient(conn.ClientOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	if got := cl2.OptValue(kgo.ClientID); got != "orders-svc" {
		t.Errorf("client ID %v, want orders-svc", got)
	}
}

// A Connection prints without its credentials, however it is formatted.
func TestConnectionPrintsNoSecret(t *testing.T) {
	conn := sluice.Connection{Brokers: []string{"k:9092"}, SASL: plain.Auth{User: "u", Pass: "hunter2"}.AsMechanism()}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(verb, conn); strings.Contains(s, "hunter2") {
			t.Errorf("%s prints the password: %s", verb, s)
		}
	}
}

func ExampleConnection() {
	conn := sluice.Connection{
		Brokers:  []string{"kafka-1:9093", "kafka-2:9093"},
		TLS:      &tls.Config{},
		SASL:     plain.Auth{User: "orders", Pass: "secret"}.AsMechanism(),
		ClientID: "orders-svc",
	}
	// The same value goes to consumer.Connection, dlq.Connection and
	// kafka.Connection; ClientOpts serves a client of your own.
	fmt.Println(conn)
	fmt.Println(conn.Check("consumer"))
	fmt.Println(sluice.Connection{}.Check("consumer"))
	// Output:
	// brokers=kafka-1:9093,kafka-2:9093 client_id=orders-svc tls sasl=PLAIN
	// <nil>
	// consumer: Connection.Brokers: at least one broker address (host:port) is required
}
