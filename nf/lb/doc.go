// Package lb is an L4 load balancer: virtual services (a VIP address,
// TCP or UDP, a port) whose new flows are spread over weighted pools of
// backends by Maglev consistent hashing (Eisenbud et al., NSDI 2016), and
// a pipeline stage that balances and translates packets in NAT mode.
//
// # The Maglev table
//
// A pool is a list of backends, each a stable ID and a weight (0 drains
// it). Build turns a pool into a Table of M entries (a prime, DefaultSize
// unless asked otherwise), each naming a backend; Lookup maps a flow's
// hash to the entry hash mod M and returns that backend's index in the
// pool. A Table is immutable: a change of pool (a weight, a backend added,
// drained or removed) builds a new one, which the control plane publishes
// through an atomic.Pointer while workers keep looking up in whichever
// table they loaded:
//
//	var cur atomic.Pointer[lb.Table]
//	t, err := lb.Build(lb.DefaultSize, pool) // control plane, any time
//	cur.Store(t)                             // only on success
//	...
//	i := cur.Load().Lookup(flowHash)         // data path: one load, no lock
//
// What a table guarantees:
//
//   - Balance: each backend holds M·w/W entries (w its weight, W the sum)
//     give or take one or two, so its share of new flows is its share of
//     the weight. Build refuses a size that would give a backend fewer
//     than EntriesPerBackend (100) entries, so the shares are within about
//     1% of the weights.
//   - Little disruption: between two tables of one size, the entries that
//     change backend are about the share of the weight that changed hands.
//     Removing one of ten equal backends moves its 10% of the entries and
//     few others (the tests measure it); a drained backend (weight 0)
//     changes nothing for the others.
//   - Determinism: a table is a function of the size and the set of
//     (ID, weight) pairs alone: not their order, not the process, not the
//     machine. Every instance behind one ECMP route builds the same table
//     and, given the same flow hash, picks the same backend, and so does a
//     restarted one.
//   - Cost: Lookup is two multiplications and a load, no allocation, no
//     lock; Build takes milliseconds at the default size (figures in
//     docs/benchmarks.md).
//
// A table does not keep a flow on its backend: when the pool changes, the
// flows in the entries that moved (about the changed share, and every flow
// of a removed backend) map elsewhere. Keeping established flows where
// they are is the stage's job, through conntrack (below). Nor does a table
// hash packets: the caller passes a hash that must be well mixed and the
// same on every instance, so not a per-process seeded hash such as
// conntrack's. FlowHash is one, of a flow's 5-tuple with fixed keys.
//
// # The stage
//
// A Balancer holds the services and one table per service; the stages of
// a service's workers share it (one Stage per worker, each with the
// worker's conntrack table). Its Update swaps in new services and tables
// whole, and each stage takes them at its next batch.
//
// NAT mode, as Linux's IPVS masquerading and Katran's NAT: the first
// packet of a new TCP or UDP flow to a service (conntrack's StateNew,
// original direction, no stage has claimed the flow) picks the backend at
// table.Lookup(FlowHash(5-tuple)), and the stage writes the translated
// tuple as the flow's conntrack reply tuple (SetReply): for a flow from
// the client C:c to the VIP V:v balanced to the backend B:b, the reply
// tuple is B:b > C:c, or B:b > S:s with Config.SNAT (full NAT, for
// one-arm deployments: S the SNAT address of the flow's family, s the
// client's port when no other flow from S holds it towards B:b, else
// the next free port from 1024-65535, Config.MaxProbes tried). It marks
// the flow in Flow.User (a flag, and the backend's counter slot). Every
// packet of the flow is then rewritten into the other direction's tuple
// reversed, as nf/nat does: the client's packets leave as C:c (or S:s)
// > B:b, the backend's replies leave as V:v > C:c. Addresses and ports
// are rewritten in place, with the IPv4 header checksum and the TCP and
// UDP checksums (pseudo-header included) updated incrementally (RFC
// 1624); a zero UDP checksum stays zero. IPv4 and IPv6 alike; a service
// and its backends are of one family.
//
// Only a flow's first packet consults the table: every later packet finds
// the flow in conntrack, by either tuple, and the backend with it. So an
// Update that changes weights, drains, removes or adds backends moves no
// established flow: a removed backend's flows go on until they end (the
// backend still answers them, through the reply tuple), and only new
// flows follow the new table. A flow ends when conntrack frees it
// (timeouts, a TCP RST, the table's eviction); a TCP SYN reusing the
// tuple of a closed connection is a new flow, balanced anew.
//
// ICMP errors about a balanced flow (conntrack's StateRelated: the quoted
// packet's tuple, reversed, is one of the flow's) are translated with
// conntrack.TranslateError, the NAT's translation: a fragmentation needed
// (packet too big) from a router on the client's path about a backend's
// reply reaches that backend, quoting the packet it sent; an error from
// the backend's side about a client's packet reaches the client from the
// VIP, quoting what the client sent to the VIP.
//
// Packets left alone: non-IP frames, packets an earlier stage dropped or
// bounced, flows not to a service, flows another stage claimed (User set
// without the balancer's flag: nf/nat's flags sit in bits 0-4, the
// balancer's in bit 5, so neither takes the other's flows for its own).
// A packet of a balanced flow whose TTL or hop limit is 0 or 1 is left
// untranslated: the router behind drops it and answers with a time
// exceeded, which must quote what the sender sent (traceroute to a VIP
// works), as nf/nat does.
//
// Packets dropped: a new flow to a service whose backends are all drained
// (packet.DropNoRoute, Counters.NoBackend) or whose translated tuple is
// taken (DropFull, Counters.Conflicts) is refused and forgotten after the
// batch, so that its next packet tries again; a packet for a service
// without a flow (a TCP segment of a connection conntrack never saw:
// DropPolicy, Counters.NoFlow; the table full: DropFull,
// Counters.TableFull), and a later fragment to a VIP or the SNAT address
// or from a backend whose datagram's first fragment the table's fragment
// tracker did not see (a later fragment carries no ports: it follows its
// first fragment's flow and is translated with it, and without one there
// is no flow to translate it by: DropFragment, Counters.Fragments),
// rather than leave untranslated. A
// conntrack table with TCPPickup lets a TCP segment of a connection that
// predates the table start a flow; it is then balanced by the table,
// which gives it its old backend if the pool has not changed since.
//
// # Counters
//
// Besides its own counters (Counters, StageMetrics), a stage counts for
// every service and every backend the packets of its flows (both
// directions, ICMP errors included), their IP bytes and the new flows
// (StageMetrics: vip/tcp/198.18.1.100:80/packets, .../bytes, .../flows;
// backend/tcp/198.18.1.100:80/198.18.2.10:80/packets ...), and the flows
// active in its conntrack table (StageGauges: .../active_flows): up when
// a flow is balanced, down when conntrack frees it (conntrack.OnRelease).
// Packet, byte and flow counts are kept per batch and published once per
// batch. Active flows include closing ones (a TCP connection in
// time_wait) until conntrack frees them. A backend or service keeps its
// counters, under its name, across updates that remove and add it back,
// and a removed backend's stay (its flows may go on). Counters are per
// stage, hence per worker.
//
// # In a chain
//
// Put the balancer before the router, which then routes the translated
// packets to the backends and the replies to the clients. A stateful
// firewall in front shares the conntrack table (NewStageShared): it
// tracks every packet before the translation, so a backend's replies are
// established for it. A stage after the balancer that shares its table
// would look up packets already translated, which conntrack cannot find
// (their tuples are the flow's tuples reversed): no nat or stateful
// firewall after the balancer, no nat before it (it would claim every new
// flow first), and one balancer per table; the config package refuses
// such chains. In DNAT mode the backends must route their replies through
// the balancer.
//
// # Not yet
//
// Direct server return (IP-in-IP to the backend, replies straight to the
// client), health checks (a failed backend would be given weight 0 by
// the control plane), and later fragments that come before their first
// one (dropped, see above). The
// router's own ICMP errors are not translated: an error the router
// behind writes about a translated packet (a fragmentation needed for a
// backend's link MTU) is bounced out of its ingress port past the
// balancer, and quotes the translated packet; keep the MTUs on the
// backend side no smaller than on the client side.
//
// # Steering
//
// A balanced flow's two directions have different tuples, so per-worker
// tables need both to reach one worker, which no RSS hash guarantees.
// Hand-off (conntrack.Steering) keys a flow by its sorted 5-tuple or a
// NAT's outside endpoint, and a balanced flow's two directions share
// neither: C:c > V:v and B:b > C:c share only the client's endpoint (a
// key the steering could learn, given the services), and with SNAT,
// C:c > V:v and B:b > S:s share nothing (the SNAT port would have to name
// the worker, as VPP's per-worker port slices do). Until then the config
// package refuses an lb on more than one worker.
//
// # Cost
//
// Nothing is allocated per packet. An established packet costs its
// conntrack lookup and the rewrite; a new flow adds FlowHash, the table
// lookup, a map lookup of its service and SetReply. docs/lb.md and
// docs/benchmarks.md have the figures and the command that measures them.
package lb
