package pipeline

import (
	"testing"

	"github.com/xnfdev/xnf/packet"
)

// nullPort is a port that never moves a packet: enough for NewWorker.
type nullPort struct{}

func (nullPort) Name() string                             { return "null" }
func (nullPort) Receive(*packet.Batch, int) (int, error)  { return 0, nil }
func (nullPort) Transmit(p []*packet.Packet) (int, error) { return len(p), nil }
func (nullPort) Release([]*packet.Packet)                 {}
func (nullPort) Flush() error                             { return nil }
func (nullPort) Close() error                             { return nil }

// The worker calls the stage under a Named one directly (no wrapper call
// per batch).
func TestNamedStageRunsDirectly(t *testing.T) {
	inner := StageFunc{"inner", func(*packet.Batch) {}}
	w, err := NewWorker(Config{Ports: []Port{nullPort{}}, CPU: -1, Stages: []Stage{Named(Named(inner, "first"), "outer")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, wrapped := w.stages[0].stage.(named); wrapped {
		t.Error("the worker calls the name wrapper, not the stage")
	}
}
