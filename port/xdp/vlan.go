package xdp

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"github.com/xnfdev/xnf/afxdp"
	"github.com/xnfdev/xnf/packet"
	"github.com/xnfdev/xnf/pipeline"
	"github.com/xnfdev/xnf/port"
)

// 802.1Q on AF_XDP ports.
//
// An Interface with a VLAN (Interface.VLAN, `vlan: 100`) is an access port
// on a tagged wire, like eth0.100 on Linux: it receives the frames tagged
// with its VLAN, untagged, and tags what it transmits. VLAN ports (the
// Go value VLAN, `type: vlan`) are more logical ports over one Interface,
// their parent, each a pipeline port of its own: the parent's socket on
// each worker is shared by the parent's port and its VLANs' ports. The
// parent keeps what belongs to its own VLAN: untagged frames (the native
// VLAN, as eth0 next to eth0.100), or those tagged Interface.VLAN.
//
// Receive: the parent's port takes frames off the socket and demultiplexes
// them by VLAN ID. Its own frames go into its batch; each VLAN port's wait
// in a queue of that port (packet.MaxBurst frames, FIFO, so each VLAN keeps
// its order) until the worker asks that port, later in the same loop (a
// VLAN port comes after its parent among the worker's ports). The parent
// takes no more frames off the socket than its batch and every queue can
// hold, so nothing is dropped for want of room: the rest waits in the RX
// ring. Frames tagged with a VLAN no port carries, untagged frames when
// the parent is an access port, and 802.1ad (QinQ) frames are freed at
// once and counted (VLANCounters.Unknown). A tag with VLAN ID 0 is a
// priority tag: its frame counts as untagged (802.1Q 9.6).
//
// Strip and push never copy more than the 12 MAC bytes: the MACs move 4
// bytes over the tag, and Data and Addr move with them. A received frame
// has the UMEM's headroom (256 bytes) in front, so a tag pushed on
// transmit lands there, and a descriptor's address may point anywhere in
// its chunk (aligned mode): the TX descriptor is the packet's new Addr.
// A frame without 4 bytes of headroom (one a pcap port put at the start of
// a chunk) shifts whole toward its end (pipeline.PushFront); one without
// tailroom either is dropped and counted (VLANCounters.NoRoom).
//
// The XDP program does not look at VLAN IDs to steer: every frame its
// filter claims reaches the socket, also those of VLANs nobody serves,
// which xnf then drops. Only the firewall pre-filter reads them, to judge
// each frame as the port it reaches (Device.offloadVLANs).
// Passing the unserved ones to the kernel instead would take a VLAN ID
// set in the program's filter.

// VLAN is a port carrying one 802.1Q VLAN of an AF_XDP port, its parent:
// the port type `vlan` of chain files.
type VLAN struct {
	// Parent names the Interface port whose wire carries the VLAN. It must
	// come before the VLAN in the service's ports (port.Env.Opened).
	Parent string
	// VID is the VLAN ID, 1-4094, unique among the parent's VLANs and the
	// parent's own Interface.VLAN.
	VID uint16
}

// Open registers the VLAN with its parent's device.
func (v VLAN) Open(env port.Env) (port.Device, error) {
	if v.VID < 1 || v.VID > 4094 {
		return nil, fmt.Errorf("port %s: VLAN ID %d: expected 1-4094", env.Name, v.VID)
	}
	if env.Opened == nil {
		return nil, fmt.Errorf("port %s: VLAN %d of %s: the service does not say which ports it opened (port.Env.Opened)", env.Name, v.VID, v.Parent)
	}
	pd, ok := env.Opened(v.Parent)
	if !ok {
		return nil, fmt.Errorf("port %s: parent port %q is not opened before it (a VLAN port comes after its parent)", env.Name, v.Parent)
	}
	d, ok := pd.(*Device)
	if !ok {
		return nil, fmt.Errorf("port %s: parent port %q is %T, not an AF_XDP port", env.Name, v.Parent, pd)
	}
	m, err := d.addVLAN(env.Name, v.VID, env.Index)
	if err != nil {
		return nil, fmt.Errorf("port %s: %w", env.Name, err)
	}
	return &vlanDevice{parent: d, member: m, name: env.Name, vid: v.VID}, nil
}

// addVLAN makes the VLAN, port index in the service, a member of every
// worker's trunk on d.
func (d *Device) addVLAN(name string, vid uint16, index int) (int, error) {
	if len(d.trunks) > 0 {
		return 0, fmt.Errorf("VLAN %d: port %s has made its workers' ports already", vid, d.name)
	}
	if vid == d.cfg.VLAN {
		return 0, fmt.Errorf("VLAN %d is port %s's own VLAN", vid, d.name)
	}
	for _, v := range d.vlans {
		if v.vid == vid {
			return 0, fmt.Errorf("VLAN %d of %s is port %s already", vid, d.name, v.name)
		}
	}
	d.vlans = append(d.vlans, vlanMember{name: name, vid: vid})
	d.vlanIndex = append(d.vlanIndex, index)
	if err := d.offloadVLANs(); err != nil {
		d.vlans, d.vlanIndex = d.vlans[:len(d.vlans)-1], d.vlanIndex[:len(d.vlanIndex)-1]
		return 0, err
	}
	return len(d.vlans), nil
}

type vlanMember struct {
	name string
	vid  uint16
}

// vlanDevice is an opened VLAN port: a member of its parent's trunks.
type vlanDevice struct {
	parent *Device
	member int
	name   string
	vid    uint16
}

// Port is the VLAN's port on worker w, over the parent's socket of that
// worker, which must be made first.
func (v *vlanDevice) Port(w int, pool pipeline.FramePool) (pipeline.Port, error) {
	if w >= len(v.parent.trunks) || v.parent.trunks[w] == nil {
		return nil, fmt.Errorf("port %s: worker %d has no port of its parent %s yet (a VLAN port comes after its parent)", v.name, w, v.parent.name)
	}
	t := v.parent.trunks[w]
	if t.umem != pool {
		return nil, fmt.Errorf("port %s: worker %d's frame pool is not its parent's", v.name, w)
	}
	return &VLANPort{t: t, m: &t.members[v.member],
		name: fmt.Sprintf("%s.%d/q%d", t.ifname, v.vid, t.queue)}, nil
}

// Close is a no-op: the parent's device owns the interface.
func (v *vlanDevice) Close() error { return nil }

// VLANCounters count what the VLAN demultiplexing of one socket dropped.
type VLANCounters struct {
	// Unknown counts frames received with a VLAN (or without one) that no
	// port on the interface carries, and 802.1ad frames.
	Unknown uint64
	// NoRoom counts frames dropped on transmit because their frame had
	// no room for the tag.
	NoRoom uint64
}

// noVLAN is the table entry of a VLAN ID that no port carries; vidQinQ is
// the VLAN ID frames are looked up with when their outer tag is not
// 802.1Q (4095 is reserved: never a port's).
const (
	noVLAN  = 0
	vidQinQ = 4095
)

// trunk is one worker's socket of an interface with VLANs: the parent's
// port is member 0, each VLAN port another.
type trunk struct {
	sock      *afxdp.Socket // nil in tests, which set recv, xmit and txFree
	recv      func([]afxdp.Desc) int
	xmit      func([]afxdp.Desc) int
	txFree    func() int
	umem      *afxdp.UMEM
	frameSize int
	ifname    string
	queue     int
	// byVID maps a VLAN ID (0: untagged) to its member's index + 1.
	byVID   [4096]uint8
	members []member
	descs   [packet.MaxBurst]afxdp.Desc
	drops   [packet.MaxBurst]uint64 // frames of unknown VLANs, freed once per receive
	ndrops  int
	addrs   [packet.MaxBurst]uint64 // scratch for Release
	// Scratch for transmit: the packet of each descriptor, and the
	// packets without room for a tag.
	descAt, noRoomAt [packet.MaxBurst]int
	closed           bool

	unknown, noRoom atomic.Uint64
}

// member is one port of a trunk.
type member struct {
	tci uint16 // pushed on transmit (0: the member is untagged)
	q   fifo   // received for it, not yet taken (members but the parent)
}

// fifo is a bounded queue of received frames, already untagged.
type fifo struct {
	d          [packet.MaxBurst]afxdp.Desc
	head, size int
}

func (q *fifo) room() int { return len(q.d) - q.size }

func (q *fifo) push(d afxdp.Desc) {
	q.d[(q.head+q.size)%len(q.d)] = d
	q.size++
}

func (q *fifo) pop() afxdp.Desc {
	d := q.d[q.head]
	q.head = (q.head + 1) % len(q.d)
	q.size--
	return d
}

// newTrunk makes the trunk of sock: the parent's own VLAN (0: untagged)
// is member 0, vlans the others, in order.
func newTrunk(sock *afxdp.Socket, own uint16, vlans []vlanMember) *trunk {
	t := newTrunkOver(sock.UMEM(), own, vlans)
	t.sock, t.recv, t.xmit, t.txFree = sock, sock.Receive, sock.Transmit, sock.TXFree
	t.ifname, t.queue = sock.Interface(), sock.Queue()
	return t
}

// newTrunkOver is newTrunk without a socket (recv, xmit, txFree unset).
func newTrunkOver(u *afxdp.UMEM, own uint16, vlans []vlanMember) *trunk {
	t := &trunk{umem: u, frameSize: u.FrameSize()}
	t.members = make([]member, 1+len(vlans))
	t.members[0].tci = own
	t.byVID[own] = 1
	for i, v := range vlans {
		t.members[1+i].tci = v.vid
		t.byVID[v.vid] = uint8(2 + i)
	}
	return t
}

// vid is the VLAN ID a frame is demultiplexed by: 0 for an untagged or
// priority-tagged frame, vidQinQ for an 802.1ad or truncated tag.
func vid(f []byte) (uint16, bool) {
	if len(f) < 14 {
		return 0, false // not even Ethernet: the worker drops it
	}
	switch binary.BigEndian.Uint16(f[12:]) {
	case packet.EtherTypeVLAN:
		if len(f) < 18 {
			return vidQinQ, true
		}
		return binary.BigEndian.Uint16(f[14:]) & 0xfff, true
	case packet.EtherTypeQinQ:
		return vidQinQ, true
	}
	return 0, false
}

// Strip removes the outer 802.1Q tag of f, an Ethernet frame with the tag
// after the MACs, by moving the MACs 4 bytes toward the end: the frame
// without its tag is f[4:] (its descriptor address 4 higher).
func Strip(f []byte) []byte {
	copy(f[4:16], f[:12])
	return f[packet.VLANTagLen:]
}

// Push puts an 802.1Q tag with control information tci (priority and
// VLAN ID) after p's MACs, moving the MACs 4 bytes toward the frame's
// start when it has the headroom in frames of frameSize bytes (see
// pipeline.PushFront for the rest), and reports whether there was room.
// p's parsed offsets are stale afterwards.
func Push(p *packet.Packet, tci uint16, frameSize int) bool {
	if len(p.Data) < 12 || !pipeline.PushFront(p, packet.VLANTagLen, frameSize) {
		return false
	}
	d := p.Data
	copy(d[:12], d[4:16])
	binary.BigEndian.PutUint16(d[12:], packet.EtherTypeVLAN)
	binary.BigEndian.PutUint16(d[14:], tci)
	return true
}

// demux sorts received frames by VLAN: the parent's are appended to b,
// the VLAN ports' queued, the rest put aside to free. The caller took no
// more than b and every queue hold.
func (t *trunk) demux(descs []afxdp.Desc, b *packet.Batch) int {
	n := 0
	u := t.umem
	for _, d := range descs {
		f := u.Frame(d.Addr, d.Len)
		v, tagged := vid(f)
		m := t.byVID[v]
		if m == noVLAN {
			t.drops[t.ndrops] = d.Addr
			t.ndrops++
			if t.ndrops == len(t.drops) {
				t.flushDrops()
			}
			continue
		}
		if tagged {
			f = Strip(f)
			d.Addr += packet.VLANTagLen
			d.Len -= packet.VLANTagLen
		}
		if m == 1 {
			b.Append(f, d.Addr, 0)
			n++
		} else {
			t.members[m-1].q.push(d)
		}
	}
	return n
}

func (t *trunk) flushDrops() {
	if t.ndrops > 0 {
		t.umem.Free(t.drops[:t.ndrops])
		t.unknown.Add(uint64(t.ndrops))
		t.ndrops = 0
	}
}

// receive is the parent's Receive: it takes frames off the socket while
// its batch and every VLAN port's queue have room.
func (t *trunk) receive(b *packet.Batch, max int) int {
	room := min(max, b.Free())
	if s := t.sock; s != nil && s.BusyPolling() && s.RXAvailable() < room {
		s.BusyPoll() // see Port.Receive
	}
	got := 0
	for room > 0 {
		n := room
		for i := 1; i < len(t.members); i++ {
			n = min(n, t.members[i].q.room())
		}
		if n == 0 {
			break
		}
		k := t.recv(t.descs[:n])
		own := t.demux(t.descs[:k], b)
		got += own
		room -= own
		if k < n {
			break // the RX ring is empty
		}
	}
	t.flushDrops()
	return got
}

// take is a VLAN port's Receive: what the parent queued for it.
func (t *trunk) take(m *member, b *packet.Batch, max int) int {
	n := min(max, b.Free(), m.q.size)
	u := t.umem
	for range n {
		d := m.q.pop()
		b.Append(u.Frame(d.Addr, d.Len), d.Addr, 0)
	}
	return n
}

// transmit tags the packets with the member's tag (if any) and puts them
// on the socket's TX ring, as many as it has room for; the rest are left
// as they were, the caller's. A packet without room for its tag is freed
// and counted, and counts as taken.
func (t *trunk) transmit(m *member, pkts []*packet.Packet) int {
	if m.tci == 0 {
		return t.send(pkts)
	}
	room := min(t.txFree(), len(t.descs))
	d := t.descs[:0]
	nr := t.noRoomAt[:0]
	i := 0
	for ; i < len(pkts) && len(d) < room; i++ {
		p := pkts[i]
		if !Push(p, m.tci, t.frameSize) {
			nr = append(nr, i)
			continue
		}
		t.descAt[len(d)] = i
		d = append(d, afxdp.Desc{Addr: p.Addr, Len: uint32(len(p.Data))})
	}
	// The ring had the room (only this goroutine produces on it); should
	// it take fewer, the packets from the first it refused on stay the
	// caller's (tagged).
	if sent := t.xmit(d); sent < len(d) {
		i = t.descAt[sent]
	}
	for _, k := range nr {
		if k < i {
			t.release(pkts[k : k+1])
			t.noRoom.Add(1)
		}
	}
	return i
}

// release frees the packets' frames, a burst per call.
func (t *trunk) release(pkts []*packet.Packet) {
	for len(pkts) > 0 {
		n := min(len(pkts), len(t.addrs))
		for i, p := range pkts[:n] {
			t.addrs[i] = p.Addr
		}
		t.umem.Free(t.addrs[:n])
		pkts = pkts[n:]
	}
}

func (t *trunk) send(pkts []*packet.Packet) int {
	d := t.descs[:len(pkts)]
	for i, p := range pkts {
		d[i] = afxdp.Desc{Addr: p.Addr, Len: uint32(len(p.Data))}
	}
	return t.xmit(d)
}

// close frees the frames still queued for VLAN ports.
func (t *trunk) close() {
	if t.closed {
		return
	}
	t.closed = true
	for i := range t.members {
		q := &t.members[i].q
		for q.size > 0 {
			n := 0
			for n < len(t.addrs) && q.size > 0 {
				t.addrs[n] = q.pop().Addr
				n++
			}
			t.umem.Free(t.addrs[:n])
		}
	}
}

// VLANPort is a VLAN's port on one worker: a pipeline port over its
// parent's socket (see VLAN).
type VLANPort struct {
	t      *trunk
	m      *member
	name   string
	closed bool
}

func (v *VLANPort) Name() string { return v.name }

// Queue is the interface queue of the parent's socket.
func (v *VLANPort) Queue() int { return v.t.queue }

func (v *VLANPort) Receive(b *packet.Batch, max int) (int, error) {
	if v.closed || v.t.closed {
		return 0, pipeline.ErrClosed
	}
	return v.t.take(v.m, b, max), nil
}

func (v *VLANPort) Transmit(pkts []*packet.Packet) (int, error) {
	if v.closed || v.t.closed {
		return 0, pipeline.ErrClosed
	}
	return v.t.transmit(v.m, pkts), nil
}

func (v *VLANPort) Release(pkts []*packet.Packet) { v.t.release(pkts) }

// Flush is the parent's to do: the worker flushes every port after the
// loop's transmissions, the parent among them.
func (v *VLANPort) Flush() error { return nil }

// Close closes the VLAN's port; the parent's port closes the socket.
func (v *VLANPort) Close() error {
	v.closed = true
	return nil
}

// VLANCounters reads the counters of the socket's VLAN demultiplexing.
func (v *VLANPort) VLANCounters() VLANCounters { return v.t.counters() }

func (t *trunk) counters() VLANCounters {
	return VLANCounters{Unknown: t.unknown.Load(), NoRoom: t.noRoom.Load()}
}

var (
	_ pipeline.Port = (*VLANPort)(nil)
	_ port.Queuer   = (*VLANPort)(nil)
	_ port.Config   = VLAN{}
)
