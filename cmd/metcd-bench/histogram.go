package main

import (
	"math"
	"math/bits"
	"time"
)

// subBits is the number of mantissa bits a histogram bucket keeps: each
// power-of-two range of values is split into 2^subBits buckets, so a value
// is known to within 1/2^subBits (under 0.8%) of itself, HDR-histogram style.
// Values below 2^(subBits+1) nanoseconds are exact.
const subBits = 7

// numBuckets covers every non-negative int64.
const numBuckets = (64 - subBits) << subBits

// histogram records latencies in log-linear buckets: constant memory
// (about 58 KiB) however many samples, bounded relative error, exact count,
// min, max and mean. It is not safe for concurrent use: each worker keeps its
// own and they are merged at the end.
type histogram struct {
	counts   []uint64
	n        uint64
	min, max time.Duration
	sum      float64 // nanoseconds; float so it cannot overflow
}

func newHistogram() *histogram {
	return &histogram{counts: make([]uint64, numBuckets)}
}

// bucketIndex maps v >= 0 to its bucket; indices grow with v.
func bucketIndex(v int64) int {
	if v < 1<<(subBits+1) {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - subBits - 1 // keep the top subBits+1 bits
	m := v >> shift                              // in [2^subBits, 2^(subBits+1))
	return (shift+1)<<subBits + int(m-1<<subBits)
}

// bucketRange returns the smallest and largest value that land in bucket i.
func bucketRange(i int) (lo, hi int64) {
	if i < 1<<(subBits+1) {
		return int64(i), int64(i)
	}
	shift := i>>subBits - 1
	m := int64(i&(1<<subBits-1)) + 1<<subBits
	lo = m << shift
	return lo, lo + 1<<shift - 1
}

// Record adds one sample; negative durations count as zero.
func (h *histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
	h.sum += float64(d)
	h.counts[bucketIndex(int64(d))]++
}

// Merge adds o's samples to h.
func (h *histogram) Merge(o *histogram) {
	if o.n == 0 {
		return
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
	for i, c := range o.counts {
		h.counts[i] += c
	}
}

// Count is the number of samples.
func (h *histogram) Count() uint64 { return h.n }

// Min, Max and Mean are exact; zero with no samples.
func (h *histogram) Min() time.Duration { return h.min }
func (h *histogram) Max() time.Duration { return h.max }
func (h *histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(math.Round(h.sum / float64(h.n)))
}

// Quantile returns the value at quantile q in [0, 1] by the nearest-rank
// method: the smallest recorded value v such that at least q of the samples
// are <= v. It answers with the top of v's bucket (clamped to the exact max
// and min), so it never under-reports, and over-reports by under 1/128 of v.
func (h *histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q <= 0 {
		return h.min
	}
	if q >= 1 {
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			_, hi := bucketRange(i)
			v := time.Duration(hi)
			if v > h.max {
				v = h.max
			}
			if v < h.min {
				v = h.min
			}
			return v
		}
	}
	return h.max
}
