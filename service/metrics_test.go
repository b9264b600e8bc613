package service

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
	pt "github.com/xnfdev/xnf/pipeline/pipelinetest"
)

// gauged is a stage with an event counter and a gauge.
type gauged struct{ pipeline.Counters }

func (gauged) Name() string                  { return "gauged" }
func (gauged) Process(*packet.Batch)         {}
func (gauged) StageGauges() map[string]int64 { return map[string]int64{"flows_active": 7} }
func (g *gauged) init() *gauged              { g.Counter("seen").Add(3); return g }

var _ pipeline.StageGauges = gauged{}

// Stage counters are exported as counters, stage gauges as gauges,
// through the wrappers config adds (a name here).
func TestCollectorExportsStageEventsAndGauges(t *testing.T) {
	pool := pipeline.NewMemPool(16, 2048)
	ports := []pipeline.Port{pt.NewMemPort("a", pool), pt.NewMemPort("b", pool)}
	st := pipeline.Named((&gauged{}).init(), "mine")
	w, err := pipeline.NewWorker(pipeline.Config{Ports: ports, Stages: []pipeline.Stage{st}, CPU: -1})
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{Spec: Spec{Ports: []Port{{Name: "a"}, {Name: "b"}}},
		Workers: []*Worker{{Index: 0, Queue: []int{0, 0}, Ports: ports, Stages: []pipeline.Stage{st}, Worker: w}}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(s))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		found[mf.GetName()] = mf
	}
	ev, g := found["xnf_stage_events_total"], found["xnf_stage_gauges"]
	if ev == nil || g == nil {
		t.Fatalf("families %v", found)
	}
	if ev.GetType() != dto.MetricType_COUNTER || ev.Metric[0].GetCounter().GetValue() != 3 {
		t.Errorf("events: %v", ev)
	}
	m := g.Metric[0]
	labels := map[string]string{}
	for _, l := range m.Label {
		labels[l.GetName()] = l.GetValue()
	}
	if g.GetType() != dto.MetricType_GAUGE || m.GetGauge().GetValue() != 7 ||
		labels["stage"] != "mine" || labels["gauge"] != "flows_active" || labels["worker"] != "0" {
		t.Errorf("gauges: %v", g)
	}
}
