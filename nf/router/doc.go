// Package router is the router network function: Router, the pipeline
// stage; the FIB (forwarding information base) it looks routes up in; and
// the neighbor table it takes MAC addresses from.
//
// # Stage
//
// A Router answers ARP, NDP and ping for its own interface addresses,
// routes IPv4 and IPv6 by longest-prefix match, rewrites MAC addresses
// from the neighbor table (turning a packet whose next hop is unresolved
// into an ARP request or neighbor solicitation), decrements the TTL or hop
// limit with an incremental checksum update, and answers what it cannot
// route with ICMP time exceeded or unreachable, at most Config.ICMPRate a
// second. Packets an earlier stage dropped or bounced pass untouched.
// NDP is taken as RFC 4861 7.1 says: only solicitations and advertisements
// sent on the link (hop limit 255) with a valid checksum, code and options
// are acted on, the rest dropped as malformed; duplicate address detection
// for one of the router's addresses is answered with an advertisement to
// all nodes that defends it (7.2.4), and a node claiming one of them is
// counted (Counters.NDPConflicts), never learned as a neighbor. The router
// processes no IPv6 routing header: a packet for one of its addresses
// whose routing header has segments left, type 0 included (RFC 5095 3),
// gets an ICMPv6 parameter problem, code 0, pointing at the routing type
// (RFC 8200 4.4), within Config.ICMPRate (Counters.RoutingHeader,
// ParamProblemSent); one with no segments left is served as if the header
// were not there, and routing headers in transit are not the router's to
// read: it forwards them.
// Martians (packet.Martian4, Martian6) are never routed nor answered, each
// reason counted; an IPv6 link-local source never leaves its link (an
// ICMPv6 beyond-scope error answers it), nor does link- or site-scoped
// multicast. VLANs are ports' (port/xdp's access and VLAN ports hand
// the chain untagged frames): a tagged frame that reaches the router is
// dropped (Counters.VLANTagged). A packet larger than its egress Interface.MTU is
// dropped (Counters.TooBig) and answered, IPv4 with DF with fragmentation
// needed and IPv6 with packet too big, both carrying the MTU; IPv4
// without DF is not fragmented (a stage makes no frames). The package opens no socket: following the
// kernel's routes and neighbors is nf/router/kernelsync's job.
//
// # Workers and tables
//
// A Router is one worker's stage: its counters, its ICMP error budget
// (Config.ICMPRate is per router, so N workers send up to N times the
// rate: each refills its bucket once per batch, with no atomic shared
// between cores) and its one-entry neighbor cache are its own. Its
// Tables, the FIB and the neighbor table, may be shared by the routers of
// every worker (Config.Tables; NewTables makes them), and the config
// package does so for the workers of one service: one FIB (the tbl24's
// 64 MiB once, not once per worker), one neighbor table (a neighbor
// learned by any worker from ARP or NDP resolves every worker's packets,
// and one resolution request goes out per address and retry interval,
// whichever worker misses first), and one kernel sync feeding both.
//
// Lookups in both tables take no lock and never allocate, however many
// workers run them while the control plane and other workers write. The
// neighbor table is an array of buckets of entries linked by atomic
// pointers; an entry's MAC and state never change once published (a
// change links in a new entry with one atomic store) and only its expiry
// moves, atomically. A lookup is a hash and a few atomic loads; with the
// router's cache, a stream to one next hop costs one atomic load of the
// table's generation per packet. Learning a new neighbor or MAC, static
// entries, deletions, resolution requests and evictions take the table's
// mutex; refreshing a neighbor that repeats its MAC and the check that a
// request is already pending do not.
//
// # FIB
//
// A FIB maps a destination address to a next hop by longest-prefix match,
// for IPv4 and IPv6. A route is a prefix and one or more next hops
// (NextHop: egress port index and gateway, or no gateway for a directly
// connected network). Lookups return a NextHopID, a small integer naming
// one next hop or an ECMP group; LookupFlow4, LookupFlow6 and Pick choose a
// group member by flow hash, stably for a flow. Next hops and groups are
// interned: the same next hop, or the same multiset of next hops, always has
// the same ID, and IDs are never reused, so the neighbor table and the
// forwarding stage can key their state by NextHopID.
//
// IPv4 uses DIR-24-8: a table of 2^24 32-bit entries, one per /24, answers
// most lookups with one memory access; a /24 holding longer prefixes points
// to a tbl8 group of 256 entries (a second access). IPv6 uses a 65536-entry
// root indexed by the first 16 bits, then a trie of 16-bit strides whose
// nodes are sorted range tables in a flat arena: up to 32 runs of equal
// answer per node, found by a branch-free binary search over one 64-byte
// line of 16-bit keys, the answers in the next lines. A lookup in an
// Internet table visits the root and one or two nodes (/32 and /48 routes
// end in the first and second node). Lookup4Batch and Lookup6Batch look up
// a burst of destinations; the IPv6 one walks 32 lookups in lockstep so
// their cache misses overlap.
//
// docs/benchmarks.md (Package benchmarks) has the lookup and update
// figures at several table sizes and the command that measures them.
//
// Memory: the IPv4 tbl24 is 64 MiB, reserved by NewFIB (pages become resident
// as routes touch them; a full table touches nearly all of them), plus 1 KiB
// per /24 that holds prefixes longer than /24. IPv6 costs 256 KiB for the
// root plus about 29 bytes per prefix of live nodes for a realistic table
// (2.8 MiB for 100k prefixes), in an arena that grows by doubling and is
// compacted when half of it is garbage, so up to twice that is held. The
// control plane keeps every route in per-length maps as the source of
// truth, roughly 40-60 bytes per route more, and for IPv6 its view of the
// nodes, about as much again. MemoryBytes reports the lookup structures.
//
// # Updates and concurrency
//
// Lookups never block and never allocate; any number of goroutines may run
// them while routes change. Updates (Add, Replace, Delete) are serialized
// by a mutex and applied in place, so one update costs in proportion to
// the addresses it covers (an IPv4 /24 is one store, a /8 is 65536), not to
// the table size. The contract: for every address, a lookup concurrent
// with an update returns either the answer before or the answer after it,
// never a mix of the two and never an answer the FIB never had.
//
// How: IPv4 entries are written with single atomic 32-bit stores and each
// entry changes once per update, from old to new; a new tbl8 group is
// filled before the tbl24 entry pointing to it is published; a tbl8 group
// records the /24 that owns it and readers check the owner, so a group
// freed and reused while a reader was on its way is detected and the
// lookup restarts. An IPv6 node whose runs change is written afresh to
// new arena lines and published with one atomic store into its parent (or
// the root); routes covering whole nodes change the nodes' default answers
// in place, one atomic store per run holding one. Arena lines are never
// reused in place: when the arena fills up or is half garbage, the writer
// moves the nodes to a new one and publishes it with one atomic pointer
// store, and the garbage collector frees the old arena after the last
// reader leaves it.
// The comments in fib4.go and fib6.go give the argument in full.
//
// Prefixes must be canonical: 10.1.2.3/8 is an error (ErrHostBits), not
// silently masked, because it is usually a typo. IPv4-mapped IPv6 prefixes
// and addresses are IPv6.
package router
