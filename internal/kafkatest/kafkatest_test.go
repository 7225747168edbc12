package kafkatest

import (
	"testing"
	"time"
)

func TestGroupTimeouts(t *testing.T) {
	tests := []struct {
		give               time.Duration
		session, rebalance time.Duration
	}{
		{give: 0, session: 2 * time.Second, rebalance: time.Second},
		{give: 2 * time.Second, session: 4500 * time.Millisecond, rebalance: 3 * time.Second},
		{give: 30 * time.Second, session: 67500 * time.Millisecond, rebalance: 45 * time.Second},
	}
	for _, tt := range tests {
		session, rebalance := GroupTimeouts(tt.give)
		if session != tt.session || rebalance != tt.rebalance {
			t.Errorf("GroupTimeouts(%v) = %v, %v; want %v, %v", tt.give, session, rebalance, tt.session, tt.rebalance)
		}
		if rebalance <= tt.give || session <= rebalance {
			t.Errorf("GroupTimeouts(%v) = %v, %v: want drain < rebalance < session", tt.give, session, rebalance)
		}
	}
}
