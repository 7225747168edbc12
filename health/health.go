package health

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/pipeline"
)

// StatusSource reports a consumer's health; *consumer.Consumer is one.
type StatusSource interface {
	Status() consumer.Status
}

var _ StatusSource = (*consumer.Consumer)(nil)

// Liveness is the /healthz handler: it answers 200 "ok" while the process
// can serve HTTP. It deliberately checks nothing else: a failing liveness
// probe makes Kubernetes restart the container, and no state of the
// consumer (a sink that is down, a stall, a rebalance) is fixed by a
// restart.
func Liveness() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintln(w, "ok")
	})
}

// ReadyOpt configures Readiness.
type ReadyOpt interface{ apply(*readyCfg) }

type readyOpt func(*readyCfg)

func (f readyOpt) apply(c *readyCfg) { f(c) }

type readyCfg struct{ stalledUnready bool }

// StalledUnready makes stalled partitions fail readiness. Default: stalled
// partitions are listed in the body but the consumer stays ready, because a
// stall is nearly always a downstream outage or one stuck record, which
// neither taking the pod out of a Service nor holding up a rollout fixes;
// alert on sluice_partitions_stalled instead. Use it when readiness gates
// something a stalled consumer must not be part of.
func StalledUnready() ReadyOpt { return readyOpt(func(c *readyCfg) { c.stalledUnready = true }) }

// Report is the body of /readyz in JSON, and the verdict behind it.
type Report struct {
	// Ready is the verdict: the consumer is running, has joined its group
	// (with or without partitions), and has not failed (and, with
	// StalledUnready, has no stalled partition).
	Ready bool `json:"ready"`
	// Reason says why the consumer is not ready; empty when it is.
	Reason string `json:"reason,omitempty"`

	Running   bool     `json:"running"`
	Joined    bool     `json:"joined"`
	Assigned  []string `json:"assigned"`
	Paused    []string `json:"paused"`
	Stalled   []string `json:"stalled"`
	Unsettled int64    `json:"unsettled"`
	Buffered  int64    `json:"buffered"`
	Error     string   `json:"error,omitempty"`
	// ConnectError is the last failure to connect to a broker, shown when
	// the consumer has not joined: usually why it cannot.
	ConnectError string `json:"connect_error,omitempty"`
	// AuthError is the latest authentication or authorization failure
	// that nothing has cleared since (wrong credentials, a certificate, a
	// denying ACL).
	AuthError string `json:"auth_error,omitempty"`
	// StalledUnready says whether stalled partitions count against
	// readiness (the StalledUnready option).
	StalledUnready bool `json:"stalled_unready"`
}

// Check turns a status into a readiness verdict; Readiness serves it.
func Check(st consumer.Status, opts ...ReadyOpt) Report {
	var c readyCfg
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	r := Report{
		Running:   st.Running,
		Joined:    st.Joined,
		Assigned:  names(st.Assigned),
		Paused:    names(st.Paused),
		Stalled:   names(st.Stalled),
		Unsettled: st.Unsettled,
		Buffered:  st.Buffered,

		StalledUnready: c.stalledUnready,
	}
	if st.Err != nil {
		r.Error = st.Err.Error()
	}
	if st.ConnectErr != nil && !st.Joined {
		r.ConnectError = st.ConnectErr.Error()
	}
	if st.AuthErr != nil {
		r.AuthError = st.AuthErr.Error()
	}
	switch {
	case st.Err != nil:
		r.Reason = "the consumer failed"
	case st.AuthErr != nil:
		r.Reason = "authentication or authorization failed"
	case !st.Running:
		r.Reason = "the consumer is not running"
	case !st.Joined:
		r.Reason = "the consumer has not joined its group yet"
	case c.stalledUnready && len(st.Stalled) > 0:
		r.Reason = "partitions are stalled"
	default:
		r.Ready = true
	}
	return r
}

func names(tps []pipeline.TopicPartition) []string {
	s := make([]string, len(tps))
	for i, tp := range tps {
		s[i] = tp.String()
	}
	return s
}

// Readiness is the /readyz handler: 200 when Check says ready, 503
// otherwise. The body is plain text a human can read, or the Report as JSON
// when the request asks for it (Accept: application/json, or ?format=json).
func Readiness(src StatusSource, opts ...ReadyOpt) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := Check(src.Status(), opts...)
		code := http.StatusOK
		if !rep.Ready {
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Cache-Control", "no-store")
		if wantsJSON(r) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(rep)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(rep.Text()))
	})
}

func wantsJSON(r *http.Request) bool {
	return r.URL.Query().Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json")
}

// Text renders the report as the plain-text body of /readyz:
//
//	ready
//	running: true, joined: true
//	assigned (2): orders/0 orders/1
//	paused (0):
//	stalled (1): orders/1 (does not affect readiness)
//	unsettled: 12, buffered: 40
func (r Report) Text() string {
	var b strings.Builder
	if r.Ready {
		b.WriteString("ready\n")
	} else {
		fmt.Fprintf(&b, "not ready: %s\n", r.Reason)
	}
	fmt.Fprintf(&b, "running: %t, joined: %t\n", r.Running, r.Joined)
	list := func(name string, tps []string, note string) {
		fmt.Fprintf(&b, "%s (%d):", name, len(tps))
		for _, tp := range tps {
			b.WriteString(" " + tp)
		}
		if len(tps) > 0 && note != "" {
			b.WriteString(" " + note)
		}
		b.WriteByte('\n')
	}
	list("assigned", r.Assigned, "")
	list("paused", r.Paused, "")
	stallNote := "(does not affect readiness)"
	if r.StalledUnready {
		stallNote = ""
	}
	list("stalled", r.Stalled, stallNote)
	fmt.Fprintf(&b, "unsettled: %d, buffered: %d\n", r.Unsettled, r.Buffered)
	if r.Error != "" {
		fmt.Fprintf(&b, "error: %s\n", r.Error)
	}
	if r.ConnectError != "" {
		fmt.Fprintf(&b, "broker connection: %s\n", r.ConnectError)
	}
	if r.AuthError != "" {
		fmt.Fprintf(&b, "authentication: %s\n", r.AuthError)
	}
	return b.String()
}
