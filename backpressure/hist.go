package backpressure

import (
	"math/bits"
	"time"
)

// hist is a log-linear histogram of durations (nanoseconds): values below
// 2^histSub are exact, larger ones fall into one of 2^histSub sub-buckets per
// power of two, a relative resolution of about 3%. Adding is O(1) and a
// window's quantile scans only the buckets it touched, so a window of a
// million samples costs no more memory than one of fifty.
type hist struct {
	counts [64 << histSub]uint32
	n      int
	lo, hi int // touched bucket range, valid when n > 0
}

const histSub = 5

func histBucket(v uint64) int {
	if v < 1<<histSub {
		return int(v)
	}
	e := bits.Len64(v) - histSub - 1
	return (e+1)<<histSub | int(v>>uint(e)&(1<<histSub-1))
}

// histValue is the midpoint of bucket b.
func histValue(b int) float64 {
	if b < 1<<histSub {
		return float64(b)
	}
	e := uint(b>>histSub - 1)
	m := uint64(b&(1<<histSub-1) | 1<<histSub)
	return (float64(m<<e) + float64((m+1)<<e)) / 2
}

func (h *hist) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	b := histBucket(uint64(d))
	if h.n == 0 || b < h.lo {
		h.lo = b
	}
	if h.n == 0 || b > h.hi {
		h.hi = b
	}
	h.counts[b]++
	h.n++
}

// quantile returns the q-quantile (0 < q < 1) in nanoseconds, 0 if empty.
func (h *hist) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := uint32(q*float64(h.n)) + 1
	if int(rank) > h.n {
		rank = uint32(h.n)
	}
	var seen uint32
	for b := h.lo; b <= h.hi; b++ {
		seen += h.counts[b]
		if seen >= rank {
			return histValue(b)
		}
	}
	return histValue(h.hi)
}

// merge adds o's counts to h.
func (h *hist) merge(o *hist) {
	if o.n == 0 {
		return
	}
	for b := o.lo; b <= o.hi; b++ {
		h.counts[b] += o.counts[b]
	}
	if h.n == 0 || o.lo < h.lo {
		h.lo = o.lo
	}
	if h.n == 0 || o.hi > h.hi {
		h.hi = o.hi
	}
	h.n += o.n
}

func (h *hist) reset() {
	if h.n > 0 {
		clear(h.counts[h.lo : h.hi+1])
	}
	h.n = 0
}
