/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The firewall pre-filter of xdp_redirect.c: the stateless drop rules the
 * firewall stage offloads (nf/firewall OffloadPlan), judged on claimed
 * frames before they are redirected, so a flood dies in the driver.
 *
 * Bit-vector classification (the layout OffloadPlan documents): entry i of
 * the plan (rule order) is bit i of every bitmap, OFF_RULES bits wide. Each
 * field maps a packet's value to the bitmap of the entries that accept it:
 *
 *	offload_in_port  ARRAY [gen][port index]    entries of that ingress port or any
 *	offload_proto    ARRAY [gen][protocol]      entries of that protocol or any
 *	offload_src4/6,  LPM_TRIE [gen . address]   entries whose prefix holds the address
 *	offload_dst4/6                              (each stored prefix carries the entries
 *	                                            of every prefix holding it; /0 those
 *	                                            without a prefix in the field)
 *	offload_sport,   ARRAY [gen][port / 4]      the port's class (4 ports a value),
 *	offload_dport    -> offload_sclass/dclass   then the entries whose range holds it
 *	                 ARRAY [gen][class]         (a packet without ports takes them all)
 *	offload_hits     PERCPU_ARRAY [gen][entry]  packets dropped for the entry
 *
 * The packet is dropped when the AND of its bitmaps is not zero, and
 * counted for the lowest set bit: the first matching entry, which is the
 * rule the whole rule set decides the packet by (PlanOffload's guarantee).
 *
 * Two generations of every table: the one in force, named by offload_state,
 * and the one the loader (bpf.Offload) fills for the next plan. A packet
 * reads offload_state once, so it is judged by one plan from start to end;
 * a reload is that one 4-byte write.
 *
 * The frame is read exactly as the stage reads it, as the port layer hands
 * it over (vlan_ports: the ingress port by VLAN, the outer tag gone) and
 * then packet.Parse and the stage's key: up to two VLAN tags (the key
 * ignores them), IPv4 with its
 * header, total length and fragment checks, IPv6 with its extension
 * headers walked within Parse's limits (16 headers, starting within 256
 * bytes), TCP/UDP/ICMP header checks, ports of TCP, UDP, SCTP and UDP-Lite,
 * 0 in later fragments. Any frame that Parse would not accept as a sound
 * IP packet, that is not IP, or that the stage passes without the rules
 * (IPv6 neighbor discovery), is not judged here: the stage decides it.
 */
#ifndef XNF_OFFLOAD_H
#define XNF_OFFLOAD_H

#define OFF_RULES 256   /* firewall.MaxOffloadRules */
#define OFF_WORDS 4     /* OFF_RULES / 64 */
#define OFF_PORTS 256   /* ingress port indexes a table holds */
#define OFF_CLASSES 1024 /* port classes a field holds: at most 2 * OFF_RULES + 1 are used */
#define OFF_PREFIXES (2 * (OFF_RULES + 1)) /* both generations' prefixes, /0 included */

/* Switches set by the loader: offload_on 0 removes all of this from the
 * program (the verifier drops the dead branch); offload_port is the
 * interface's xnf port index, the packet's InPort. Frames of ports from
 * OFF_PORTS up are not judged: the tables hold no row for them. */
const volatile __u32 offload_on = 0;
const volatile __u32 offload_port = 0;

struct off_bits {
	__u64 w[OFF_WORDS];
};

/* 0: nothing offloaded (every claimed frame goes on); 1 + g: generation g in force. */
struct off_state {
	__u32 active;
};

struct off_lpm4 {
	__u32 prefixlen; /* 8 (the generation byte) + the prefix length */
	__u8 data[8];    /* generation, then the address; the rest is padding */
};

struct off_lpm6 {
	__u32 prefixlen;
	__u8 data[20];
};

struct off_classes {
	__u16 c[4]; /* the classes of ports 4k .. 4k+3 */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct off_state);
} offload_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * OFF_PORTS);
	__type(key, __u32);
	__type(value, struct off_bits);
} offload_in_port SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * 256);
	__type(key, __u32);
	__type(value, struct off_bits);
} offload_proto SEC(".maps");

#define OFF_LPM(name, keytype)                               \
	struct {                                             \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);         \
		__uint(max_entries, OFF_PREFIXES);           \
		__uint(map_flags, BPF_F_NO_PREALLOC);        \
		__type(key, keytype);                        \
		__type(value, struct off_bits);              \
	} name SEC(".maps")

OFF_LPM(offload_src4, struct off_lpm4);
OFF_LPM(offload_dst4, struct off_lpm4);
OFF_LPM(offload_src6, struct off_lpm6);
OFF_LPM(offload_dst6, struct off_lpm6);

#define OFF_CLASS_MAP(name)                                  \
	struct {                                             \
		__uint(type, BPF_MAP_TYPE_ARRAY);            \
		__uint(max_entries, 2 * 65536 / 4);          \
		__type(key, __u32);                          \
		__type(value, struct off_classes);           \
	} name SEC(".maps")

OFF_CLASS_MAP(offload_sport);
OFF_CLASS_MAP(offload_dport);

#define OFF_BITS_MAP(name)                                   \
	struct {                                             \
		__uint(type, BPF_MAP_TYPE_ARRAY);            \
		__uint(max_entries, 2 * OFF_CLASSES);        \
		__type(key, __u32);                          \
		__type(value, struct off_bits);              \
	} name SEC(".maps")

OFF_BITS_MAP(offload_sclass);
OFF_BITS_MAP(offload_dclass);

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * OFF_RULES);
	__type(key, __u32);
	__type(value, __u64);
} offload_hits SEC(".maps");

/* How this interface's frames reach xnf's ports when the port layer
 * demultiplexes 802.1Q VLANs (port/xdp trunks: an access port, or VLAN
 * ports over this one). With trunk set, a frame's port is port[VLAN ID]
 * - 1 (VLAN ID 0: untagged or priority-tagged; 0 in the table: no port
 * carries it, and xnf drops it before the chain), and the chain sees the
 * frame without its outer 802.1Q tag; 802.1ad and cut tags never reach
 * the chain. Without, every frame is offload_port's, tags and all. One
 * per program (not shared with the other interfaces). */
struct off_vlans {
	__u16 trunk;
	__u16 port[4096];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct off_vlans);
} vlan_ports SEC(".maps");

/* and_bits ANDs b into a and reports whether anything is left. */
static __always_inline int and_bits(struct off_bits *a, const struct off_bits *b)
{
	__u64 any = 0;
#pragma unroll
	for (int i = 0; i < OFF_WORDS; i++) {
		a->w[i] &= b->w[i];
		any |= a->w[i];
	}
	return any != 0;
}

static __always_inline __u32 ctz64(__u64 x)
{
	__u32 n = 0;
	if (!(x & 0xffffffffULL)) {
		n += 32;
		x >>= 32;
	}
	if (!(x & 0xffff)) {
		n += 16;
		x >>= 16;
	}
	if (!(x & 0xff)) {
		n += 8;
		x >>= 8;
	}
	if (!(x & 0xf)) {
		n += 4;
		x >>= 4;
	}
	if (!(x & 0x3)) {
		n += 2;
		x >>= 2;
	}
	if (!(x & 0x1))
		n += 1;
	return n;
}

/* lowest returns the index of the lowest set bit of a (not zero). */
static __always_inline int lowest(const struct off_bits *a)
{
#pragma unroll
	for (int i = 0; i < OFF_WORDS; i++) {
		if (a->w[i])
			return i * 64 + ctz64(a->w[i]);
	}
	return -1;
}

static __always_inline __u16 be16(const __u8 *p)
{
	return ((__u16)p[0] << 8) | p[1];
}

static __always_inline int has_ports(__u8 proto)
{
	return proto == 6 || proto == 17 || proto == 132 || proto == 136;
}

/* What the parse found: the fields of the key the offloaded entries read. */
struct off_pkt {
	__u8 v6;
	__u8 proto;
	__u8 hop; /* IPv6 hop limit */
	__u16 sport, dport;
	const __u8 *src, *dst; /* into the frame: 4 or 16 bytes */
};

/* l4_ok applies Parse's transport checks (parseL4) to the header at l4,
 * room bytes before the end of the IP packet, and reads the ports.
 * fragment is set for a first fragment: a UDP length may then exceed the
 * fragment. */
static __always_inline int l4_ok(struct off_pkt *k, const __u8 *l4, __u32 room, int fragment, const void *end)
{
	switch (k->proto) {
	case 6: /* TCP */
		if (room < 20 || l4 + 20 > (const __u8 *)end)
			return 0;
		{
			__u32 hl = (l4[12] >> 4) * 4;
			if (hl < 20 || hl > room)
				return 0;
		}
		break;
	case 17: /* UDP */
		if (room < 8 || l4 + 8 > (const __u8 *)end)
			return 0;
		{
			__u32 len = be16(l4 + 4);
			if (len < 8 || (!fragment && len > room))
				return 0;
		}
		break;
	case 1:  /* ICMP: only in IPv4 is it a header Parse checks */
	case 58: /* ICMPv6: only in IPv6 */
		if (k->v6 != (k->proto == 58))
			return 1;
		if (room < 8 || l4 + 8 > (const __u8 *)end)
			return 0;
		/* Neighbor solicitations and advertisements sent on the link
		 * (code 0, hop limit 255) pass the stage as ARP does: never
		 * judged by the rules, so not here either. */
		if (k->v6 && k->hop == 255 && (l4[0] == 135 || l4[0] == 136) && l4[1] == 0)
			return 0;
		return 1;
	case 132: /* SCTP: ports when the 12-byte common header fits */
		if (room < 12 || l4 + 4 > (const __u8 *)end)
			return 1;
		break;
	case 136: /* UDP-Lite: ports when the 8-byte header fits */
		if (room < 8 || l4 + 4 > (const __u8 *)end)
			return 1;
		break;
	default:
		return 1;
	}
	k->sport = be16(l4);
	k->dport = be16(l4 + 2);
	return 1;
}

static __always_inline int parse_ipv4(struct off_pkt *k, const __u8 *h, const void *end)
{
	if (h + 20 > (const __u8 *)end || (h[0] >> 4) != 4)
		return 0;
	__u32 hl = (h[0] & 0x0f) * 4;
	if (hl < 20 || h + hl > (const __u8 *)end)
		return 0;
	__u32 total = be16(h + 2);
	if (total < hl || h + total > (const __u8 *)end)
		return 0;
	k->v6 = 0;
	k->proto = h[9];
	k->src = h + 12;
	k->dst = h + 16;
	__u16 frag = be16(h + 6);
	int fragment = (frag & 0x3fff) != 0;
	if (fragment) {
		__u32 len = total - hl;
		if (((frag & 0x2000) && (len & 7)) || (frag & 0x1fff) * 8 + len > 0xffff)
			return 0;
		if (frag & 0x1fff)
			return 0; /* a later fragment: the stage judges it by its first
				   * fragment's ports (conntrack's fragment tracker),
				   * which this program does not know */
	}
	return l4_ok(k, h + hl, total - hl, fragment, end);
}

static __always_inline int parse_ipv6(struct off_pkt *k, const __u8 *h, const void *end)
{
	if (h + 40 > (const __u8 *)end || (h[0] >> 4) != 6)
		return 0;
	__u32 plen = be16(h + 4);
	if (h + 40 + plen > (const __u8 *)end)
		return 0;
	k->v6 = 1;
	k->hop = h[7];
	k->src = h + 8;
	k->dst = h + 24;
	__u8 next = h[6];
	__u32 rel = 0; /* offset from the end of the fixed header */
	int fragment = 0;
	for (int count = 0; count <= 16; count++) {
		if (next != 0 && next != 43 && next != 44 && next != 51 && next != 60) {
			k->proto = next;
			return l4_ok(k, h + 40 + rel, plen - rel, fragment, end);
		}
		if (next == 0 && rel != 0)
			return 0; /* hop-by-hop options not first */
		if (count == 16 || rel >= 256)
			return 0; /* past the walk's limits: unsupported */
		if (rel + 8 > plen)
			return 0;
		const __u8 *x = h + 40 + rel;
		if (x + 8 > (const __u8 *)end)
			return 0;
		__u32 hl;
		if (next == 44)
			hl = 8;
		else if (next == 51)
			hl = ((__u32)x[1] + 2) * 4;
		else
			hl = ((__u32)x[1] + 1) * 8;
		if (rel + hl > plen)
			return 0;
		if (next == 44) {
			fragment = 1;
			__u16 om = be16(x + 2);
			__u32 len = plen - rel - 8;
			if (((om & 1) && (len & 7)) || (__u32)(om & ~7) + len > 0xffff)
				return 0;
			if (om & ~7)
				return 0; /* a later fragment: left to the stage, as for IPv4 */
		}
		next = x[0];
		rel += hl;
	}
	return 0;
}

/* offload_match judges a claimed frame: the offload_hits slot of the entry
 * that drops it, or -1 when none does or the frame is the stage's to judge. */
static __always_inline int offload_match(struct xdp_md *ctx, int frags)
{
	__u32 zero = 0;
	struct off_state *st = bpf_map_lookup_elem(&offload_state, &zero);
	if (!st || st->active == 0)
		return -1;
	__u32 gen = st->active - 1;
	if (gen > 1)
		return -1;

	const void *data = (void *)(long)ctx->data;
	const void *end = (void *)(long)ctx->data_end;
	const __u8 *p = data;
	if (frags) {
		/* A frame in several buffers: judged in Go, were it to get there. */
		__u64 len = bpf_xdp_get_buff_len(ctx);
		if (len > 0xffff || p + len > (const __u8 *)end)
			return -1;
	}
	if (p + 14 > (const __u8 *)end)
		return -1;
	__u32 port = offload_port;
	struct off_vlans *vl = bpf_map_lookup_elem(&vlan_ports, &zero);
	if (vl && vl->trunk) {
		__u16 tpid = be16(p + 12);
		__u16 vid = 0;
		if (tpid == ETH_P_8021AD)
			return -1;
		if (tpid == ETH_P_8021Q) {
			if (p + 18 > (const __u8 *)end)
				return -1;
			vid = be16(p + 14) & 0xfff;
		}
		__u32 pi = vl->port[vid & 0xfff];
		if (pi == 0)
			return -1;
		port = pi - 1;
		if (tpid == ETH_P_8021Q)
			p += 4; /* the MACs move over the tag: the frame the chain sees */
		if (p + 14 > (const __u8 *)end)
			return -1; /* (checked above; the verifier needs it again) */
	}
	__u16 proto = be16(p + 12);
	__u32 off = 14;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		if (p + off + 4 > (const __u8 *)end)
			return -1;
		proto = be16(p + off + 2);
		off += 4;
	}
	struct off_pkt k = {};
	if (proto == ETH_P_IP) {
		if (!parse_ipv4(&k, p + off, end))
			return -1;
	} else if (proto == ETH_P_IPV6) {
		if (!parse_ipv6(&k, p + off, end))
			return -1;
	} else {
		return -1; /* not IP (a third VLAN tag included): the stage passes it */
	}

	struct off_bits acc;
	struct off_bits *b;
	if (port >= OFF_PORTS)
		return -1; /* a port the tables do not hold: the stage judges */
	__u32 key = gen * OFF_PORTS + port;
	b = bpf_map_lookup_elem(&offload_in_port, &key);
	if (!b)
		return -1;
	acc = *b;
	key = gen * 256 + k.proto;
	b = bpf_map_lookup_elem(&offload_proto, &key);
	if (!b || !and_bits(&acc, b))
		return -1;
	if (k.v6) {
		struct off_lpm6 lk = {.prefixlen = 8 + 128};
		lk.data[0] = gen;
		__builtin_memcpy(lk.data + 1, k.src, 16);
		b = bpf_map_lookup_elem(&offload_src6, &lk);
		if (!b || !and_bits(&acc, b))
			return -1;
		__builtin_memcpy(lk.data + 1, k.dst, 16);
		b = bpf_map_lookup_elem(&offload_dst6, &lk);
	} else {
		struct off_lpm4 lk = {.prefixlen = 8 + 32};
		lk.data[0] = gen;
		__builtin_memcpy(lk.data + 1, k.src, 4);
		b = bpf_map_lookup_elem(&offload_src4, &lk);
		if (!b || !and_bits(&acc, b))
			return -1;
		__builtin_memcpy(lk.data + 1, k.dst, 4);
		b = bpf_map_lookup_elem(&offload_dst4, &lk);
	}
	if (!b || !and_bits(&acc, b))
		return -1;
	if (has_ports(k.proto)) {
		struct off_classes *c;
		key = gen * (65536 / 4) + (k.sport >> 2);
		c = bpf_map_lookup_elem(&offload_sport, &key);
		if (!c)
			return -1;
		key = gen * OFF_CLASSES + (c->c[k.sport & 3] & (OFF_CLASSES - 1));
		b = bpf_map_lookup_elem(&offload_sclass, &key);
		if (!b || !and_bits(&acc, b))
			return -1;
		key = gen * (65536 / 4) + (k.dport >> 2);
		c = bpf_map_lookup_elem(&offload_dport, &key);
		if (!c)
			return -1;
		key = gen * OFF_CLASSES + (c->c[k.dport & 3] & (OFF_CLASSES - 1));
		b = bpf_map_lookup_elem(&offload_dclass, &key);
		if (!b || !and_bits(&acc, b))
			return -1;
	}
	int e = lowest(&acc);
	if (e < 0 || e >= OFF_RULES)
		return -1;
	return gen * OFF_RULES + e;
}

#endif
