package conntrack

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xnfdev/xnf/packet"
)

const (
	syn    = packet.TCPSyn
	ack    = packet.TCPAck
	fin    = packet.TCPFin
	rst    = packet.TCPRst
	psh    = packet.TCPPsh
	synack = syn | ack
	finack = fin | ack
	rstack = rst | ack
	data   = psh | ack
)

type tcpStepT struct {
	dir   Dir
	flags uint8
	state State
	tcp   TCPState // after the segment
}

var (
	handshake = []tcpStepT{
		{Original, syn, StateNew, TCPSynSent},
		{Reply, synack, StateEstablished, TCPSynRecv},
		{Original, ack, StateEstablished, TCPEstablished},
		{Original, data, StateEstablished, TCPEstablished},
		{Reply, data, StateEstablished, TCPEstablished},
	}
	timeWait = append(handshake[:len(handshake):len(handshake)],
		tcpStepT{Original, finack, StateEstablished, TCPFinWait},
		tcpStepT{Reply, finack, StateEstablished, TCPLastAck},
		tcpStepT{Original, ack, StateEstablished, TCPTimeWait},
	)
)

func steps(parts ...[]tcpStepT) []tcpStepT {
	var s []tcpStepT
	for _, p := range parts {
		s = append(s, p...)
	}
	return s
}

func TestTCPStateMachine(t *testing.T) {
	cases := []struct {
		name  string
		steps []tcpStepT
	}{
		{"the handshake makes the flow established on the SYN-ACK", handshake},
		{"FIN, FIN, ACK ends in time_wait", timeWait},
		{"FIN, ACK, FIN, ACK passes through close_wait", steps(handshake, []tcpStepT{
			{Reply, finack, StateEstablished, TCPFinWait},
			{Original, ack, StateEstablished, TCPCloseWait},
			{Original, data, StateEstablished, TCPCloseWait},
			{Original, finack, StateEstablished, TCPLastAck},
			{Original, finack, StateEstablished, TCPLastAck}, // retransmitted
			{Reply, ack, StateEstablished, TCPTimeWait},
		})},
		{"the side that sent the last FIN does not finish the close with its own ACK", steps(handshake, []tcpStepT{
			{Original, finack, StateEstablished, TCPFinWait},
			{Reply, finack, StateEstablished, TCPLastAck},
			{Reply, ack, StateEstablished, TCPLastAck},
			{Original, ack, StateEstablished, TCPTimeWait},
		})},
		{"ACKs from the side that sent the only FIN keep fin_wait", steps(handshake, []tcpStepT{
			{Original, finack, StateEstablished, TCPFinWait},
			{Original, ack, StateEstablished, TCPFinWait},
		})},
		{"RST from the responder closes an established flow", steps(handshake, []tcpStepT{{Reply, rstack, StateEstablished, TCPClose}})},
		{"RST from the originator closes it too", steps(handshake, []tcpStepT{{Original, rst, StateEstablished, TCPClose}})},
		{"RST answering the SYN (port closed) closes the flow", []tcpStepT{
			{Original, syn, StateNew, TCPSynSent},
			{Reply, rstack, StateEstablished, TCPClose},
		}},
		{"a retransmitted SYN stays new", []tcpStepT{
			{Original, syn, StateNew, TCPSynSent},
			{Original, syn, StateNew, TCPSynSent},
		}},
		{"an ACK before the SYN-ACK is invalid", []tcpStepT{
			{Original, syn, StateNew, TCPSynSent},
			{Original, ack, StateInvalid, TCPSynSent},
			{Reply, ack, StateInvalid, TCPSynSent},
		}},
		{"a SYN-ACK from the originator is invalid", []tcpStepT{
			{Original, syn, StateNew, TCPSynSent},
			{Original, synack, StateInvalid, TCPSynSent},
		}},
		{"a FIN before the SYN-ACK is invalid", []tcpStepT{
			{Original, syn, StateNew, TCPSynSent},
			{Original, finack, StateInvalid, TCPSynSent},
		}},
		{"a retransmitted SYN-ACK after the handshake passes", steps(handshake, []tcpStepT{{Reply, synack, StateEstablished, TCPEstablished}})},
		{"a SYN inside an established flow is invalid", steps(handshake, []tcpStepT{{Original, syn, StateInvalid, TCPEstablished}})},
		{"a SYN after time_wait starts a new connection", steps(timeWait, []tcpStepT{
			{Original, syn, StateNew, TCPSynSent},
			{Reply, synack, StateEstablished, TCPSynRecv},
		})},
		{"a SYN after a RST starts a new connection", steps(handshake, []tcpStepT{
			{Reply, rst, StateEstablished, TCPClose},
			{Original, syn, StateNew, TCPSynSent},
		})},
		{"simultaneous open", []tcpStepT{
			{Original, syn, StateNew, TCPSynSent},
			{Reply, syn, StateEstablished, TCPSynRecv},
			{Original, ack, StateEstablished, TCPEstablished},
		}},
		{"bad flag combinations are invalid and change nothing", steps(handshake, []tcpStepT{
			{Original, syn | fin, StateInvalid, TCPEstablished},
			{Original, 0, StateInvalid, TCPEstablished},
			{Reply, fin, StateInvalid, TCPEstablished},
			{Reply, fin | syn | rst | psh | ack | packet.TCPUrg, StateInvalid, TCPEstablished},
			{Original, syn | rst, StateInvalid, TCPEstablished},
		})},
		{"ECE and CWR do not make a combination invalid", []tcpStepT{
			{Original, syn | packet.TCPEce | packet.TCPCwr, StateNew, TCPSynSent},
			{Reply, synack | packet.TCPEce, StateEstablished, TCPSynRecv},
		}},
	}
	for _, fam := range []struct {
		name   string
		client netip.AddrPort
		server netip.AddrPort
	}{{"v4", ap(a4, 40000), ap(b4, 443)}, {"v6", ap(a6, 40000), ap(b6, 443)}} {
		for _, c := range cases {
			t.Run(fam.name+"/"+c.name, func(t *testing.T) {
				tb := newTable(t, Config{MaxFlows: 16})
				now := int64(time.Hour)
				for i, s := range c.steps {
					src, dst := fam.client, fam.server
					if s.dir == Reply {
						src, dst = dst, src
					}
					now += int64(time.Millisecond)
					r := tb.Track(parsed(t, tcpFrame(t, src, dst, s.flags)), now)
					if r.State != s.state {
						t.Fatalf("step %d (%v %#x): state %v, want %v", i, s.dir, s.flags, r.State, s.state)
					}
					f, d, ok := tb.Lookup(key(fam.client, fam.server, packet.ProtoTCP), now)
					if !ok {
						t.Fatalf("step %d: the flow is gone", i)
					}
					if d != Original || f.TCPState() != s.tcp {
						t.Fatalf("step %d (%v %#x): tcp state %v (dir %v), want %v", i, s.dir, s.flags, f.TCPState(), d, s.tcp)
					}
					if r.State != StateInvalid {
						if r.Flow != f || r.Dir != s.dir {
							t.Fatalf("step %d: result flow %p dir %v, want %p %v", i, r.Flow, r.Dir, f, s.dir)
						}
						if want := now + tb.tcpTO[s.tcp]; f.Expires() != want {
							t.Fatalf("step %d: expires %d, want now + %v", i, f.Expires(), time.Duration(tb.tcpTO[s.tcp]))
						}
					}
					tb.check(t)
				}
				if tb.Len() != 1 {
					t.Fatalf("Len %d, want 1", tb.Len())
				}
			})
		}
	}
}

func TestTCPFirstSegment(t *testing.T) {
	cases := []struct {
		name   string
		flags  uint8
		pickup bool
		state  State
		tcp    TCPState
	}{
		{"a SYN starts a flow", syn, false, StateNew, TCPSynSent},
		{"an ACK starts nothing", ack, false, StateInvalid, TCPNone},
		{"data starts nothing", data, false, StateInvalid, TCPNone},
		{"a SYN-ACK starts nothing", synack, false, StateInvalid, TCPNone},
		{"a FIN starts nothing", finack, false, StateInvalid, TCPNone},
		{"a RST starts nothing", rst, false, StateInvalid, TCPNone},
		{"SYN+FIN starts nothing", syn | fin, false, StateInvalid, TCPNone},
		{"with pickup an ACK starts an established flow", ack, true, StateNew, TCPEstablished},
		{"with pickup data starts an established flow", data, true, StateNew, TCPEstablished},
		{"with pickup a FIN still starts nothing", finack, true, StateInvalid, TCPNone},
		{"with pickup a RST still starts nothing", rstack, true, StateInvalid, TCPNone},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb := newTable(t, Config{MaxFlows: 16, TCPPickup: c.pickup})
			r := tb.Track(parsed(t, tcpFrame(t, ap(a4, 40000), ap(b4, 22), c.flags)), 1)
			if r.State != c.state {
				t.Fatalf("state %v, want %v", r.State, c.state)
			}
			wantLen := 0
			if c.tcp != TCPNone {
				wantLen = 1
				if r.Flow == nil || r.Flow.TCPState() != c.tcp || r.Dir != Original {
					t.Fatalf("result %+v, want a flow in %v", r, c.tcp)
				}
			} else if r.Flow != nil {
				t.Fatalf("invalid first segment has flow %v", r.Flow)
			}
			if tb.Len() != wantLen {
				t.Fatalf("Len %d, want %d", tb.Len(), wantLen)
			}
			if c.pickup && c.tcp == TCPEstablished {
				// The reply makes it established.
				r := tb.Track(parsed(t, tcpFrame(t, ap(b4, 22), ap(a4, 40000), ack)), 2)
				if r.State != StateEstablished || r.Dir != Reply {
					t.Fatalf("reply: %+v", r)
				}
			}
		})
	}
}

func TestValidTCPFlags(t *testing.T) {
	// Linux's tcp_valid_flags, written out the other way round.
	valid := map[uint8]bool{}
	for _, f := range []uint8{syn, syn | packet.TCPUrg, synack, rst, rstack, rstack | psh, finack, finack | packet.TCPUrg,
		ack, ack | packet.TCPUrg, data, data | packet.TCPUrg, finack | psh, finack | psh | packet.TCPUrg} {
		valid[f] = true
	}
	for f := 0; f < 256; f++ {
		if got, want := validTCPFlags(uint8(f)), valid[uint8(f)&0x3f]; got != want {
			t.Errorf("flags %#x: valid %v, want %v", f, got, want)
		}
	}
}
