package handlers

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// HTTPError is a failed HTTP response as an error, made by CheckHTTP. The
// default classifier reads its StatusCode and RetryAfter methods.
type HTTPError struct {
	// Status is the response's status code.
	Status int
	// Hint is the response's Retry-After header as a duration; zero if it
	// was absent or unparsable.
	Hint time.Duration
}

// Error shows the status.
func (e *HTTPError) Error() string {
	return fmt.Sprintf("http status %d %s", e.Status, http.StatusText(e.Status))
}

// StatusCode returns Status.
func (e *HTTPError) StatusCode() int { return e.Status }

// RetryAfter returns Hint.
func (e *HTTPError) RetryAfter() time.Duration { return e.Hint }

// CheckHTTP returns nil for a response with a status below 400, else an
// *HTTPError carrying the status and the Retry-After header (delay-seconds or
// an HTTP date). It does not read or close the body.
func CheckHTTP(resp *http.Response) error {
	if resp.StatusCode < 400 {
		return nil
	}
	return &HTTPError{Status: resp.StatusCode, Hint: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
}

func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 || s > int64(maxHint/time.Second) {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 && d <= maxHint {
			return d
		}
	}
	return 0
}

// maxHint bounds a Retry-After header we believe: a day. Larger values are
// ignored as nonsense rather than blocking a key lane for longer.
const maxHint = 24 * time.Hour

// ClassifyHTTPStatus classifies an HTTP status code:
//
//   - below 400: not a failure (the zero Verdict);
//   - 408 Request Timeout, 425 Too Early: transient;
//   - 429 Too Many Requests: transient, overload;
//   - other 4xx: permanent (the request itself is wrong: retrying the same
//     record cannot help);
//   - 501 Not Implemented, 505 HTTP Version Not Supported, 511 Network
//     Authentication Required: permanent;
//   - 502, 503, 504: transient, overload;
//   - other 5xx: transient.
func ClassifyHTTPStatus(code int) Verdict {
	switch {
	case code < 400:
		return Verdict{}
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly:
		return Verdict{}
	case code == http.StatusTooManyRequests:
		return Verdict{Overload: true}
	case code < 500:
		return Verdict{Permanent: true}
	case code == http.StatusNotImplemented, code == http.StatusHTTPVersionNotSupported,
		code == http.StatusNetworkAuthenticationRequired:
		return Verdict{Permanent: true}
	case code == http.StatusBadGateway, code == http.StatusServiceUnavailable, code == http.StatusGatewayTimeout:
		return Verdict{Overload: true}
	default:
		return Verdict{}
	}
}

// SetBudgetHeader sets header on req to the time left before the deadline of
// req's context, in whole milliseconds rounded up (the form of Envoy's
// x-envoy-expected-rq-timeout-ms), so the downstream can stop working on a
// request nobody waits for any more. It reports false and sets nothing if the
// context has no deadline or it has passed.
func SetBudgetHeader(req *http.Request, header string) bool {
	d, ok := Remaining(req.Context())
	if !ok || d <= 0 {
		return false
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	req.Header.Set(header, strconv.FormatInt(int64(ms), 10))
	return true
}
