package consumer_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/internal/kafkatest"
	"github.com/sluice-go/sluice/pipeline"
)

// authHook records the authentication failures it is told of.
type authHook struct {
	mu    sync.Mutex
	kinds map[string]int
}

func (h *authHook) OnAuthError(err *consumer.AuthError) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.kinds[err.Kind]++
}

func (h *authHook) count(kind string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.kinds[kind]
}

// selfSigned returns a TLS server config for 127.0.0.1 signed by a CA of its
// own, and that CA's pool.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sluice test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

// Authentication and authorization failures once retried forever under
// the name "cannot reach the brokers ... EOF". They are now named as what
// they are, and end Run after AuthFailures in a row.
func TestAuthFailuresEndRunNamed(t *testing.T) {
	serverTLS, _ := selfSigned(t)
	_, otherCA := selfSigned(t)
	sasl := []kfake.Opt{kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "admin", "admin"), kfake.Superuser("PLAIN", "plain", "plain")}
	allow := func(rt kmsg.ACLResourceType, name string) kfake.ACL {
		return kfake.ACL{Resource: rt, Name: name, Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: kmsg.ACLOperationAll, Allow: true}
	}
	tests := []struct {
		give     string
		broker   []kfake.Opt
		conn     func(*sluice.Connection) // sets the client's TLS or SASL
		wantKind string
	}{
		{give: "wrong SCRAM password", broker: sasl,
			conn: func(c *sluice.Connection) { c.SASL = scram.Auth{User: "admin", Pass: "wrong"}.AsSha256Mechanism() }, wantKind: consumer.AuthSASL},
		{give: "wrong PLAIN password", broker: sasl,
			conn: func(c *sluice.Connection) { c.SASL = plain.Auth{User: "plain", Pass: "wrong"}.AsMechanism() }, wantKind: consumer.AuthSASL},
		{give: "unknown certificate authority", broker: []kfake.Opt{kfake.TLS(serverTLS)},
			conn: func(c *sluice.Connection) { c.TLS = &tls.Config{RootCAs: otherCA} }, wantKind: consumer.AuthTLS},
		{give: "topic denied by ACL",
			broker: append(sasl[:len(sasl):len(sasl)], kfake.EnableACLs(), kfake.User("PLAIN", "u", "p", allow(kmsg.ACLResourceTypeGroup, "auth"))),
			conn:   func(c *sluice.Connection) { c.SASL = plain.Auth{User: "u", Pass: "p"}.AsMechanism() }, wantKind: consumer.AuthTopic},
		{give: "group denied by ACL",
			broker: append(sasl[:len(sasl):len(sasl)], kfake.EnableACLs(), kfake.User("PLAIN", "u", "p", allow(kmsg.ACLResourceTypeTopic, "auth"))),
			conn:   func(c *sluice.Connection) { c.SASL = plain.Auth{User: "u", Pass: "p"}.AsMechanism() }, wantKind: consumer.AuthGroup},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			kc := kafkatest.New(t, kafkatest.Topic("auth", 1), kafkatest.Kfake(tt.broker...))
			hook := &authHook{kinds: map[string]int{}}
			h := &workHandler{fn: func(context.Context, *pipeline.Record) error { return nil }}
			opts := append(baseOpts(kc, "auth", h, "auth"), consumer.Hooks(hook), consumer.AuthFailures(3), consumer.CloseGrace(time.Second))
			conn := sluice.Connection{Brokers: kc.Addrs}
			tt.conn(&conn)
			c, err := consumer.New(append(opts, consumer.Connection(conn))...)
			if err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() { errc <- c.Run(context.Background()) }()
			var runErr error
			select {
			case runErr = <-errc:
			case <-time.After(60 * time.Second):
				c.Stop()
				t.Fatalf("Run did not end 60s into a %s failure", tt.wantKind)
			}
			<-c.Done()
			var ae *consumer.AuthError
			if !errors.Is(runErr, consumer.ErrAuth) || !errors.As(runErr, &ae) || ae.Kind != tt.wantKind {
				t.Fatalf("Run: %v, want an *AuthError of kind %s", runErr, tt.wantKind)
			}
			if strings.Contains(runErr.Error(), "cannot reach") {
				t.Fatalf("the error reads as a network problem: %v", runErr)
			}
			if hook.count(tt.wantKind) < 3 {
				t.Fatalf("HookAuthError told of %d %s failures, want at least 3", hook.count(tt.wantKind), tt.wantKind)
			}
		})
	}
}

// With AuthFailures negative the consumer keeps trying, and says why in
// Status until it stops.
func TestAuthFailuresForeverKeepRetryingAndShowInStatus(t *testing.T) {
	kc := kafkatest.New(t, kafkatest.Topic("auth", 1), kafkatest.Kfake(kfake.EnableSASL(), kfake.Superuser("PLAIN", "plain", "plain")))
	h := &workHandler{fn: func(context.Context, *pipeline.Record) error { return nil }}
	hook := &authHook{kinds: map[string]int{}}
	c, stop := runConsumer(t, append(baseOpts(kc, "auth", h, "auth"), consumer.Connection(sluice.Connection{Brokers: kc.Addrs, SASL: plain.Auth{User: "plain", Pass: "wrong"}.AsMechanism()}),
		consumer.AuthFailures(-1), consumer.Hooks(hook), consumer.CloseGrace(time.Second))...)
	kafkatest.Eventually(t, 30*time.Second, func() bool { return hook.count(consumer.AuthSASL) >= 6 },
		"fewer than 6 SASL failures seen: %d", kafkatest.Lazy(func() any { return hook.count(consumer.AuthSASL) }))
	st := c.Status()
	var ae *consumer.AuthError
	if !st.Running || !errors.As(st.AuthErr, &ae) || ae.Kind != consumer.AuthSASL {
		t.Fatalf("status running %v, auth error %v: want running with a SASL failure", st.Running, st.AuthErr)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
