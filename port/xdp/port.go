package xdp

import (
	"fmt"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/packet"
)

// XDPPort is one AF_XDP socket (an interface queue) as a pipeline port. All
// XDPPorts of a worker share the worker's UMEM.
type XDPPort struct {
	sock   *afxdp.Socket
	umem   *afxdp.UMEM
	name   string
	descs  []afxdp.Desc
	addrs  []uint64
	target int
}

// NewXDPPort wraps an open socket and fills its fill ring. fill is how many
// frames to keep on the fill ring (0: 1024).
func NewXDPPort(s *afxdp.Socket, fill int) *XDPPort {
	if fill <= 0 {
		fill = 1024
	}
	p := &XDPPort{sock: s, umem: s.UMEM(), name: fmt.Sprintf("%s/q%d", s.Interface(), s.Queue()),
		descs: make([]afxdp.Desc, packet.MaxBurst), addrs: make([]uint64, packet.MaxBurst), target: fill}
	s.FillFromFree(fill)
	return p
}

func (x *XDPPort) Name() string { return x.name }

// Socket is the underlying AF_XDP socket.
func (x *XDPPort) Socket() *afxdp.Socket { return x.sock }

func (x *XDPPort) Receive(b *packet.Batch, inPort uint16, max int) int {
	n := x.sock.Receive(x.descs[:min(max, b.Free())])
	u := x.umem
	for _, d := range x.descs[:n] {
		b.Append(u.Frame(d.Addr, d.Len), d.Addr, inPort)
	}
	return n
}

func (x *XDPPort) Transmit(pkts []*packet.Packet) int {
	d := x.descs[:len(pkts)]
	for i, p := range pkts {
		d[i] = afxdp.Desc{Addr: p.Addr, Len: uint32(len(p.Data))}
	}
	return x.sock.Transmit(d)
}

func (x *XDPPort) Release(pkts []*packet.Packet) {
	a := x.addrs[:len(pkts)]
	for i, p := range pkts {
		a[i] = p.Addr
	}
	x.umem.Free(a)
}

func (x *XDPPort) Flush() {
	x.sock.CompleteToFree()
	if need := x.target - x.sock.FillLevel(); need > 0 {
		x.sock.FillFromFree(need)
	}
	if x.sock.TXPending() > 0 {
		x.sock.Kick()
	}
}

func (x *XDPPort) PollFD() int { return x.sock.FD() }

// Drained pushes pending transmissions and reports whether every frame
// sent has completed.
func (x *XDPPort) Drained() bool {
	x.sock.Kick()
	x.sock.CompleteToFree()
	return x.sock.TXOutstanding() == 0
}
