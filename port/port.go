// Package port is the seam between a running service and its port types.
// A port type (AF_XDP in port/xdp, capture files in port/pcap, a TAP or
// AF_PACKET port later) is a Go value that implements Config; the service
// opens it once and asks it for one pipeline.Port per worker:
//
//	cfg.Open(env)                   once, before any worker: attach an XDP
//	                                program, open a file (a Device)
//	dev.Port(w, pool)               once per worker w, over that worker's
//	                                frame pool (its UMEM)
//	... workers run, stop, close their ports ...
//	dev.Close()                     once, after every worker has stopped:
//	                                detach, close
//
// Chain files name port types with `type:` (config.RegisterPort); Go
// programs put the values into service.Spec directly. docs/writing-a-port.md
// walks through writing one.
package port

import (
	"log/slog"

	"github.com/xnfdev/xnf/pipeline"
)

// Env is what a port type knows about the service opening it.
type Env struct {
	// Name is the port's name in the service (for logs and errors).
	Name string
	// Index is the port's position in the service: its packets' InPort.
	Index int
	// Workers is the number of workers: Device.Port is called for each.
	Workers int
	// Ports is the number of ports every worker's frame pool serves.
	Ports int
	// Force lets a port take over what other tools hold (an XDP program
	// left on an interface).
	Force bool
	Log   *slog.Logger
	// Opened returns the Device of a port opened before this one (the
	// service opens its ports in order), by name: for port types layered
	// on another port's device, such as a VLAN on its AF_XDP parent
	// (xdp.VLAN). Nil when the opener has no such ports to offer.
	Opened func(name string) (Device, bool)
}

// Config is one port's settings as a Go value.
type Config interface {
	// Open sets up what the port's workers share. It fails, touching
	// nothing, when the settings cannot work (a missing interface).
	Open(env Env) (Device, error)
}

// Device is an opened port: what its workers share.
type Device interface {
	// Port makes worker w's pipeline port over the worker's frame pool,
	// shared with the worker's other ports. A port type that needs a
	// particular pool (AF_XDP: an *afxdp.UMEM) says so in an error.
	Port(w int, pool pipeline.FramePool) (pipeline.Port, error)
	// Close undoes Open once every worker's port has been closed.
	Close() error
}

// Queuer is implemented by pipeline ports that serve one queue of a
// device, so counters can say which.
type Queuer interface {
	Queue() int
}
