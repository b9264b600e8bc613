// Package xdp is the AF_XDP port type: one socket of one interface queue
// as a pipeline.Port, over the worker's UMEM (an afxdp.UMEM is the
// pipeline.FramePool of a worker with AF_XDP ports).
//
// Lifecycle (see package port): Interface, the Go value of `type: afxdp`
// in a chain file, opens as a Device: the XDP program is attached to the
// interface once per service. Each worker then gets a Port for its queue,
// over its own UMEM. Ports are closed after their workers stop; closing
// the Device detaches the program, also when ports are still open.
//
// VLANs: an Interface with a VLAN is an 802.1Q access port, and VLAN
// ports (the Go value VLAN, `type: vlan`) are further ports over an
// Interface's sockets, one per VLAN; the chain sees untagged frames
// either way (vlan.go has the model, docs/architecture.md the picture).
//
// A Port belongs to its worker's goroutine. Socket conditions the kernel
// recovers from (a full ring, a refused wakeup) are counted on the socket
// (afxdp.Socket.Counters) and never stop the worker; a closed port returns
// pipeline.ErrClosed.
package xdp
