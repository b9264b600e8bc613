package lb

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/xnfdev/xnf/packet"
)

// Config is a load balancer's virtual services, for New and Update.
type Config struct {
	// Services are the virtual services; each (Proto, VIP) once.
	Services []Service
	// SNAT, when set, is the source address that balanced packets leave
	// with towards their backend (full NAT): at most one IPv4 and one
	// IPv6 address, each used for the services of its family. It is for
	// one-arm deployments and backends whose replies would not come
	// back through the balancer otherwise. The client's port is kept when
	// the backend has no other flow from that port, else another is
	// chosen from 1024-65535. Empty (or no address of a service's
	// family): the client's address stays, and the backends must route
	// their replies back through the balancer.
	SNAT []netip.Addr
	// MaxProbes bounds the ports tried for a new flow under SNAT once
	// the client's port is taken (default 128).
	MaxProbes int
}

// Service is a virtual service: TCP or UDP packets to VIP, an address and
// port, balanced over Backends in NAT mode.
type Service struct {
	Proto    uint8 // packet.ProtoTCP or packet.ProtoUDP
	VIP      netip.AddrPort
	Backends []Server
	// TableSize is the size of the service's Maglev table: a prime, 0
	// for DefaultSize (see Build for what it must satisfy).
	TableSize int
}

// Server is a backend of a service.
type Server struct {
	// Addr is the backend's address, of the VIP's family, and port; port
	// 0 is the VIP's port.
	Addr netip.AddrPort
	// Weight is the backend's share of new flows relative to the other
	// backends'; 0 drains it: no new flow goes to it, its established
	// flows go on.
	Weight uint32
}

// Mode is how a balanced packet reaches its backend.
type Mode uint8

// NAT rewrites a balanced packet's destination to its backend (and, with
// Config.SNAT, its source to a local address); the backend's replies come
// back through the balancer and are translated back. The only mode so
// far: direct server return (encapsulation, replies straight to the
// client) is to come.
const NAT Mode = 0

// ProtoName is "tcp" or "udp" for the protocols a service may have.
func ProtoName(p uint8) string {
	switch p {
	case packet.ProtoTCP:
		return "tcp"
	case packet.ProtoUDP:
		return "udp"
	}
	return fmt.Sprintf("proto %d", p)
}

// Name is how counters and errors name the service: "tcp/198.18.1.100:80".
func (s *Service) Name() string { return ProtoName(s.Proto) + "/" + s.VIP.String() }

// Balancer is what the stages of one load balancer share, one per worker:
// the services with their Maglev tables, and the names of their
// counters. Update swaps in new services and tables whole (one atomic
// store), so a stage sees the old set or the new one, never a mix, and
// takes the new one at its next batch. It is safe for concurrent use.
type Balancer struct {
	cur atomic.Pointer[state]

	mu sync.Mutex // serializes Update; guards what follows
	// The counters' slots: a service's and a backend's slot is the same
	// for good, so its counters carry on across updates that remove and
	// add it back. Append only.
	svcSlot  map[string]int32
	beSlot   map[string]int32
	svcNames []string // by slot: "tcp/198.18.1.100:80"
	beNames  []string // by slot: "tcp/198.18.1.100:80/198.18.2.10:80"
	beSvc    []int32  // by backend slot: its service's slot
}

// state is one published configuration; immutable.
type state struct {
	services  map[svcKey]*service
	addrs     map[[16]byte]uint8 // VIPs, SNAT addresses, backends (addr* bits)
	snat4     [16]byte
	snat6     [16]byte
	has4      bool
	has6      bool
	maxProbes int
	nSvc, nBe int     // slots when the state was made
	beSvc     []int32 // backend slot -> service slot, len nBe
	sigs      map[svcKey]string
}

const (
	addrVIP = 1 << iota
	addrSNAT
	addrBackend
)

type svcKey struct {
	addr  [16]byte // IPv4 mapped, as in packet.FlowKey
	port  uint16
	proto uint8
}

type service struct {
	slot    int32
	table   *Table   // nil: no backend of weight above 0
	servers []server // servers[table.Lookup(h)] is the flow's backend
}

type server struct {
	addr [16]byte
	port uint16
	slot int32
}

// New checks cfg and returns a balancer serving it.
func New(cfg Config) (*Balancer, error) {
	b := &Balancer{svcSlot: map[string]int32{}, beSlot: map[string]int32{}}
	if err := b.Update(cfg); err != nil {
		return nil, err
	}
	return b, nil
}

// Update replaces the services and their tables with cfg's, at once. It
// checks everything and builds every table before it changes anything:
// on error the services in force stay. Flows already balanced keep their
// backend (their conntrack entries hold it), whether it is still in its
// pool, drained or gone; only new flows consult the new tables. A
// service whose pool and table size are unchanged keeps its table.
func (b *Balancer) Update(cfg Config) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	prev := b.cur.Load()
	st := &state{services: map[svcKey]*service{}, addrs: map[[16]byte]uint8{}, sigs: map[svcKey]string{}, maxProbes: cfg.MaxProbes}
	if st.maxProbes <= 0 {
		st.maxProbes = 128
	}
	if len(cfg.Services) == 0 {
		return errors.New("lb: no services")
	}
	for i, a := range cfg.SNAT {
		a = a.Unmap()
		switch {
		case !a.IsValid():
			return fmt.Errorf("lb: snat address %d is not set", i)
		case a.Is4() && st.has4, a.Is6() && st.has6:
			return fmt.Errorf("lb: snat address %s: a second %s address (expected at most one IPv4 and one IPv6 address)", a, family(a))
		case a.Is4():
			st.snat4, st.has4 = a.As16(), true
		default:
			st.snat6, st.has6 = a.As16(), true
		}
		st.addrs[a.As16()] |= addrSNAT
	}
	type pending struct {
		key     svcKey
		name    string
		svc     *service
		ids     []string // backend names, by server
		backend []Backend
		size    int
	}
	var todo []pending
	for i := range cfg.Services {
		sv := &cfg.Services[i]
		vip := netip.AddrPortFrom(sv.VIP.Addr().Unmap(), sv.VIP.Port())
		fail := func(be int, format string, args ...any) error {
			return &ServiceError{Index: i, Backend: be, Err: fmt.Errorf(format, args...)}
		}
		switch {
		case sv.Proto != packet.ProtoTCP && sv.Proto != packet.ProtoUDP:
			return fail(-1, "protocol %d: expected tcp (%d) or udp (%d)", sv.Proto, packet.ProtoTCP, packet.ProtoUDP)
		case !vip.Addr().IsValid():
			return fail(-1, "no VIP address")
		case vip.Port() == 0:
			return fail(-1, "%s port 0: expected a port from 1 to 65535", vip)
		}
		name := ProtoName(sv.Proto) + "/" + vip.String()
		fail = func(be int, format string, args ...any) error {
			return &ServiceError{Index: i, Name: name, Backend: be, Err: fmt.Errorf(format, args...)}
		}
		k := svcKey{addr: vip.Addr().As16(), port: vip.Port(), proto: sv.Proto}
		if _, dup := st.services[k]; dup {
			return fail(-1, "the same service twice (expected each protocol, address and port once)")
		}
		if len(sv.Backends) == 0 {
			return fail(-1, "no backends (expected at least one; weight 0 drains a backend)")
		}
		p := pending{key: k, name: name, svc: &service{}, size: sv.TableSize}
		seen := map[netip.AddrPort]int{}
		var sig strings.Builder
		fmt.Fprintf(&sig, "%d", sv.TableSize)
		for j, be := range sv.Backends {
			a := netip.AddrPortFrom(be.Addr.Addr().Unmap(), be.Addr.Port())
			if a.Port() == 0 {
				a = netip.AddrPortFrom(a.Addr(), vip.Port())
			}
			switch {
			case !a.Addr().IsValid():
				return fail(j, "no address")
			case a.Addr().Is4() != vip.Addr().Is4():
				return fail(j, "%s is not an %s address like the VIP (no translation between families)", a.Addr(), family(vip.Addr()))
			}
			if o, dup := seen[a]; dup {
				return fail(j, "%s is also backend %d (expected each address and port once)", a, o)
			}
			seen[a] = j
			id := a.String()
			p.ids = append(p.ids, name+"/"+id)
			p.backend = append(p.backend, Backend{ID: id, Weight: be.Weight})
			p.svc.servers = append(p.svc.servers, server{addr: a.Addr().As16(), port: a.Port()})
			fmt.Fprintf(&sig, " %s=%d", id, be.Weight)
			st.addrs[a.Addr().As16()] |= addrBackend
		}
		st.sigs[k] = sig.String()
		if prev != nil && prev.sigs[k] == st.sigs[k] {
			p.svc.table = prev.services[k].table
		} else {
			t, err := Build(sv.TableSize, p.backend)
			switch {
			case errors.Is(err, ErrNoBackends):
				// Every backend drained: new flows are refused until
				// one has a weight again.
			case err != nil:
				return &ServiceError{Index: i, Name: name, Backend: -1, Err: err}
			}
			p.svc.table = t
		}
		st.services[k] = p.svc
		st.addrs[k.addr] |= addrVIP
		todo = append(todo, p)
	}
	// Everything checked: slots for what is new, then publish.
	for _, p := range todo {
		slot, ok := b.svcSlot[p.name]
		if !ok {
			slot = int32(len(b.svcNames))
			b.svcSlot[p.name] = slot
			b.svcNames = append(b.svcNames, p.name)
		}
		p.svc.slot = slot
		for j, id := range p.ids {
			bs, ok := b.beSlot[id]
			if !ok {
				bs = int32(len(b.beNames))
				b.beSlot[id] = bs
				b.beNames = append(b.beNames, id)
				b.beSvc = append(b.beSvc, slot)
			}
			p.svc.servers[j].slot = bs
		}
	}
	st.nSvc, st.nBe = len(b.svcNames), len(b.beNames)
	st.beSvc = b.beSvc[:st.nBe:st.nBe]
	b.cur.Store(st)
	return nil
}

// ServiceError is Update's (and New's) error about one service of a
// Config: the table's, or one of its backends'.
type ServiceError struct {
	Index   int    // in Config.Services
	Name    string // "tcp/198.18.1.100:80", once known
	Backend int    // the backend's index in the service's Backends; -1: the service itself
	Err     error  // what is wrong (Build's error for the table)
}

func (e *ServiceError) Error() string {
	s := fmt.Sprintf("lb: service %d", e.Index)
	if e.Name != "" {
		s += " (" + e.Name + ")"
	}
	if e.Backend >= 0 {
		s += fmt.Sprintf(": backend %d", e.Backend)
	}
	return s + ": " + e.Err.Error()
}

func (e *ServiceError) Unwrap() error { return e.Err }

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// names returns the counters' names by slot (at least as many as any
// published state has slots).
func (b *Balancer) names() (svc, be []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.svcNames, b.beNames
}

// snat returns the SNAT address for a flow of orig's family, if any.
func (st *state) snat(v4 bool) ([16]byte, bool) {
	if v4 {
		return st.snat4, st.has4
	}
	return st.snat6, st.has6
}
