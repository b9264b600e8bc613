// Package pipeline moves batches of packets from ports through a chain of
// stages and out again. It knows packets (package packet), stages, ports
// and workers, and no particular port: the AF_XDP port (port/xdp) and the
// pcap port (port/pcap) plug in through Port and FramePool, network
// functions (nf/*) through Stage.
//
// The model, run to completion:
//
//	Worker loop (one goroutine, pinned to a CPU):
//	  for each input port: Receive a burst into a Batch
//	    Parse every packet once
//	    Steer (with a Handoff): packets another worker owns are copied
//	           to its ring, their frames go back at once
//	    Chain: each Stage processes the whole batch (one interface call)
//	           dropped packets leave the batch, their frames go back at once
//	    Dispatch: forwarded packets grouped per output port, one Transmit each
//	  for each inbound hand-off ring: a burst into frames of this worker's
//	    pool, then Chain and Dispatch as if received on their own port
//	  Flush every port: recycle completions, refill fill rings
//	  A port error (see Port) ends the loop: Stop returns it
//	  Idle: spin a little, then block in poll(2) until traffic returns
//	        (or another worker hands packets over: an eventfd wakes it)
//
// Frames: a packet's Data is a view into a frame of the worker's FramePool
// (a UMEM for AF_XDP ports, a MemPool otherwise). The worker owns every
// frame of its batch; a stage borrows them for the length of one Process
// call and may keep nothing that points into a frame afterwards. A frame is always in exactly
// one place and every one returns to its pool; UMEM accounting proves it.
//
// Counters (per port, per stage, per worker) are updated once per batch with
// atomics and may be read at any time from any goroutine.
package pipeline
