package lab

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnfdev/xnf/packet"
)

// ListenUDP opens a kernel UDP socket on addr:port (IPv4 or IPv6) inside
// the namespace, with a 16 MiB receive buffer (SO_RCVBUFFORCE, root
// only), so a test that counts datagrams exactly is not undone by the
// default buffer overflowing while it reads.
func (n *NS) ListenUDP(addr string, port int) (*net.UDPConn, error) {
	var c *net.UDPConn
	ip := net.ParseIP(addr)
	err := n.Do(func() (err error) {
		c, err = net.ListenUDP(family("udp", ip), &net.UDPAddr{IP: ip, Port: port})
		return err
	})
	if err != nil {
		return nil, err
	}
	raw, err := c.SyscallConn()
	if err == nil {
		raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20) })
	}
	return c, nil
}

// family is network ("udp", "tcp", "ip") for ip's family: network+"4"
// or network+"6".
func family(network string, ip net.IP) string {
	if ip.To4() == nil {
		return network + "6"
	}
	return network + "4"
}

// SendUDP sends n datagrams from the namespace to dst ("addr:port", or
// "[addr]:port" for IPv6) over one connected socket, the i-th carrying
// fmt.Sprintf(format, i), and sleeps pause after every every datagrams (every 0: never), so that a
// copy-mode forwarder's rings keep up and a test can count exactly.
// Write errors are ignored: the receiving side's count is the check.
func (n *NS) SendUDP(dst string, count int, format string, every int, pause time.Duration) error {
	to, err := net.ResolveUDPAddr("udp", dst)
	if err != nil {
		return err
	}
	return n.Do(func() error {
		c, err := net.DialUDP(family("udp", to.IP), nil, to)
		if err != nil {
			return err
		}
		defer c.Close()
		for i := range count {
			fmt.Fprintf(c, format, i)
			if every > 0 && i%every == every-1 {
				time.Sleep(pause)
			}
		}
		return nil
	})
}

// Ping sends ICMP (or, to an IPv6 dst, ICMPv6) echo requests with
// identifier id from the namespace to dst, up to tries times a second
// apart (the first may be spent on neighbor resolution), and returns nil
// at the first reply from dst.
func (n *NS) Ping(dst string, id uint16, tries int) error {
	ip := net.ParseIP(dst)
	if ip == nil {
		return errors.New("lab: ping: " + dst + " is not an IP address")
	}
	network, wildcard, request, reply := "ip4:icmp", "0.0.0.0", byte(8), byte(0)
	if ip.To4() == nil {
		network, wildcard, request, reply = "ip6:ipv6-icmp", "::", 128, 129
	}
	return n.Do(func() error {
		c, err := net.ListenPacket(network, wildcard)
		if err != nil {
			return err
		}
		defer c.Close()
		msg := []byte{request, 0, 0, 0, byte(id >> 8), byte(id), 0, 1, 'x', 'n', 'f', '!'}
		if request == 8 {
			// The kernel computes ICMPv6 checksums itself (RFC 3542 3.1).
			binary.BigEndian.PutUint16(msg[2:], packet.Checksum(msg))
		}
		buf := make([]byte, 1500)
		for try := 0; try < tries; try++ {
			if _, err := c.WriteTo(msg, &net.IPAddr{IP: ip}); err != nil {
				return err
			}
			c.SetReadDeadline(time.Now().Add(time.Second))
			for {
				k, from, err := c.ReadFrom(buf)
				if err != nil {
					break
				}
				if k >= 8 && buf[0] == reply && binary.BigEndian.Uint16(buf[4:]) == id && from.(*net.IPAddr).IP.Equal(ip) {
					return nil
				}
			}
		}
		return errors.New("no echo reply from " + dst + " after " + strconv.Itoa(tries) + " tries")
	})
}

// SendUDPFlows sends count datagrams of size payload bytes from the
// namespace to dst over flows sockets (one source port each), round
// robin, paced to about rate datagrams a second (0: unpaced). It returns
// how many were sent. A 64-byte frame on the wire carries 18 bytes of
// UDP payload.
func (n *NS) SendUDPFlows(dst string, flows, count, size int, rate float64) (int, error) {
	sent := 0
	to, err := net.ResolveUDPAddr("udp4", dst)
	if err != nil {
		return 0, err
	}
	err = n.Do(func() error {
		// Unconnected sockets: a port-unreachable answer from a peer with
		// no listener is not an error here.
		conns := make([]*net.UDPConn, 0, flows)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for range max(flows, 1) {
			c, err := net.ListenUDP("udp4", nil)
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		buf := make([]byte, size)
		start := time.Now()
		for i := range count {
			if _, err := conns[i%len(conns)].WriteToUDP(buf, to); err != nil {
				return err
			}
			sent++
			if rate > 0 && i%256 == 255 {
				if ahead := time.Duration(float64(i+1)/rate*float64(time.Second)) - time.Since(start); ahead > 0 {
					time.Sleep(ahead)
				}
			}
		}
		return nil
	})
	return sent, err
}

// SendTCP sends size bytes over a kernel TCP connection from namespace n
// to a listener it opens in to at addr:port (IPv4 or IPv6), and reports an
// error unless every byte arrives, in order, within timeout.
func (n *NS) SendTCP(to *NS, addr string, port, size int, timeout time.Duration) error {
	hostPort := net.JoinHostPort(addr, strconv.Itoa(port))
	var ln net.Listener
	if err := to.Do(func() (err error) { ln, err = net.Listen("tcp", hostPort); return err }); err != nil {
		return err
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(timeout))
		b, _ := io.ReadAll(c)
		got <- b
	}()
	data := make([]byte, size)
	for i := range data {
		data[i] = "0123456789abcdef"[i%16]
	}
	if err := n.Do(func() error {
		c, err := net.DialTimeout("tcp", hostPort, 3*time.Second)
		if err != nil {
			return err
		}
		c.SetWriteDeadline(time.Now().Add(timeout))
		_, err = c.Write(data)
		c.Close()
		return err
	}); err != nil {
		return err
	}
	if b := <-got; !bytes.Equal(b, data) {
		return fmt.Errorf("%s got %d bytes from %s, want %d identical", to.Name, len(b), n.Name, len(data))
	}
	return nil
}
