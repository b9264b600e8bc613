package nat

import (
	"net/netip"
	"testing"

	"github.com/xnfdev/xnf/packet"
)

// FuzzProcess feeds arbitrary frames to a NAT holding a few flows (SNAT
// and DNAT) from either side: it must not panic, and checksums that were
// right on the way in are right on the way out.
func FuzzProcess(f *testing.F) {
	inSrv := netip.MustParseAddr("198.18.0.80")
	seeds := [][]byte{
		udpFrame(f, ap(inA2, 4000), ap(srvB, 53), "q"),
		udpFrame(f, ap(srvB, 53), ap(natX, 1024), "a"),
		tcpFrame(f, ap(inA, 4001), ap(srvB, 80), packet.TCPAck, 'x'),
		tcpFrame(f, ap(srvB, 80), ap(natX, 4001), packet.TCPAck),
		echoFrame(f, srvB, natX, 9, true),
		icmpErrorFrame(f, rtrR, natX, 11, 0, udpFrame(f, ap(natX, 1024), ap(srvB, 53), "q"), 0),
		icmpErrorFrame(f, rtrR, natX, 3, 4, tcpFrame(f, ap(natX, 4001), ap(srvB, 80), packet.TCPAck), 28),
		tcpFrame(f, ap(srvB, 1), ap(natX, 8080), packet.TCPSyn),
	}
	for i, s := range seeds {
		f.Add(s, i%2 == 1)
	}
	f.Fuzz(func(t *testing.T, data []byte, outside bool) {
		s := masq(t, func(c *Config) {
			c.Forwards = []Forward{{Proto: packet.ProtoTCP, Addr: natX, PortMin: 8080, PortMax: 8080, To: inSrv, ToPort: 80}}
		})
		run(t, s, portIn, udpFrame(t, ap(inA, 4000), ap(srvB, 53), "x"), sec)
		run(t, s, portIn, udpFrame(t, ap(inA2, 4000), ap(srvB, 53), "x"), sec)
		run(t, s, portIn, tcpFrame(t, ap(inA, 4001), ap(srvB, 80), packet.TCPSyn), sec)
		run(t, s, portIn, echoFrame(t, inA, srvB, 9, false), sec)
		in := uint16(portIn)
		if outside {
			in = portOut
		}
		var before packet.Packet
		before.Reset(append([]byte(nil), data...), 0, 0)
		before.Parse()
		ipOK := before.Flags&packet.FlagIPv4 != 0 && before.IPv4().ChecksumValid()
		l4OK := before.Err == packet.ErrNone && before.Flags&packet.FlagFragment == 0 && before.L4ChecksumValid()
		p := run(t, s, in, data, sec)
		if p.Verdict == packet.Drop {
			return
		}
		var after packet.Packet
		after.Reset(p.Data, 0, 0)
		after.Parse()
		if ipOK && !after.IPv4().ChecksumValid() {
			t.Errorf("IPv4 checksum broken")
		}
		if l4OK && !after.L4ChecksumValid() {
			t.Errorf("L4 checksum broken")
		}
	})
}
