package xdp

import (
	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/pipeline"
)

// Queue is the interface queue the socket is bound to.
func (x *Port) Queue() int { return x.sock.Queue() }

// Close closes the socket; the frames on its rings, and those received for
// VLAN ports and not taken yet, go back to the UMEM's free stack. Closing the socket's Device later is harmless.
func (x *Port) Close() error {
	if x.closed {
		return nil
	}
	x.closed = true
	if x.tr != nil {
		x.tr.close() // the frames queued for VLAN ports
	}
	return x.sock.Close()
}

var (
	_ pipeline.Port      = (*Port)(nil)
	_ pipeline.FramePool = (*afxdp.UMEM)(nil)
)
