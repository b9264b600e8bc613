// Package afxdp is xnf's own AF_XDP layer: packet memory (UMEM), the four
// rings of each socket, and the devices whose queues feed them. It knows
// rings and frames, never stages or pipelines.
//
// The flow of a frame:
//
//	UMEM free stack --FillFromFree--> fill ring --(kernel receives)--> RX ring
//	    --Receive--> application --Transmit--> TX ring --(kernel sends)-->
//	    completion ring --CompleteToFree--> UMEM free stack
//
// A frame is always in exactly one of those places. The UMEM keeps a state
// per frame and checks every move, so a frame can never be handed to two
// owners: a double free, a transmit of a frame the application does not
// hold, or a received descriptor for a frame never put on the fill ring is
// refused and counted (UMEM.Violations). UMEM.Accounting counts frames by
// place and cross-checks the books.
//
// Lifecycle: NewUMEM maps the frames; Attach loads xnf's redirect program
// (package bpf) onto an interface through a bpf_link, which the kernel
// removes when the last file descriptor closes, even if the process is
// killed; Device.OpenQueue opens a socket on a queue over a UMEM and
// registers it in the program's XSKMAP. The first socket of a UMEM
// registers it with the kernel; later ones, on any queue of any device,
// share it (XDP_SHARED_UMEM), which is what lets a frame received on one
// port leave by another without a copy. Device.Close detaches and closes
// its sockets, whose frames return to the free stack; UMEM.Close unmaps.
//
// Concurrency: a UMEM and its sockets belong to one goroutine at a time
// (a pipeline worker). Socket.Counters and Socket.Stats may be read from
// any goroutine.
//
// Privileges: CAP_NET_RAW to create sockets, CAP_BPF to load the program,
// CAP_NET_ADMIN to attach it (root has all three). Errors wrap ErrPermission,
// ErrBusy, ErrZeroCopyUnsupported, ErrOffloadUnsupported, ErrQueueRange and
// ErrKernelTooOld and say what to do.
package afxdp
