// Package pcap is the capture-file port: a pipeline.Port that receives the
// packets of a pcap or pcapng capture, or transmits into a new pcap
// capture, over any pipeline.FramePool. It is for offline work (replaying
// a capture through a chain with `xnf replay`, recording what a chain
// emits) and for tests whose input and expected output are captures.
//
// Errors come back from the calls that meet them: Receive returns io.EOF
// at the end of the capture and the read error otherwise; Transmit and
// Flush return write errors; Close returns the port's first error, so it
// says whether an output capture is complete.
package pcap
