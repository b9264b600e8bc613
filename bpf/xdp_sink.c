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
 * Either way, a program on a veth end is also what lets the peer's XDP_TX
 * and XDP_REDIRECT deliver there (without it or GRO they are dropped).
 */
#include "include/xnf_bpf.h"

const volatile __u32 match_dport = 0; /* 0: count every frame */
const volatile __u32 verdict = XDP_DROP; /* XDP_DROP or XDP_PASS */
const volatile __u32 check_ipv4 = 0;     /* 1: verify IPv4 header checksums */

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

SEC("xdp")
int xnf_sink(struct xdp_md *ctx)
{
	__u8 *data = (__u8 *)(long)ctx->data;
	__u8 *end = (__u8 *)(long)ctx->data_end;
	__u32 zero = 0;
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
