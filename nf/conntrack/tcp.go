package conntrack

import "github.com/xnfdev/xnf/packet"

// tcpValid has bit f set for each combination f of the six classic TCP
// flags (FIN, SYN, RST, PSH, ACK, URG; ECE and CWR are ignored) that a TCP
// stack sends: Linux's tcp_valid_flags. Anything else (no flags at all,
// SYN+FIN, FIN without ACK, "Christmas tree") is a scan or an attack and
// StateInvalid whatever the flow.
const tcpValid uint64 = 1<<(packet.TCPSyn) |
	1<<(packet.TCPSyn|packet.TCPUrg) |
	1<<(packet.TCPSyn|packet.TCPAck) |
	1<<(packet.TCPRst) |
	1<<(packet.TCPRst|packet.TCPAck) |
	1<<(packet.TCPRst|packet.TCPAck|packet.TCPPsh) |
	1<<(packet.TCPFin|packet.TCPAck) |
	1<<(packet.TCPFin|packet.TCPAck|packet.TCPUrg) |
	1<<(packet.TCPAck) |
	1<<(packet.TCPAck|packet.TCPUrg) |
	1<<(packet.TCPAck|packet.TCPPsh) |
	1<<(packet.TCPAck|packet.TCPPsh|packet.TCPUrg) |
	1<<(packet.TCPFin|packet.TCPAck|packet.TCPPsh) |
	1<<(packet.TCPFin|packet.TCPAck|packet.TCPPsh|packet.TCPUrg)

func validTCPFlags(fl uint8) bool { return tcpValid>>(fl&0x3f)&1 != 0 }

// What tcpStep decides.
const (
	tcpAccept  = iota // the segment belongs to the flow (its state may have moved)
	tcpInvalid        // it does not; nothing changed
	tcpReopen         // a SYN after the connection closed: start over
)

// tcpStep moves e's TCP state for a segment with flags fl (already known to
// be a valid combination) in direction d. It looks at flags and directions
// only: unlike Linux it keeps no sequence-number windows, so a segment with
// the right flags from outside the window passes, and any RST closes.
//
//	SYN (orig)          none -> syn_sent; time_wait, close -> syn_sent (reopen)
//	SYN+ACK (reply)     syn_sent -> syn_recv; retransmissions pass
//	ACK (orig)          syn_recv -> established
//	FIN (either)        -> fin_wait; FINs from both sides -> last_ack
//	ACK (other side)    fin_wait -> close_wait; last_ack -> time_wait
//	RST (either)        -> close
func tcpStep(e *Flow, d Dir, fl uint8) int {
	st := e.tcp
	syn, ack := fl&packet.TCPSyn != 0, fl&packet.TCPAck != 0
	switch {
	case fl&packet.TCPRst != 0:
		e.tcp = TCPClose
	case syn && !ack:
		switch st {
		case TCPSynSent:
			if d == Reply { // simultaneous open
				e.tcp = TCPSynRecv
			}
		case TCPSynRecv:
			if d == Reply {
				return tcpInvalid
			}
			// The SYN-ACK was lost and the SYN is sent again.
		case TCPTimeWait, TCPClose:
			return tcpReopen
		default:
			return tcpInvalid
		}
	case syn: // SYN+ACK
		if d != Reply {
			return tcpInvalid
		}
		switch st {
		case TCPSynSent:
			e.tcp = TCPSynRecv
		case TCPSynRecv, TCPEstablished:
			// A retransmission: the final ACK was lost.
		default:
			return tcpInvalid
		}
	case fl&packet.TCPFin != 0:
		switch st {
		case TCPSynSent:
			return tcpInvalid
		case TCPTimeWait, TCPClose:
			return tcpAccept // a retransmission
		}
		e.status |= stFinOrig << d
		if e.status&(stFinOrig|stFinReply) == stFinOrig|stFinReply {
			if st != TCPLastAck {
				e.tcp = TCPLastAck
				e.status &^= stLastFinRe
				if d == Reply {
					e.status |= stLastFinRe
				}
			}
		} else if st == TCPSynRecv || st == TCPEstablished {
			e.tcp = TCPFinWait
		}
	default: // ACK, with or without data
		switch st {
		case TCPSynSent:
			return tcpInvalid // nothing to acknowledge yet
		case TCPSynRecv:
			if d == Original {
				e.tcp = TCPEstablished
			}
		case TCPFinWait:
			if e.status&(stFinOrig<<d) == 0 {
				e.tcp = TCPCloseWait
			}
		case TCPLastAck:
			last := Original
			if e.status&stLastFinRe != 0 {
				last = Reply
			}
			if d != last {
				e.tcp = TCPTimeWait
			}
		}
	}
	return tcpAccept
}
