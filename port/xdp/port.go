package xdp

import (
	"fmt"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
)

// Port is one AF_XDP socket (an interface queue) as a pipeline port. All
// Ports of a worker share the worker's UMEM.
type Port struct {
	sock   *afxdp.Socket
	umem   *afxdp.UMEM
	name   string
	descs  []afxdp.Desc
	addrs  []uint64
	target int
	closed bool
	// tr, for an interface with VLANs (an access VLAN or VLAN ports):
	// the socket's trunk, this port its member 0.
	tr *trunk
}

// NewPort wraps an open socket and fills its fill ring. fill is how many
// frames to keep on the fill ring (0: 1024).
func NewPort(s *afxdp.Socket, fill int) *Port {
	if fill <= 0 {
		fill = 1024
	}
	p := &Port{sock: s, umem: s.UMEM(), name: fmt.Sprintf("%s/q%d", s.Interface(), s.Queue()),
		descs: make([]afxdp.Desc, packet.MaxBurst), addrs: make([]uint64, packet.MaxBurst), target: fill}
	s.FillFromFree(fill)
	return p
}

func (x *Port) Name() string { return x.name }

// Socket is the underlying AF_XDP socket.
func (x *Port) Socket() *afxdp.Socket { return x.sock }

func (x *Port) Receive(b *packet.Batch, max int) (int, error) {
	if x.closed {
		return 0, pipeline.ErrClosed
	}
	if x.tr != nil {
		return x.tr.receive(b, max), nil
	}
	// With busy polling the kernel delivers only when asked: ask when
	// less than a burst waits. One poll delivers up to twice its budget
	// (the kernel polls once more as it stops), and asking while frames
	// wait would fill the RX ring, where the kernel drops frames it has
	// already copied.
	if x.sock.BusyPolling() && x.sock.RXAvailable() < max {
		x.sock.BusyPoll()
	}
	n := x.sock.Receive(x.descs[:min(max, b.Free())])
	u := x.umem
	for _, d := range x.descs[:n] {
		b.Append(u.Frame(d.Addr, d.Len), d.Addr, 0)
	}
	return n, nil
}

func (x *Port) Transmit(pkts []*packet.Packet) (int, error) {
	if x.closed {
		return 0, pipeline.ErrClosed
	}
	if x.tr != nil {
		return x.tr.transmit(&x.tr.members[0], pkts), nil
	}
	d := x.descs[:len(pkts)]
	for i, p := range pkts {
		d[i] = afxdp.Desc{Addr: p.Addr, Len: uint32(len(p.Data))}
	}
	return x.sock.Transmit(d), nil
}

func (x *Port) Release(pkts []*packet.Packet) {
	a := x.addrs[:len(pkts)]
	for i, p := range pkts {
		a[i] = p.Addr
	}
	x.umem.Free(a)
}

func (x *Port) Flush() error {
	if x.closed {
		return nil
	}
	x.sock.CompleteToFree()
	if need := x.target - x.sock.FillLevel(); need > 0 {
		x.sock.FillFromFree(need)
	}
	if x.sock.TXPending() > 0 {
		x.sock.Kick()
	}
	return nil
}

// VLANCounters reads what the socket's VLAN demultiplexing dropped; ok is
// false for a port without VLANs.
func (x *Port) VLANCounters() (c VLANCounters, ok bool) {
	if x.tr == nil {
		return VLANCounters{}, false
	}
	return x.tr.counters(), true
}

func (x *Port) PollFD() int { return x.sock.FD() }

// Drained pushes pending transmissions and reports whether every frame
// sent has completed.
func (x *Port) Drained() bool {
	if x.closed {
		return true
	}
	x.sock.Kick()
	x.sock.CompleteToFree()
	return x.sock.TXOutstanding() == 0
}
