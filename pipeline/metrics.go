package pipeline

// StageMetrics is implemented by stages that keep counters of their own
// (rule hits, translations, ARP replies...). The service exports them as
// xnf_stage_events_total{stage, event}; names are short snake_case words.
type StageMetrics interface {
	StageMetrics() map[string]uint64
}
