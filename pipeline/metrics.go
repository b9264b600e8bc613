package pipeline

// StageMetrics is implemented by stages that keep counters of their own
// (rule hits, translations, ARP replies...). The service exports them as
// xnf_stage_events_total{stage, event}; names are short snake_case words.
type StageMetrics interface {
	StageMetrics() map[string]uint64
}

// StageGauges is implemented by stages that report values which go up and
// down (flows in progress, entries in a table), as opposed to the events
// StageMetrics counts. The service exports them as
// xnf_stage_gauges{stage, index, worker, gauge}. Any goroutine may call it.
type StageGauges interface {
	StageGauges() map[string]int64
}
