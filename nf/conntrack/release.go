package conntrack

// OnRelease makes fn see every flow whose User is not zero as its entry is
// freed: expired (by the clock hand, or met expired by a lookup), evicted,
// deleted, or replaced by a SYN that reopens it. fn gets the flow intact,
// tuples and User, on the goroutine that owns the table, from within the
// call that freed it (Track, TrackBatch, Expire, Create, SetReply,
// Delete); it must not call the table, and must not keep the pointer.
// A stage that counts the flows it decided (a load balancer's active
// flows per backend) subtracts here what it added when it set User: the
// count is exact, up to expired flows not yet freed, which Len counts too.
//
// There is one hook per table: OnRelease returns the one it replaces (nil
// for none), which a stage sharing the table with another must call for
// the flows that are not its own. A nil fn removes the hook. Set it while
// building the stages, before any packet.
func (t *Table) OnRelease(fn func(f *Flow)) (prev func(f *Flow)) {
	prev, t.onRelease = t.onRelease, fn
	return prev
}
