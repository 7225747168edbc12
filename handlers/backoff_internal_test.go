package handlers

import (
	"math"
	"testing"
	"time"
)

func testRetrier(t *testing.T, p RetryPolicy) *retrier {
	t.Helper()
	c, err := newCfg([]Opt{Seed(7)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := newRetrier(c, &p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestBackoffCeiling(t *testing.T) {
	tests := []struct {
		give RetryPolicy
		n    int
		want time.Duration
	}{
		{RetryPolicy{BaseDelay: 100 * time.Millisecond, MaxDelay: 10 * time.Second}, 1, 100 * time.Millisecond},
		{RetryPolicy{BaseDelay: 100 * time.Millisecond, MaxDelay: 10 * time.Second}, 2, 200 * time.Millisecond},
		{RetryPolicy{BaseDelay: 100 * time.Millisecond, MaxDelay: 10 * time.Second}, 7, 6400 * time.Millisecond},
		{RetryPolicy{BaseDelay: 100 * time.Millisecond, MaxDelay: 10 * time.Second}, 8, 10 * time.Second},
		{RetryPolicy{BaseDelay: 100 * time.Millisecond, MaxDelay: 10 * time.Second}, 63, 10 * time.Second},
		{RetryPolicy{BaseDelay: 100 * time.Millisecond, MaxDelay: 10 * time.Second}, 1000, 10 * time.Second},
		{RetryPolicy{BaseDelay: 1, MaxDelay: math.MaxInt64}, 62, 1 << 61},
		{RetryPolicy{BaseDelay: 1, MaxDelay: math.MaxInt64}, 64, math.MaxInt64},
		{RetryPolicy{BaseDelay: time.Second, MaxDelay: time.Second}, 5, time.Second},
	}
	for _, tt := range tests {
		r := testRetrier(t, tt.give)
		if got := r.ceiling(tt.n); got != tt.want {
			t.Errorf("base %v cap %v: ceiling(%d) = %v; want %v", tt.give.BaseDelay, tt.give.MaxDelay, tt.n, got, tt.want)
		}
	}
}

// TestBackoffBoundsAndJitterSpread checks full jitter: every draw lies in
// [0, ceiling], and the draws spread uniformly over it (each tenth of the
// range gets its share, the mean is near half the ceiling).
func TestBackoffBoundsAndJitterSpread(t *testing.T) {
	r := testRetrier(t, RetryPolicy{BaseDelay: 10 * time.Millisecond, MaxDelay: time.Second})
	const draws = 20000
	for n := 1; n <= 9; n++ {
		ceil := r.ceiling(n)
		var bins [10]int
		var sum float64
		for range draws {
			d := r.backoff(n)
			if d < 0 || d > ceil {
				t.Fatalf("backoff(%d) = %v outside [0, %v]", n, d, ceil)
			}
			sum += float64(d)
			bins[min(int(10*float64(d)/float64(ceil)), 9)]++
		}
		if mean := sum / draws / float64(ceil); mean < 0.48 || mean > 0.52 {
			t.Errorf("n=%d: mean/ceiling = %.3f; want about 0.5", n, mean)
		}
		for i, b := range bins {
			if b < draws/10*85/100 || b > draws/10*115/100 {
				t.Errorf("n=%d: bin %d holds %d of %d draws; want about %d", n, i, b, draws, draws/10)
			}
		}
	}
}
