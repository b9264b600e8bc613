//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdp_redirect steers the frames xnf claims into the AF_XDP socket bound to
 * the receiving queue, and gives everything else to the kernel unchanged.
 *
 * What is claimed is decided by a filter fixed at load time (const volatile
 * globals, rewritten by the loader before the verifier sees the program, so
 * a disabled test costs nothing): all frames, or only those with a given
 * ethertype, IP protocol and/or a destination port in a set. When the queue
 * has no socket, bpf_redirect_map falls back to XDP_PASS (the low bits of its
 * flags argument, since Linux 5.3), so an unclaimed queue never blackholes.
 *
 * With offload_on set at load, a claimed frame is first judged against the
 * firewall's offloaded drop rules (xdp_offload.h) and dropped here when one
 * matches; the cost when nothing is offloaded is one array lookup, and
 * with offload_on 0 the verifier removes the code altogether.
 */
#include "include/xnf_bpf.h"
#include "xdp_offload.h"

/* Filter switches, set by the loader (bpf.Filter). */
const volatile __u32 filter_ethertype = 0; /* 0: any; else host-order ethertype */
const volatile __u32 filter_ipproto = 0;   /* 0: any; else IP protocol number */
const volatile __u32 filter_ports = 0;     /* 1: destination port must be in port_set */

/* Counter slots; the Go side mirrors these (bpf.Counters). */
enum {
	CNT_REDIRECTED = 0, /* handed to an AF_XDP socket */
	CNT_PASSED = 1,     /* claimed, but no socket on this queue: kernel */
	CNT_FILTERED = 2,   /* not claimed by the filter: kernel */
	CNT_DROPPED = 3,    /* claimed, and dropped by an offloaded firewall rule */
	CNT_MAX = 4,
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64); /* resized to the queue count by the loader */
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* One bit per destination port: a single lookup, whatever the set size. */
struct port_set {
	__u64 bits[1024];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct port_set);
} port_set SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &slot);
	if (c)
		*c += 1;
}

static __always_inline int port_in_set(__u16 port)
{
	__u32 zero = 0;
	struct port_set *s = bpf_map_lookup_elem(&port_set, &zero);
	if (!s)
		return 0;
	return (s->bits[(port >> 6) & 1023] >> (port & 63)) & 1;
}

/* claimed reports whether the filter selects this frame. Frames too short to
 * show what the filter asks about are not claimed: the kernel judges them. */
static __always_inline int claimed(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *p = data;

	if (!filter_ethertype && !filter_ipproto && !filter_ports)
		return 1;

	if (p + 14 > (__u8 *)end)
		return 0;
	__u16 proto = ((__u16)p[12] << 8) | p[13];
	__u32 off = 14;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		if (p + off + 4 > (__u8 *)end)
			return 0;
		proto = ((__u16)p[off + 2] << 8) | p[off + 3];
		off += 4;
	}
	if (filter_ethertype && proto != filter_ethertype)
		return 0;
	if (!filter_ipproto && !filter_ports)
		return 1;

	__u8 l4proto;
	__u8 *l3 = p + off;
	__u8 *l4;
	if (proto == ETH_P_IP) {
		if (l3 + 20 > (__u8 *)end)
			return 0;
		__u32 ihl = (l3[0] & 0x0f) * 4;
		if (ihl < 20)
			return 0;
		l4proto = l3[9];
		/* Non-first fragments carry no ports: only a port-less filter claims them. */
		if (filter_ports && (((l3[6] & 0x1f) << 8) | l3[7]) != 0)
			return 0;
		l4 = l3 + ihl;
	} else if (proto == ETH_P_IPV6) {
		if (l3 + 40 > (__u8 *)end)
			return 0;
		/* Extension headers are not walked: the next header must be the transport. */
		l4proto = l3[6];
		l4 = l3 + 40;
	} else {
		return 0;
	}
	if (filter_ipproto && l4proto != filter_ipproto)
		return 0;
	if (!filter_ports)
		return 1;
	if (l4proto != 6 && l4proto != 17 && l4proto != 132)
		return 0;
	if (l4 + 4 > (__u8 *)end)
		return 0;
	return port_in_set(((__u16)l4[2] << 8) | l4[3]);
}

/* offload_drop reports whether an offloaded rule drops the claimed frame,
 * and counts it. Only a frame that would reach xnf is judged: on a queue
 * without a socket the kernel gets it, as without offload. */
static __always_inline int offload_drop(struct xdp_md *ctx, int frags)
{
	int slot = offload_match(ctx, frags);
	if (slot < 0)
		return 0;
	__u32 q = ctx->rx_queue_index;
	if (!bpf_map_lookup_elem(&xsks, &q))
		return 0;
	__u32 s = slot;
	__u64 *c = bpf_map_lookup_elem(&offload_hits, &s);
	if (c)
		*c += 1;
	count(CNT_DROPPED);
	return 1;
}

static __always_inline int steer(struct xdp_md *ctx, int frags)
{
	if (!claimed(ctx)) {
		count(CNT_FILTERED);
		return XDP_PASS;
	}
	if (offload_on && offload_drop(ctx, frags))
		return XDP_DROP;
	int action = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
	count(action == XDP_REDIRECT ? CNT_REDIRECTED : CNT_PASSED);
	return action;
}

SEC("xdp")
int xnf_redirect(struct xdp_md *ctx)
{
	return steer(ctx, 0);
}

/* The same program for multi-buffer frames (jumbo frames, XDP_USE_SG): only
 * the first buffer is inspected, which holds every header the filter reads.
 * Offloaded rules judge single-buffer frames only. */
SEC("xdp.frags")
int xnf_redirect_frags(struct xdp_md *ctx)
{
	return steer(ctx, 1);
}

char _license[] SEC("license") = "Dual BSD/GPL";
