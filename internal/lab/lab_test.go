package lab

import (
	"net"
	"testing"
	"time"
)

func TestLabPingsAcrossVethAndCleansUp(t *testing.T) {
	RequireRoot(t)
	l, err := New("xt-labself")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a := l.MustNS(t, "a")
	b := l.MustNS(t, "b")
	l.MustVeth(t, Veth{A: a, AName: "a0", B: b, BName: "b0", Queues: 2,
		AAddrs: []string{"198.18.0.1/24"}, BAddrs: []string{"198.18.0.2/24"}})

	link, err := a.Link("a0")
	if err != nil {
		t.Fatal(err)
	}
	if got := link.Attrs().NumRxQueues; got != 2 {
		t.Errorf("a0 has %d RX queues, want 2", got)
	}

	// A UDP datagram from a to b proves addresses, links and namespaces.
	var srv *net.UDPConn
	if err := b.Do(func() (err error) {
		srv, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(198, 18, 0, 2), Port: 9000})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := a.Do(func() error {
		c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(198, 18, 0, 2), Port: 9000})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("hello"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 64)
	n, _, err := srv.ReadFromUDP(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("got %q, %v; want hello", buf[:n], err)
	}

	names := l.Namespaces()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if Exists(n) {
			t.Errorf("namespace %s still exists after Close", n)
		}
	}
}
