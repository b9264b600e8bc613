// Package lb chooses backends for a load balancer by Maglev consistent
// hashing (Eisenbud et al., NSDI 2016). It holds the lookup table only;
// the stage that balances packets with it is yet to come.
//
// # Model
//
// A pool is a list of backends, each a stable ID and a weight (0 drains
// it). Build turns a pool into a Table of M entries (a prime, DefaultSize
// unless asked otherwise), each naming a backend; Lookup maps a flow's
// hash to the entry hash mod M and returns that backend's index in the
// pool. A Table is immutable: a change of pool (a weight, a backend added,
// drained or removed) builds a new one, which the control plane publishes
// through an atomic.Pointer while workers keep looking up in whichever
// table they loaded:
//
//	var cur atomic.Pointer[lb.Table]
//	t, err := lb.Build(lb.DefaultSize, pool) // control plane, any time
//	cur.Store(t)                             // only on success
//	...
//	i := cur.Load().Lookup(flowHash)         // data path: one load, no lock
//
// # What a table guarantees
//
//   - Balance: each backend holds M·w/W entries (w its weight, W the sum)
//     give or take one or two, so its share of new flows is its share of
//     the weight. Build refuses a size that would give a backend fewer
//     than EntriesPerBackend (100) entries, so the shares are within about
//     1% of the weights.
//   - Little disruption: between two tables of one size, the entries that
//     change backend are about the share of the weight that changed hands.
//     Removing one of ten equal backends moves its 10% of the entries and
//     few others (the tests measure it); a drained backend (weight 0)
//     changes nothing for the others.
//   - Determinism: a table is a function of the size and the set of
//     (ID, weight) pairs alone: not their order, not the process, not the
//     machine. Every instance behind one ECMP route builds the same table
//     and, given the same flow hash, picks the same backend, and so does a
//     restarted one.
//   - Cost: Lookup is two multiplications and a load, no allocation, no
//     lock; Build takes milliseconds at the default size (figures in
//     docs/benchmarks.md).
//
// # What it does not do
//
// A table does not keep a flow on its backend: when the pool changes,
// the flows in the entries that moved (about the changed share, and every
// flow of a removed backend) map elsewhere, which would break their
// connections. Keeping established flows where they are is conntrack's
// job: the planned lb stage looks a backend up only for a flow's first
// packet, stores the choice in the flow's conntrack entry (shared with the
// firewall and NAT when they are in the chain), and takes every later
// packet's backend from there.
//
// Nor does it hash packets or check health. The caller passes the flow
// hash, which must be well mixed and the same on every instance, so not
// a per-process seeded hash such as conntrack's: FlowHash is one, of a
// flow's 5-tuple with fixed keys; and the caller leaves unhealthy
// backends out of the pool (or gives them weight 0) when it builds the
// next table. When no backend is left, Build fails with ErrNoBackends.
package lb
