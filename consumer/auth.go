package consumer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// ErrAuth is wrapped by every *AuthError.
var ErrAuth = errors.New("consumer: authentication or authorization failed")

// The kinds of AuthError.
const (
	// AuthSASL is a SASL failure: wrong credentials or mechanism. The
	// broker answers SASL_AUTHENTICATION_FAILED, or closes the connection
	// during the SASL exchange (Kafka brokers and kfake do both).
	AuthSASL = "sasl"
	// AuthTLS is a TLS handshake or certificate failure: an unknown
	// certificate authority, a name mismatch, a broker that does not
	// speak TLS, or a client certificate the broker refused.
	AuthTLS = "tls"
	// AuthGroup is GROUP_AUTHORIZATION_FAILED: no ACL lets the principal
	// use the consumer group.
	AuthGroup = "group-authorization"
	// AuthTopic is TOPIC_AUTHORIZATION_FAILED: no ACL lets the principal
	// read the topic.
	AuthTopic = "topic-authorization"
)

// AuthError is an authentication or authorization failure. Such failures
// do not heal by retrying: the consumer names them in its log (ERROR), in
// Status.AuthErr (and so in /readyz), and to HookAuthError, and Run ends
// with one after AuthFailures of them in a row (default 5).
type AuthError struct {
	// Kind is AuthSASL, AuthTLS, AuthGroup or AuthTopic.
	Kind string
	// Broker is the broker's address, for AuthSASL and AuthTLS.
	Broker string
	// Topic is the topic denied, for AuthTopic.
	Topic string
	// Err is the error franz-go reported.
	Err error
}

func (e *AuthError) Error() string {
	switch e.Kind {
	case AuthSASL:
		return fmt.Sprintf("SASL authentication with %s failed (check the user, password and mechanism): %v", e.Broker, e.Err)
	case AuthTLS:
		return fmt.Sprintf("TLS with %s failed (check the CA, the broker's name and the client certificate): %v", e.Broker, e.Err)
	case AuthGroup:
		return fmt.Sprintf("not authorized to use the consumer group (check its ACLs): %v", e.Err)
	default:
		return fmt.Sprintf("not authorized to read topic %q (check its ACLs): %v", e.Topic, e.Err)
	}
}

// Unwrap ties the error to ErrAuth and to franz-go's error.
func (e *AuthError) Unwrap() []error { return []error{ErrAuth, e.Err} }

// key identifies what a success must come from to clear the failure.
func (e *AuthError) key() string { return e.Kind + "/" + e.Topic }

// classifyConnect turns a failed broker connection into an AuthError when
// it is one. connected says the TCP (and TLS) connection was made and the
// failure came after it; sasl says a SASL mechanism is configured.
func classifyConnect(broker string, connected, sasl bool, err error) *AuthError {
	var (
		unknownCA  x509.UnknownAuthorityError
		hostname   x509.HostnameError
		invalid    x509.CertificateInvalidError
		verify     *tls.CertificateVerificationError
		header     tls.RecordHeaderError
		alert      tls.AlertError
		kafkaError *kerr.Error
	)
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid),
		errors.As(err, &verify), errors.As(err, &header), errors.As(err, &alert):
		return &AuthError{Kind: AuthTLS, Broker: broker, Err: err}
	case errors.As(err, &kafkaError) && (kafkaError == kerr.SaslAuthenticationFailed ||
		kafkaError == kerr.UnsupportedSaslMechanism || kafkaError == kerr.IllegalSaslState):
		return &AuthError{Kind: AuthSASL, Broker: broker, Err: err}
	case sasl && connected && closedByPeer(err):
		return &AuthError{Kind: AuthSASL, Broker: broker, Err: fmt.Errorf("the broker closed the connection during authentication: %w", err)}
	}
	return nil
}

// closedByPeer reports whether err says the other side closed the
// connection.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

// classifyFetch turns a fetch or group error into an AuthError when it is
// one.
func classifyFetch(topic string, err error) *AuthError {
	switch {
	case errors.Is(err, kerr.GroupAuthorizationFailed):
		return &AuthError{Kind: AuthGroup, Err: err}
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		return &AuthError{Kind: AuthTopic, Topic: topic, Err: err}
	}
	return nil
}

// authWatch counts authentication and authorization failures in a row, per
// kind (and topic), until a success of the same kind clears them: a
// connection for SASL and TLS, a join for the group, a fetch of the topic.
type authWatch struct {
	limit int // failures in a row that end Run; < 0: never
	any   atomic.Bool
	mu    sync.Mutex
	seq   int
	fails map[string]authFails
}

type authFails struct {
	n   int
	seq int // when the last one happened
	err *AuthError
}

func newAuthWatch(limit int) *authWatch {
	return &authWatch{limit: limit, fails: map[string]authFails{}}
}

// failed counts e and reports whether the limit was reached.
func (w *authWatch) failed(e *AuthError) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seq++
	f := w.fails[e.key()]
	f.n++
	f.seq, f.err = w.seq, e
	w.fails[e.key()] = f
	w.any.Store(true)
	return w.limit >= 0 && f.n >= w.limit
}

// ok clears the failures that a success of one of these kinds (and, for
// AuthTopic, of this topic) answers.
func (w *authWatch) ok(topic string, kinds ...string) {
	if !w.any.Load() {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range kinds {
		delete(w.fails, (&AuthError{Kind: k, Topic: topic}).key())
	}
	w.any.Store(len(w.fails) > 0)
}

// lastErr is the latest failure not yet cleared by a success.
func (w *authWatch) lastErr() error {
	if !w.any.Load() {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var last authFails
	for _, f := range w.fails {
		if f.seq > last.seq {
			last = f
		}
	}
	if last.err == nil {
		return nil
	}
	return last.err
}

// authFailed names an authentication or authorization failure: it logs it
// (at most every fetchErrorEvery per kind), tells the hooks, and stops the
// consumer once the failures in a row reach AuthFailures.
func (c *Consumer) authFailed(e *AuthError) {
	each(c.hooks, func(h HookAuthError) { h.OnAuthError(e) })
	if c.auth.failed(e) {
		c.fail(fmt.Errorf("%w (%d in a row; AuthFailures)", e, c.cfg.authFailures))
		return
	}
	if c.errLog.due("auth/"+e.key(), time.Now()) {
		c.log.Error("authentication or authorization failed; retrying", "kind", e.Kind, "err", e)
	}
}
