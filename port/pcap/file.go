package pcap

import (
	"errors"
	"fmt"

	"github.com/xnfdev/xnf/pipeline"
	"github.com/xnfdev/xnf/port"
)

// File is a capture file as a service port: the port type `pcap` of chain
// files, as a Go value. Exactly one of Read and Write is set. A capture is
// one sequence of packets, so a service with a pcap port runs one worker.
type File struct {
	// Read is a pcap or pcapng capture (gzip or not) to receive from.
	Read string
	// Write is a pcap capture to create (truncated) and transmit into.
	Write string
}

// Open checks the settings; the file itself opens with the worker's port.
func (c File) Open(env port.Env) (port.Device, error) {
	if (c.Read == "") == (c.Write == "") {
		return nil, fmt.Errorf("port %s: a pcap port either reads or writes a capture: set one of read and write", env.Name)
	}
	if env.Workers > 1 {
		return nil, fmt.Errorf("port %s: a pcap port serves one worker, not %d", env.Name, env.Workers)
	}
	return fileDevice{c}, nil
}

type fileDevice struct{ c File }

func (d fileDevice) Port(w int, pool pipeline.FramePool) (pipeline.Port, error) {
	if w != 0 {
		return nil, errors.New("pcap: a pcap port serves one worker")
	}
	if d.c.Read != "" {
		return OpenFile(d.c.Read, pool)
	}
	return CreateFile(d.c.Write, pool)
}

func (fileDevice) Close() error { return nil }

var _ port.Config = File{}
