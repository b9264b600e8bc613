// Package ratelimit is the token bucket that bounds the answers stages
// send (a firewall's rejects, a router's ICMP errors), so that a flood of
// packets cannot turn a stage into a reflector.
//
// A Bucket holds up to burst tokens and gains rate tokens a second. The
// stage refills it from its clock once per batch (Refill) and takes one
// token per answer (Take), so the hot path reads no clock and takes no
// lock: a Bucket belongs to one worker goroutine and is not safe for
// concurrent use. It does not allocate.
package ratelimit

// Bucket is a token bucket. The zero value has no tokens and gains none.
type Bucket struct {
	rate, burst float64
	tokens      float64
	last        int64 // the clock at the last Refill; 0 before the first
}

// New returns a full bucket of burst tokens that gains rate a second.
func New(rate, burst int) Bucket {
	return Bucket{rate: float64(rate), burst: float64(burst), tokens: float64(burst)}
}

// Limits returns the rate and burst the bucket was made with.
func (b *Bucket) Limits() (rate, burst int) { return int(b.rate), int(b.burst) }

// Refill adds the tokens earned since the last Refill, up to the burst;
// now is nanoseconds on any monotonic clock. A clock that goes back adds
// nothing.
func (b *Bucket) Refill(now int64) {
	if b.last != 0 && now > b.last {
		b.tokens = min(b.burst, b.tokens+b.rate*float64(now-b.last)/1e9)
	}
	b.last = now
}

// Take takes one token, reporting false when none is left.
func (b *Bucket) Take() bool {
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}
