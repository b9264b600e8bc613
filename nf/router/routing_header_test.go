package router

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/xnfdev/xnf/packet"
)

func hexFrame(t *testing.T, parts ...string) []byte {
	t.Helper()
	var b []byte
	for _, s := range parts {
		p, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, p...)
	}
	return b
}

// rh0Frame is UDP from 2001:db8::1 to dst (hex) through a type 0 routing
// header (RFC 2460's, deprecated by RFC 5095) listing 2001:db8:1::2, with
// segmentsLeft.
func rh0Frame(t *testing.T, segmentsLeft byte, dst string) []byte {
	return hexFrame(t,
		"02000000000202000000000186dd",                                                     // 02:00:00:00:00:01 > 02:00:00:00:00:02, IPv6
		"6000000000242b40"+"20010db8000000000000000000000001"+dst,                          // payload 36, next header routing (43), hop limit 64
		fmt.Sprintf("110200%02x00000000", segmentsLeft)+"20010db8000100000000000000000002", // UDP next, 24 bytes, type 0, segments left, reserved; the address
		"13880035000cee1972683021",                                                         // UDP 5000 > 53, "rh0!" (checksummed to the final destination)
	)
}

const routerIn6 = "20010db8000000000000000000000002"

// RFC 5095 3: a type 0 routing header addressed to the router is treated
// as an unrecognized routing type, which with segments left is answered
// with ICMPv6 parameter problem code 0, pointer at the routing type field
// (RFC 8200 4.4): byte 42 of the packet, 40 for the IPv6 header and 2 into
// the routing header. The answer quotes the whole packet, comes from the
// address it was sent to, and goes back out of the port it came in on.
func TestRoutingHeaderZeroToTheRouterGetsParameterProblem(t *testing.T) {
	r := testRouter(t, nil)
	in := rh0Frame(t, 1, routerIn6)
	p := run(r, 0, in)[0]
	want := hexFrame(t,
		"02000000000102000000000286dd", // back to the sender's MAC, from in0's
		"6000000000543a40"+"20010db8000000000000000000000002"+"20010db8000000000000000000000001", // 84 bytes of ICMPv6, hop limit 64, 2001:db8::2 > 2001:db8::1
		"0400d5cc"+"0000002a",       // parameter problem, code 0, checksum; pointer 42
		hex.EncodeToString(in[14:]), // the packet, whole
	)
	if p.Verdict != packet.Bounce || !bytes.Equal(p.Data, want) {
		t.Fatalf("verdict %v %v, answer\n%x\nwant\n%x", p.Verdict, p.Reason, p.Data, want)
	}
	decode(t, p.Data)
	if c := r.Counters(); c.RoutingHeader != 1 || c.ParamProblemSent != 1 || c.Local != 0 {
		t.Errorf("counters %+v: want routing_header 1, param_problem_sent 1", c)
	}
}

func TestRoutingHeaderCases(t *testing.T) {
	cases := []struct {
		name      string
		frame     func(t *testing.T) []byte
		verdict   packet.Verdict
		reason    packet.DropReason
		refused   uint64 // routing_header
		answered  uint64 // param_problem_sent
		forwarded uint64
	}{
		{"no segments left: the header is ignored and the UDP is the router's", func(t *testing.T) []byte { return rh0Frame(t, 0, routerIn6) },
			packet.Drop, packet.DropConsumed, 0, 0, 0},
		{"in transit, for another node, it is forwarded: only the destination processes it", func(t *testing.T) []byte {
			return rh0Frame(t, 1, "20010db8000100000000000000000002")
		}, packet.Forward, packet.DropNone, 0, 0, 1},
		{"to the router's other address too", func(t *testing.T) []byte { return rh0Frame(t, 1, "20010db8000100000000000000000001") },
			packet.Bounce, packet.DropNone, 1, 1, 0},
		{"an ICMPv6 error is never answered with one", func(t *testing.T) []byte {
			f := rh0Frame(t, 1, routerIn6)
			f[14+40] = packet.ProtoICMPv6 // the routing header's next header: ICMPv6 destination unreachable
			copy(f[14+40+24:], []byte{1, 4, 0, 0, 0, 0, 0, 0})
			return f
		}, packet.Drop, packet.DropUnsupported, 1, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := testRouter(t, nil)
			p := run(r, 0, tc.frame(t))[0]
			if p.Verdict != tc.verdict || p.Reason != tc.reason {
				t.Errorf("verdict %v %v, want %v %v", p.Verdict, p.Reason, tc.verdict, tc.reason)
			}
			if c := r.Counters(); c.RoutingHeader != tc.refused || c.ParamProblemSent != tc.answered || c.Forwarded != tc.forwarded {
				t.Errorf("counters %+v", c)
			}
		})
	}
}

// The answers come out of the ICMP error budget: beyond ICMPBurst they
// are not sent, and the packets are still dropped.
func TestRoutingHeaderAnswersAreRateLimited(t *testing.T) {
	r := testRouter(t, func(c *Config) { c.ICMPRate, c.ICMPBurst = 1, 2 })
	var frames [][]byte
	for range 5 {
		frames = append(frames, rh0Frame(t, 1, routerIn6))
	}
	ps := run(r, 0, frames...)
	bounced := 0
	for _, p := range ps {
		if p.Verdict == packet.Bounce {
			bounced++
		} else if p.Reason != packet.DropUnsupported {
			t.Errorf("unanswered: %v %v, want dropped as unsupported", p.Verdict, p.Reason)
		}
	}
	if c := r.Counters(); bounced != 2 || c.RoutingHeader != 5 || c.ParamProblemSent != 2 || c.ICMPRateLimited != 3 {
		t.Errorf("%d answered; counters %+v: want 2 sent, 3 rate limited", bounced, c)
	}
}
