//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdp_sink is the benchmark rig's receiver: it counts frames and bytes per
 * CPU and drops them (or passes them to the kernel, for a counting
 * XDP_PASS program on a forwarder's ingress).
 *
 * With match_dport set, only IPv4/IPv6 UDP frames to that destination port
 * count as received; everything else is counted apart as "other", so a
 * stray ARP or router solicitation never inflates a measurement.
 *
 * With check_ipv4 set, the IPv4 header checksum of every counted IPv4
 * frame (20-byte headers) is verified and failures are counted as
 * bad_csum: a forwarder that rewrites headers must keep it right.
 *
 * With latency set, IPv4 UDP frames (20-byte header) whose payload starts
 * with the generator's timestamp marker (xdp_gen.c, stamp) have their age
 * now - stamp recorded in a per-CPU histogram, lat_hist, whether or not
 * they count. Its buckets are log-linear: 16 per power of two, exact
 * below 16 ns, so a bucket is at most 1/16 of its value wide (values from
 * 2^40 ns on share the last one). Stamps from the future (a garbled
 * payload) are counted as bad instead.
 *
 * Either way, a program on a veth end is also what lets the peer's XDP_TX
 * and XDP_REDIRECT deliver there (without it or GRO they are dropped).
 */
#include "xnf_bpf.h" /* bpf/include, by the -I in gen.go */

const volatile __u32 match_dport = 0; /* 0: count every frame */
const volatile __u32 verdict = XDP_DROP; /* XDP_DROP or XDP_PASS */
const volatile __u32 check_ipv4 = 0;     /* 1: verify IPv4 header checksums */
const volatile __u32 latency = 0;        /* 1: record the age of stamped frames */

/* The generator's marker, payload bytes "xnfT" read as a little-endian
 * word (frame offset 42); the stamp follows at offset 48. */
#define LAT_MAGIC 0x54666e78
#define LAT_SUB_BITS 4
#define LAT_BUCKETS ((40 - 3) << LAT_SUB_BITS)

struct lat_hist {
	__u64 count;  /* stamped frames recorded */
	__u64 sum_ns; /* their total age */
	__u64 bad;    /* stamps later than now: not recorded */
	__u64 buckets[LAT_BUCKETS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lat_hist);
} lat_hist SEC(".maps");

/* Not in the shared header (include/uapi/linux/bpf.h: helper 5). */
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;

struct sink_stats {
	__u64 pkts;  /* frames counted */
	__u64 bytes; /* their bytes (Ethernet header on, no FCS) */
	__u64 other; /* frames not matching match_dport */
	__u64 bad_csum; /* counted IPv4 frames with a wrong header checksum */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sink_stats);
} sink_stats SEC(".maps");

static __always_inline int matches(__u8 *p, __u8 *end)
{
	if (!match_dport)
		return 1;
	if (p + 14 > end)
		return 0;
	__u16 proto = ((__u16)p[12] << 8) | p[13];
	__u8 *l4;
	if (proto == ETH_P_IP) {
		__u8 *ip = p + 14;
		if (ip + 20 > end)
			return 0;
		if (ip[9] != 17 || (((ip[6] & 0x1f) << 8) | ip[7]) != 0)
			return 0;
		__u32 ihl = (ip[0] & 0x0f) * 4;
		if (ihl < 20)
			return 0;
		l4 = ip + ihl;
	} else if (proto == ETH_P_IPV6) {
		__u8 *ip = p + 14;
		if (ip + 40 > end)
			return 0;
		if (ip[6] != 17)
			return 0;
		l4 = ip + 40;
	} else {
		return 0;
	}
	if (l4 + 4 > end)
		return 0;
	return (((__u16)l4[2] << 8) | l4[3]) == match_dport;
}

/* ipv4_csum_ok verifies the checksum of a 20-byte IPv4 header; frames
 * that are not IPv4 or carry options pass. */
static __always_inline int ipv4_csum_ok(__u8 *p, __u8 *end)
{
	if (p + 34 > end || p[12] != 0x08 || p[13] != 0x00 || p[14] != 0x45)
		return 1;
	__u16 *w = (__u16 *)(p + 14);
	__u32 sum = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

/* msb is the index of the highest set bit of v (v > 0). */
static __always_inline __u32 msb(__u64 v)
{
	__u32 r = 0;
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) r += 1;
	return r;
}

/* lat_bucket maps an age in ns to its bucket (see the top comment). */
static __always_inline __u32 lat_bucket(__u64 v)
{
	if (v < (1 << LAT_SUB_BITS))
		return v;
	__u32 e = msb(v);
	if (e >= 40)
		return LAT_BUCKETS - 1;
	return ((e - (LAT_SUB_BITS - 1)) << LAT_SUB_BITS) +
	       ((v >> (e - LAT_SUB_BITS)) & ((1 << LAT_SUB_BITS) - 1));
}

static __always_inline void record_latency(__u8 *p, __u8 *end)
{
	if (p + 56 > end || p[12] != 0x08 || p[13] != 0x00 || p[14] != 0x45 || p[23] != 17)
		return;
	if (*(__u32 *)(p + 42) != LAT_MAGIC)
		return;
	__u64 sent = *(__u64 *)(p + 48);
	__u64 now = bpf_ktime_get_ns();
	__u32 zero = 0;
	struct lat_hist *h = bpf_map_lookup_elem(&lat_hist, &zero);
	if (!h)
		return;
	if (sent > now) {
		h->bad++;
		return;
	}
	__u64 age = now - sent;
	__u32 i = lat_bucket(age);
	if (i >= LAT_BUCKETS)
		i = LAT_BUCKETS - 1;
	h->count++;
	h->sum_ns += age;
	h->buckets[i]++;
}

SEC("xdp")
int xnf_sink(struct xdp_md *ctx)
{
	__u8 *data = (__u8 *)(long)ctx->data;
	__u8 *end = (__u8 *)(long)ctx->data_end;
	__u32 zero = 0;
	if (latency)
		record_latency(data, end);
	struct sink_stats *st = bpf_map_lookup_elem(&sink_stats, &zero);
	if (st) {
		if (matches(data, end)) {
			st->pkts++;
			st->bytes += end - data;
			if (check_ipv4 && !ipv4_csum_ok(data, end))
				st->bad_csum++;
		} else {
			st->other++;
		}
	}
	return verdict;
}

char _license[] SEC("license") = "Dual BSD/GPL";
