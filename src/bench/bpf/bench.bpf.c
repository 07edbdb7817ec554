// SPDX-License-Identifier: MIT
//
// The XDP programs of `arrow bench forward`'s kernel rows (docs/performance.md), beside the
// router's own program (src/router/bpf/arrow.bpf.c):
//
// - bench_generate is the traffic generator, run by arrow-udpgen --xdp through BPF_PROG_RUN in
//   live-frames mode (the kernel sends what it returns): each run numbers the datagram from a
//   counter and, for a tagged circuit, writes its tag, and returns XDP_TX. No socket, no skb: a
//   sender that outruns the routers, which a socket sender on this machine does not.
// - bench_sink counts every frame (packets and bytes, per CPU) and drops it: the sink of every
//   row, where a Node socket could count no more than ~100k datagrams/s.
// - bench_forward is this machine's ceiling for a router in XDP: it forwards any IPv4 frame
//   unchanged but for its MACs, through the same route lookup (bpf_fib_lookup) and the same
//   redirect as the router's program, with no ARROW check at all. kernelRatio1 is the router's
//   rate over this one's.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "arrow-tag.bpf.h"

#ifndef AF_INET
#define AF_INET 2
#endif

struct sink_count {
  __u64 packets;
  __u64 bytes;
};

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct sink_count);
} sink SEC(".maps");

SEC("xdp")
int bench_sink(struct xdp_md *ctx) {
  __u32 zero = 0;
  struct sink_count *c = bpf_map_lookup_elem(&sink, &zero);
  if (c) {
    c->packets++;
    c->bytes += ctx->data_end - ctx->data;
  }
  return XDP_DROP;
}

SEC("xdp")
int bench_forward(struct xdp_md *ctx) {
  void *data = (void *)(long)ctx->data;
  void *end = (void *)(long)ctx->data_end;
  struct ethhdr *eth = data;
  struct iphdr *ip = data + sizeof(*eth);
  if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP)) return XDP_PASS;
  struct bpf_fib_lookup fib = {};
  fib.family = AF_INET;
  fib.l4_protocol = ip->protocol;
  fib.tot_len = bpf_ntohs(ip->tot_len);
  fib.ifindex = ctx->ingress_ifindex;
  fib.ipv4_src = ip->saddr;
  fib.ipv4_dst = ip->daddr;
  if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS) return XDP_PASS;
  __builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
  __builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
  return bpf_redirect(fib.ifindex, 0);
}

// The frame: Ethernet, IPv4 without options, UDP (checksum 0, allowed on IPv4), then ARROW.
#define GEN_ARROW (sizeof(struct ethhdr) + sizeof(struct iphdr) + 8)
// Headers through one tag: what a router rewrites in place (addresses, ports, authenticator, MACs;
// popping a tag moves them 16 bytes). On veth the frame's page goes to the router and comes back to
// the generator's pool as the router left it, so every run restores these bytes first.
#define GEN_HEAD (GEN_ARROW + ARROW_HEADER + ARROW_TAG)

/* The generator's circuit: the frame's pristine head, its tag key (when `tagged`). */
struct gen_config {
  __u8 head[GEN_HEAD];
  __u8 key[16];
  __u32 tagged;
  __u32 pad;
};

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct gen_config);
} gen_config SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} gen_sequence SEC(".maps");

SEC("xdp")
int bench_generate(struct xdp_md *ctx) {
  void *data = (void *)(long)ctx->data;
  void *end = (void *)(long)ctx->data_end;
  __u8 *a = data + GEN_ARROW;
  if ((void *)(a + ARROW_HEADER + ARROW_TAG) > end) return XDP_DROP;
  __u32 zero = 0;
  __u64 *next = bpf_map_lookup_elem(&gen_sequence, &zero);
  struct gen_config *cfg = bpf_map_lookup_elem(&gen_config, &zero);
  if (!next || !cfg) return XDP_DROP;
  if (data + GEN_HEAD > end) return XDP_DROP;
  __builtin_memcpy(data, cfg->head, GEN_HEAD);
  __u64 seq = __sync_fetch_and_add(next, 1);
  *(__u64 *)(a + ARROW_OFF_SEQ) = __builtin_bswap64(seq); // big-endian on the wire
  if (cfg->tagged) {
    struct arrow_tag_io io = {};
    __builtin_memcpy(io.key, cfg->key, 16);
    __u8 *payload = a + ARROW_HEADER + ARROW_TAG;
    __u32 len = (__u32)(end - (void *)payload);
    if (len > ARROW_TAG_MAX_PAYLOAD) return XDP_DROP;
    if (!arrow_tag(&io, a, payload, len, end)) return XDP_DROP;
    if ((void *)(a + ARROW_HEADER + ARROW_TAG) > end) return XDP_DROP;
    *(__u64 *)(a + ARROW_HEADER) = io.out[0]; // little-endian words: the tag's bytes in order
    *(__u64 *)(a + ARROW_HEADER + 8) = io.out[1];
  }
  return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
