package rigbpf

import (
	"fmt"
	"time"
)

// Latency histogram layout, as xdp_sink.c fills it: log-linear buckets,
// 2^LatencySubBits per power of two. Ages below 16 ns have a bucket each;
// from 16 ns on, bucket i covers [LatencyBucketLow(i), LatencyBucketLow(i+1)),
// at most 1/16 of its lower bound wide (6.25%). Ages of 2^40 ns (18 min)
// and more share the last bucket.
const (
	LatencySubBits = 4
	LatencyBuckets = (40 - 3) << LatencySubBits
)

// LatencyBucket is the bucket of an age in ns (the sink's lat_bucket).
func LatencyBucket(ns uint64) int {
	const sub = 1 << LatencySubBits
	if ns < sub {
		return int(ns)
	}
	e := 63
	for ns>>uint(e) == 0 {
		e--
	}
	if e >= 40 {
		return LatencyBuckets - 1
	}
	return (e-(LatencySubBits-1))<<LatencySubBits + int(ns>>uint(e-LatencySubBits))&(sub-1)
}

// LatencyBucketLow is the smallest age (ns) bucket i holds; i may be
// LatencyBuckets, the end of the last regular bucket.
func LatencyBucketLow(i int) uint64 {
	const sub = 1 << LatencySubBits
	if i < sub {
		return uint64(i)
	}
	e := i>>LatencySubBits + LatencySubBits - 1
	return uint64(sub+i&(sub-1)) << uint(e-LatencySubBits)
}

// LatencyHistogram is a sink's record of frame ages (SinkConfig.Latency).
type LatencyHistogram struct {
	// Count is the number of stamped frames recorded, SumNs their total
	// age; Bad counts stamps from the future (not recorded).
	Count, SumNs, Bad uint64
	// Buckets has LatencyBuckets counts (see LatencyBucket).
	Buckets []uint64
}

// Sub returns h - o, the histogram of a window between two readings.
func (h LatencyHistogram) Sub(o LatencyHistogram) LatencyHistogram {
	d := LatencyHistogram{Count: h.Count - o.Count, SumNs: h.SumNs - o.SumNs, Bad: h.Bad - o.Bad,
		Buckets: make([]uint64, len(h.Buckets))}
	for i := range h.Buckets {
		d.Buckets[i] = h.Buckets[i]
		if i < len(o.Buckets) {
			d.Buckets[i] -= o.Buckets[i]
		}
	}
	return d
}

// Add records n samples of age ns (for tests and merging).
func (h *LatencyHistogram) Add(ns uint64, n uint64) {
	if len(h.Buckets) == 0 {
		h.Buckets = make([]uint64, LatencyBuckets)
	}
	h.Buckets[LatencyBucket(ns)] += n
	h.Count += n
	h.SumNs += ns * n
}

// Samples is the number of samples in the buckets.
func (h LatencyHistogram) Samples() uint64 {
	var n uint64
	for _, c := range h.Buckets {
		n += c
	}
	return n
}

// Mean is the average age.
func (h LatencyHistogram) Mean() time.Duration {
	if h.Count == 0 {
		return 0
	}
	return time.Duration(h.SumNs / h.Count)
}

// Percentile is the age below which a fraction q (0 < q <= 1) of the
// samples fall: the sample of rank ceil(q*n) (nearest rank), placed inside
// its bucket by linear interpolation over the bucket's samples. Its error
// is below a bucket's width (6.25%). It is 0 without samples.
func (h LatencyHistogram) Percentile(q float64) (time.Duration, error) {
	if q <= 0 || q > 1 {
		return 0, fmt.Errorf("rigbpf: percentile %v outside (0, 1]", q)
	}
	n := h.Samples()
	if n == 0 {
		return 0, nil
	}
	rank := uint64(q*float64(n) + 0.9999999) // ceil, forgiving float error
	rank = min(max(rank, 1), n)
	var seen uint64
	for i, c := range h.Buckets {
		if c == 0 {
			continue
		}
		if seen+c >= rank {
			lo, hi := LatencyBucketLow(i), LatencyBucketLow(i+1)
			if hi <= lo+1 {
				return time.Duration(lo), nil
			}
			// The k-th of c samples sits at lo + (k - 0.5)/c of the width.
			k := float64(rank - seen)
			return time.Duration(float64(lo) + (k-0.5)/float64(c)*float64(hi-lo)), nil
		}
		seen += c
	}
	return time.Duration(LatencyBucketLow(len(h.Buckets))), nil
}
