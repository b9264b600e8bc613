// Package xdp is the AF_XDP port: one socket of one interface queue as a
// pipeline.Port, over the worker's UMEM (an afxdp.UMEM is the
// pipeline.FramePool of a worker with AF_XDP ports). A Port belongs to its
// worker's goroutine and is closed after the worker has stopped.
//
// Socket errors the kernel recovers from (a full ring, a refused wakeup)
// are counted on the socket (afxdp.Socket.Counters) and never stop the
// worker; a closed port returns pipeline.ErrClosed.
package xdp
