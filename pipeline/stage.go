package pipeline

import "github.com/xnfdev/xnf/packet"

// Stage is the one interface a network function implements. Process sees a
// whole batch per call and sets each packet's verdict: leave it Forward (to
// OutPort, preset to the ingress port's default output), SetForward(port),
// SetDrop(reason), or SetBounce (back out of the ingress port).
//
// Contract: Process runs on the worker's goroutine; it must not block, must
// not allocate per packet, and must keep nothing that points into a frame
// after it returns. It may rewrite packet bytes in place (keeping
// checksums right, see packet's Set* helpers). A packet whose start moves
// (a pushed or popped header) must have Addr moved by the same amount.
type Stage interface {
	// Name identifies the stage in counters and logs.
	Name() string
	// Process sets the verdicts of b.Packets[:b.Len].
	Process(b *packet.Batch)
}

// StageFunc adapts a function to a Stage.
type StageFunc struct {
	StageName string
	Fn        func(b *packet.Batch)
}

func (s StageFunc) Name() string            { return s.StageName }
func (s StageFunc) Process(b *packet.Batch) { s.Fn(b) }

// StageCounters are a stage's totals.
type StageCounters struct {
	Name    string
	In, Out uint64
	// Dropped by reason (only reasons seen appear).
	Dropped map[packet.DropReason]uint64
}

// DroppedTotal sums Dropped.
func (c StageCounters) DroppedTotal() uint64 { return sumDrops(c.Dropped) }

type stageSlot struct {
	stage Stage
	name  string
	ctr   counterSet
}

// Named gives s another name in counters and logs. The worker keeps the
// name and calls s itself, so a name costs no call per batch.
func Named(s Stage, name string) Stage { return named{s, name} }

type named struct {
	Stage
	name string
}

func (n named) Name() string { return n.name }

// Unwrap returns the stage under the name.
func (n named) Unwrap() Stage { return n.Stage }
