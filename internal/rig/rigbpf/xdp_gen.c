//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdp_gen is the benchmark rig's traffic generator. It is never attached:
 * it runs under BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES and a
 * context naming the sending device (ingress_ifindex) and queue, and its
 * XDP_TX makes the kernel transmit every frame out of that device.
 *
 * Live frames come from a page pool that the kernel fills with the initial
 * frame once and then reuses as it is: whatever a receiver wrote into a page
 * (kernel forwarding rewrites MACs and TTL in place) is still there the next
 * time. So the program writes the Ethernet, IPv4 and UDP headers of every
 * frame from the template, then sets the UDP source port of the flow.
 *
 * Pacing: with gen_conf.interval_ns set, a run that comes before its time
 * slot sends nothing (XDP_DROP, counted as skipped), so the kernel's busy
 * loop becomes a clock and frames leave evenly spaced, interval_ns apart,
 * per CPU. A CPU that falls more than max_lag_ns behind its schedule
 * starts afresh instead of bursting to catch up. With limit set, a CPU
 * stops sending (skips) once its pkts counter reaches it, so a paced run
 * can still send an exact count.
 *
 * Timestamps: with stamp set, the template carries the marker LAT_MAGIC in
 * payload bytes 0..3 (frame offset 42) and every frame gets
 * bpf_ktime_get_ns() at frame offset 48 (8 bytes, host order) when it is
 * built: the sink (xdp_sink.c, latency set) subtracts it from its own
 * clock on arrival. Both ends run in the same kernel, so the monotonic
 * clock is shared. The stamp is taken before the kernel flushes the batch
 * the frame belongs to, so it includes the rest of that batch's runs.
 *
 * The template is fixed at load time (const volatile globals, so the
 * verifier sees constants): the loader builds it with the right lengths and
 * IPv4 checksum. The UDP checksum is 0 (none), so varying the source port
 * keeps every checksum right.
 */
#include "xnf_bpf.h" /* bpf/include, by the -I in gen.go */

/* Not in the shared header (include/uapi/linux/bpf.h: helper 5). */
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;

/* The first 48 bytes of the frame: Ethernet (14), IPv4 (20), UDP (8) and
 * the first 6 payload bytes. Frames are at least 60 bytes. */
const volatile __u64 tmpl[6] = {};
/* Flows: the UDP source port is sport_base + (n % flows). */
const volatile __u32 sport_base = 1024;
const volatile __u32 flows = 1;
/* 1: write the send time at offset 48 (frames are at least 60 bytes). */
const volatile __u32 stamp = 0;

struct gen_stats {
	__u64 pkts;         /* frames built and handed back with XDP_TX */
	__u64 short_frames; /* frames under 48 (56 with stamp) bytes: dropped */
	__u64 skipped;      /* runs before their slot or past the limit: dropped */
	__u64 next_ns;      /* pacing: when the next frame is due */
	__u64 limit;        /* 0: none; else send while pkts < limit */
};

/* Written by the loader at run time (Generator.SetRate). */
struct gen_conf {
	__u64 interval_ns; /* 0: send on every run */
	__u64 max_lag_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_conf);
} gen_conf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_stats);
} gen_stats SEC(".maps");

SEC("xdp")
int xnf_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct gen_stats *st = bpf_map_lookup_elem(&gen_stats, &zero);
	if (!st)
		return XDP_ABORTED;
	if (data + 48 > end || (stamp && data + 56 > end)) {
		st->short_frames++;
		return XDP_DROP;
	}
	if (st->limit && st->pkts >= st->limit) {
		st->skipped++;
		return XDP_DROP;
	}
	struct gen_conf *conf = bpf_map_lookup_elem(&gen_conf, &zero);
	if (conf && conf->interval_ns) {
		__u64 now = bpf_ktime_get_ns();
		if (now < st->next_ns) {
			st->skipped++;
			return XDP_DROP;
		}
		__u64 next = st->next_ns + conf->interval_ns;
		if (next + conf->max_lag_ns < now)
			next = now + conf->interval_ns;
		st->next_ns = next;
	}
	__u64 *w = data;
	w[0] = tmpl[0];
	w[1] = tmpl[1];
	w[2] = tmpl[2];
	w[3] = tmpl[3];
	w[4] = tmpl[4];
	w[5] = tmpl[5];
	__u64 n = st->pkts++;
	__u16 sport = sport_base + (__u32)(n % flows);
	*(__u16 *)(data + 34) = bpf_htons(sport);
	if (stamp && data + 56 <= end)
		*(__u64 *)(data + 48) = bpf_ktime_get_ns();
	return XDP_TX;
}

char _license[] SEC("license") = "Dual BSD/GPL";
