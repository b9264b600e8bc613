package ratelimit

import "testing"

func TestBucket(t *testing.T) {
	b := New(10, 3)
	take := func(n int) (got int) {
		for range n {
			if b.Take() {
				got++
			}
		}
		return got
	}
	b.Refill(1e9)
	if got := take(5); got != 3 {
		t.Fatalf("a full bucket of 3 gave %d", got)
	}
	b.Refill(1e9 + 2e8) // 0.2s at 10/s: 2 tokens
	if got := take(5); got != 2 {
		t.Fatalf("0.2s at 10/s gave %d, want 2", got)
	}
	b.Refill(1e9 + 1e8) // the clock went back: nothing
	if got := take(1); got != 0 {
		t.Fatalf("a clock going back gave %d", got)
	}
	b.Refill(100e9) // long idle: capped at the burst
	if got := take(10); got != 3 {
		t.Fatalf("a long idle gave %d, want the burst 3", got)
	}
	if r, bu := b.Limits(); r != 10 || bu != 3 {
		t.Fatalf("Limits = %d, %d", r, bu)
	}
}

func TestZeroBurstAnswersNone(t *testing.T) {
	b := New(1000, 0)
	b.Refill(1)
	b.Refill(1e9)
	if b.Take() {
		t.Fatal("a bucket of burst 0 gave a token")
	}
}

func TestTakeDoesNotAllocate(t *testing.T) {
	b := New(1e6, 100)
	now := int64(1)
	if n := testing.AllocsPerRun(100, func() { now += 1000; b.Refill(now); b.Take() }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
