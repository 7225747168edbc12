package consumer

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// notJoinedReport is how long the consumer waits, not joined, before it
// reports it, and how often it repeats the report.
const notJoinedReport = 10 * time.Second

// connWatch remembers the last failure to connect to a broker, so that a
// consumer that cannot join its group can say why.
type connWatch struct {
	mu       sync.Mutex
	err      error
	reported time.Time
	// result, if set, is told of every connection attempt.
	result func(broker string, connected bool, err error)
}

var _ kgo.HookBrokerConnect = (*connWatch)(nil)

// OnBrokerConnect implements kgo.HookBrokerConnect.
func (w *connWatch) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, conn net.Conn, err error) {
	broker := net.JoinHostPort(meta.Host, fmt.Sprint(meta.Port))
	w.mu.Lock()
	if err != nil {
		w.err = fmt.Errorf("connect to %s: %w", broker, err)
	} else {
		w.err = nil
	}
	result := w.result
	w.mu.Unlock()
	if result != nil {
		result(broker, conn != nil, err)
	}
}

func (w *connWatch) last() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// reportNotJoined logs, at most every notJoinedReport, that the consumer
// has not joined its group since started, with the last connection error.
func (c *Consumer) reportNotJoined(started, now time.Time) {
	if c.joined.Load() || now.Sub(started) < notJoinedReport {
		return
	}
	w := c.conns
	w.mu.Lock()
	due := now.Sub(w.reported) >= notJoinedReport
	if due {
		w.reported = now
	}
	err := w.err
	w.mu.Unlock()
	if !due {
		return
	}
	if err != nil {
		c.log.Warn("not joined the group yet: cannot reach the brokers; retrying", "after", now.Sub(started).Round(time.Second),
			"brokers", c.cfg.conn.Brokers, "err", err)
		return
	}
	c.log.Warn("not joined the group yet; retrying", "after", now.Sub(started).Round(time.Second), "brokers", c.cfg.conn.Brokers)
}
