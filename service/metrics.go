package service

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xnfdev/xnf/pipeline"
	"github.com/xnfdev/xnf/port/xdp"
)

// Collector exports every counter of a service to Prometheus: ports,
// stages, workers, sockets (XDP_STATISTICS) and the XDP programs. Values
// are read at scrape time; the data path is never stopped.
type Collector struct{ s *Service }

// NewCollector makes a collector for s.
func NewCollector(s *Service) *Collector { return &Collector{s} }

var (
	dPortRX      = prometheus.NewDesc("xnf_port_rx_packets_total", "Packets received on a port queue.", []string{"port", "queue", "worker"}, nil)
	dPortTX      = prometheus.NewDesc("xnf_port_tx_packets_total", "Packets queued for transmission on a port queue.", []string{"port", "queue", "worker"}, nil)
	dPortTXFull  = prometheus.NewDesc("xnf_port_tx_ring_full_drops_total", "Packets dropped because the TX ring was full.", []string{"port", "queue", "worker"}, nil)
	dPortDrop    = prometheus.NewDesc("xnf_port_dropped_packets_total", "Packets received on a port and dropped, by reason.", []string{"port", "queue", "worker", "reason"}, nil)
	dStageIn     = prometheus.NewDesc("xnf_stage_packets_in_total", "Packets a stage processed.", []string{"stage", "index", "worker"}, nil)
	dStageOut    = prometheus.NewDesc("xnf_stage_packets_out_total", "Packets a stage passed on.", []string{"stage", "index", "worker"}, nil)
	dStageDrop   = prometheus.NewDesc("xnf_stage_dropped_packets_total", "Packets a stage dropped, by reason.", []string{"stage", "index", "worker", "reason"}, nil)
	dStageEvents = prometheus.NewDesc("xnf_stage_events_total", "Stage-specific counters.", []string{"stage", "index", "worker", "event"}, nil)
	dStageGauges = prometheus.NewDesc("xnf_stage_gauges", "Stage-specific values that go up and down (flows in progress, table entries).", []string{"stage", "index", "worker", "gauge"}, nil)
	dLoops       = prometheus.NewDesc("xnf_worker_loops_total", "Worker loop iterations.", []string{"worker"}, nil)
	dIdle        = prometheus.NewDesc("xnf_worker_idle_loops_total", "Worker loops that found no packets.", []string{"worker"}, nil)
	dPolls       = prometheus.NewDesc("xnf_worker_polls_total", "Times a worker blocked in poll(2).", []string{"worker"}, nil)
	dHandedOff   = prometheus.NewDesc("xnf_worker_handed_off_packets_total", "Packets a worker received and handed to the worker that owns their flow.", []string{"worker"}, nil)
	dHandedIn    = prometheus.NewDesc("xnf_worker_received_handoff_packets_total", "Packets other workers handed to this one, run through its chain.", []string{"worker"}, nil)
	dHandoffDrop = prometheus.NewDesc("xnf_worker_handoff_dropped_packets_total", "Packets lost in hand-off: the owner's ring was full (ring_full, at the sender) or the owner had no free frame (no_frame).", []string{"worker", "reason"}, nil)
	dSock        = prometheus.NewDesc("xnf_socket_events_total", "AF_XDP socket statistics (XDP_STATISTICS and our own).", []string{"port", "queue", "event"}, nil)
	dXDP         = prometheus.NewDesc("xnf_xdp_packets_total", "What the XDP program did with frames: redirected, passed, filtered, dropped (by an offloaded firewall rule).", []string{"port", "interface", "action"}, nil)
)

func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dPortRX, dPortTX, dPortTXFull, dPortDrop, dStageIn, dStageOut, dStageDrop, dStageEvents, dStageGauges, dLoops, dIdle, dPolls, dHandedOff, dHandedIn, dHandoffDrop, dSock, dXDP} {
		ch <- d
	}
}

func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	cnt := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, w := range c.s.Workers {
		if w.Worker == nil {
			continue
		}
		ws := strconv.Itoa(w.Index)
		for i, pc := range w.PortCounters() {
			port, q := c.s.PortName(i), strconv.Itoa(w.Queue[i])
			cnt(dPortRX, pc.RX, port, q, ws)
			cnt(dPortTX, pc.TX, port, q, ws)
			cnt(dPortTXFull, pc.TXFull, port, q, ws)
			for r, v := range pc.Dropped {
				cnt(dPortDrop, v, port, q, ws, r.String())
			}
			xp, ok := w.Ports[i].(*xdp.Port)
			if !ok {
				continue
			}
			sock := xp.Socket()
			sc := sock.Counters()
			if st, err := sock.Stats(); err == nil {
				for ev, v := range map[string]uint64{"rx_dropped": st.RXDropped, "rx_invalid_descs": st.RXInvalidDescs, "tx_invalid_descs": st.TXInvalidDescs,
					"rx_ring_full": st.RXRingFull, "rx_fill_ring_empty": st.RXFillRingEmpty, "tx_ring_empty": st.TXRingEmpty,
					"tx_kicks": sc.TXKicks, "tx_kick_errors": sc.TXKickErrors, "fill_wakeups": sc.FillWakeups} {
					cnt(dSock, v, port, q, ev)
				}
			}
			if vc, ok := xp.VLANCounters(); ok {
				cnt(dSock, vc.Unknown, port, q, "vlan_unknown")
				cnt(dSock, vc.NoRoom, port, q, "vlan_no_room")
			}
		}
		for i, sc := range w.StageCounters() {
			idx := strconv.Itoa(i)
			cnt(dStageIn, sc.In, sc.Name, idx, ws)
			cnt(dStageOut, sc.Out, sc.Name, idx, ws)
			for r, v := range sc.Dropped {
				cnt(dStageDrop, v, sc.Name, idx, ws, r.String())
			}
			if m, ok := find[pipeline.StageMetrics](w.Stages[i]); ok {
				for ev, v := range m.StageMetrics() {
					cnt(dStageEvents, v, sc.Name, idx, ws, ev)
				}
			}
			if g, ok := find[pipeline.StageGauges](w.Stages[i]); ok {
				for name, v := range g.StageGauges() {
					ch <- prometheus.MustNewConstMetric(dStageGauges, prometheus.GaugeValue, float64(v), sc.Name, idx, ws, name)
				}
			}
		}
		wc := w.Counters()
		cnt(dLoops, wc.Loops, ws)
		cnt(dIdle, wc.Idle, ws)
		cnt(dPolls, wc.Polls, ws)
		cnt(dHandedOff, wc.HandedOff, ws)
		cnt(dHandedIn, wc.ReceivedHandoff, ws)
		cnt(dHandoffDrop, wc.HandoffFull, ws, "ring_full")
		cnt(dHandoffDrop, wc.HandoffNoFrame, ws, "no_frame")
	}
	for _, d := range c.s.Devices {
		if pc, err := d.Counters(); err == nil {
			cnt(dXDP, pc.Redirected, d.Port, d.Name, "redirected")
			cnt(dXDP, pc.Passed, d.Port, d.Name, "passed")
			cnt(dXDP, pc.Filtered, d.Port, d.Name, "filtered")
			cnt(dXDP, pc.Dropped, d.Port, d.Name, "dropped")
		}
	}
}
