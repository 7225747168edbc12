package consumer

import (
	"math/rand/v2"
	"testing"
)

// TestTrackerWatermarkProperty settles random subsets in random order, over
// many seeds, with and without gaps in the offsets, and checks after every
// step that settling an offset never added reports false, and that the
// watermark equals the lowest unsettled offset (or the offset after the last
// record once all settled), and that the tracker holds at most about twice
// the unsettled records.
func TestTrackerWatermarkProperty(t *testing.T) {
	for seed := uint64(0); seed < 200; seed++ {
		rng := rand.New(rand.NewPCG(seed, seed*7919))
		tr := newTracker()
		var offsets []int64
		off := int64(rng.IntN(1000))
		n := 1 + rng.IntN(3000)
		maxGap := int(seed % 4) // gaps: compaction, transaction markers; none for every fourth seed
		for range n {
			off += 1 + int64(rng.IntN(maxGap+1))
			offsets = append(offsets, off)
		}
		// Add in batches, settling a random number in random order in between.
		unsettled := map[int64]bool{}
		epochOf := map[int64]int32{}
		added := 0
		for added < len(offsets) || len(unsettled) > 0 {
			if added < len(offsets) && (len(unsettled) == 0 || rng.IntN(3) > 0) {
				k := min(len(offsets)-added, 1+rng.IntN(64))
				for _, o := range offsets[added : added+k] {
					epoch := int32(o / 500) // epochs rise with offsets
					tr.add(o, epoch, 10)
					unsettled[o] = true
					epochOf[o] = epoch
				}
				added += k
			}
			for _, never := range []int64{offsets[0] - 1, offsets[added-1] + 1} {
				if _, ok := tr.settle(never); ok {
					t.Fatalf("seed %d: settle(%d) of an offset never added reported true", seed, never)
				}
			}
			for range rng.IntN(48) {
				if len(unsettled) == 0 {
					break
				}
				var pick int64
				for o := range unsettled { // map order is random enough
					pick = o
					break
				}
				if _, ok := tr.settle(pick); !ok {
					t.Fatalf("seed %d: settle(%d) of an unsettled record reported false", seed, pick)
				}
				delete(unsettled, pick)
				if _, ok := tr.settle(pick); ok {
					t.Fatalf("seed %d: settling %d twice reported true", seed, pick)
				}
			}
			wm, epoch, ok := tr.watermark()
			if !ok {
				t.Fatalf("seed %d: no watermark after adding records", seed)
			}
			want, wantEpoch := offsets[added-1]+1, epochOf[offsets[added-1]]
			for i, o := range offsets[:added] {
				if unsettled[o] {
					want, wantEpoch = o, int32(-1)
					if i > 0 {
						wantEpoch = epochOf[offsets[i-1]]
					}
					break
				}
			}
			if wm != want || epoch != wantEpoch {
				t.Fatalf("seed %d: watermark %d epoch %d, want %d epoch %d", seed, wm, epoch, want, wantEpoch)
			}
			if tr.unsettled != len(unsettled) || tr.unsettledBytes != int64(10*len(unsettled)) {
				t.Fatalf("seed %d: unsettled %d/%dB, want %d", seed, tr.unsettled, tr.unsettledBytes, len(unsettled))
			}
			if limit := 2*len(unsettled) + 64; tr.tracked() > limit {
				t.Fatalf("seed %d: tracking %d entries for %d unsettled records", seed, tr.tracked(), len(unsettled))
			}
		}
		if wm, _, _ := tr.watermark(); wm != offsets[len(offsets)-1]+1 {
			t.Fatalf("seed %d: final watermark %d, want end offset %d", seed, wm, offsets[len(offsets)-1]+1)
		}
	}
}

// TestTrackerMemoryFollowsInFlight holds one record while a million behind it
// settle: tracking memory must stay bounded by the in-flight count, not grow
// with the offset range.
func TestTrackerMemoryFollowsInFlight(t *testing.T) {
	tr := newTracker()
	tr.add(0, 0, 1)
	peak := 0
	for o := int64(1); o <= 1_000_000; o++ {
		tr.add(o, 0, 1)
		tr.settle(o)
		peak = max(peak, tr.tracked())
	}
	if peak > 130 {
		t.Fatalf("tracked up to %d entries with one record in flight", peak)
	}
	if wm, _, _ := tr.watermark(); wm != 0 {
		t.Fatalf("watermark %d passed the unsettled record at 0", wm)
	}
	tr.settle(0)
	if wm, _, _ := tr.watermark(); wm != 1_000_001 {
		t.Fatalf("watermark %d after all settled, want 1000001", wm)
	}
}

func TestTrackerEmpty(t *testing.T) {
	tr := newTracker()
	if _, _, ok := tr.watermark(); ok {
		t.Fatal("watermark of an empty tracker reported ok")
	}
	if _, ok := tr.settle(5); ok {
		t.Fatal("settling an unknown offset reported true")
	}
}
