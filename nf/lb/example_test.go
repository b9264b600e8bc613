package lb_test

import (
	"fmt"
	"sync/atomic"

	"github.com/xnfdev/xnf/nf/lb"
)

// The control plane builds a table per pool and publishes it; workers
// look up in whichever table is current, without a lock. A change of
// pool (here a backend drained) is a new table swapped in whole.
func Example() {
	pool := []lb.Backend{
		{ID: "10.0.0.1:80", Weight: 1},
		{ID: "10.0.0.2:80", Weight: 1},
		{ID: "10.0.0.3:80", Weight: 2},
	}
	var cur atomic.Pointer[lb.Table]
	t, err := lb.Build(lb.DefaultSize, pool)
	if err != nil {
		panic(err)
	}
	cur.Store(t)

	// A worker, per new flow: flowHash is the flow's 5-tuple hash.
	flowHash := uint64(0x5bd1e9955bd1e995)
	fmt.Println("flow goes to", pool[cur.Load().Lookup(flowHash)].ID)

	// The control plane drains 10.0.0.3.
	pool[2].Weight = 0
	next, err := cur.Load().Rebuild(pool)
	if err != nil {
		panic(err) // the table in force stays
	}
	cur.Store(next)
	fmt.Println("flow goes to", pool[cur.Load().Lookup(flowHash)].ID, "still")
	for i := range next.Len() {
		fmt.Printf("%s holds %d of %d entries\n", next.Backend(i).ID, next.Entries(i), next.Size())
	}
	// Output:
	// flow goes to 10.0.0.2:80
	// flow goes to 10.0.0.2:80 still
	// 10.0.0.1:80 holds 32769 of 65537 entries
	// 10.0.0.2:80 holds 32768 of 65537 entries
	// 10.0.0.3:80 holds 0 of 65537 entries
}
