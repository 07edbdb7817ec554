// SPDX-License-Identifier: MIT
//
// The endpoint's kernel data path (docs/dataplane.md, "The endpoint's data path"):
// two tc programs that take IP packets of an `arrow endpoint --tun` out of user space.
//
// - arrow_ep_encap (tcx egress on the TUN interface): each IPv4 packet the kernel routes into the
//   TUN is wrapped as the payload of an ARROW DATA packet on the active circuit (outer IPv4/UDP, the
//   ARROW header with the next sequence number) and sent from the underlay interface towards the
//   circuit's ingress router with bpf_redirect. The TypeScript endpoint resolves the route and the
//   next hop's MAC into the map (bpf_fib_lookup would need IP forwarding on, which an endpoint
//   host should not have to turn on; bpf_redirect_neigh from a TUN's egress sent nothing here).
// - arrow_ep_decap (tcx ingress on the underlay interface): DATA for the endpoint's UDP address
//   whose authenticator is one of the endpoint's return circuits (no tags) loses its outer headers
//   and enters the stack as if it had come out of the TUN (bpf_redirect with BPF_F_INGRESS).
//
// Everything else passes untouched to the TypeScript endpoint, which keeps the control plane:
// probes, acks, failover (it rewrites `ep_tx` when the active circuit changes), tagged circuits
// (not in these maps) and packets the programs cannot take (GSO super-packets, IP options).
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "arrow-tag.bpf.h"

#define OUTER (sizeof(struct iphdr) + sizeof(struct udphdr) + ARROW_HEADER)

/* The circuit the endpoint sends on now; `active` 0 leaves every packet to the Node path. */
struct ep_tx {
  __u32 active;
  __u32 ifindex;  // the underlay interface
  __u32 src_ip;   // the endpoint's UDP address (network order)
  __u32 dst_ip;   // the active ingress router
  __u16 src_port; // network order
  __u16 dst_port;
  __u8 hop_limit;
  __u8 pad[3];
  __u8 auth[16];
  __u8 smac[6]; // the underlay's MAC and the next hop's, resolved by the TypeScript endpoint
  __u8 dmac[6];
};

// encodeTx in src/endpoint/kernel-endpoint.ts writes this layout.
_Static_assert(sizeof(struct ep_tx) == 52, "struct ep_tx is 52 bytes");

/* The endpoint's own address and its TUN interface, for the receive side. */
struct ep_rx_config {
  __u32 ip;
  __u16 port;
  __u16 pad;
  __u32 tun_ifindex;
};

struct ep_counters {
  __u64 packets;
  __u64 bytes;
};

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct ep_tx);
} ep_tx SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct ep_rx_config);
} ep_rx_config SEC(".maps");

/* The next sequence number. The TypeScript endpoint starts it above 2^56, apart from the numbers
 * its own sends use (below 2^48), so the two never meet. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} ep_sequence SEC(".maps");

/* Return circuits whose DATA the kernel takes: authenticator -> what it received. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 64);
  __type(key, __u8[16]);
  __type(value, struct ep_counters);
} ep_rx SEC(".maps");

/*
 * [0] sent, [1] received, [2] passed to the Node path (not IPv4, no route or neighbour yet),
 * [3] passed to the Node path because the kernel refused to make room for the headers, [4] GSO
 * super-packets sent whole. Packets count segments (what the wire carries), bytes the IP packets'
 * length as the stack handed them over. The failure detector reads 0 and 1.
 */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 5);
  __type(key, __u32);
  __type(value, struct ep_counters);
} ep_stats SEC(".maps");

static __always_inline void count(__u32 which, __u32 packets, __u64 bytes) {
  struct ep_counters *c = bpf_map_lookup_elem(&ep_stats, &which);
  if (c) {
    c->packets += packets;
    c->bytes += bytes;
  }
}

/* The segments a packet stands for: a GSO super-packet's, else 1. */
static __always_inline __u32 segments(struct __sk_buff *skb) {
  return skb->gso_segs > 1 ? skb->gso_segs : 1;
}

static __always_inline __u16 csum_fold(__u32 sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return (__u16)~sum;
}

SEC("tc")
int arrow_ep_encap(struct __sk_buff *skb) {
  __u32 zero = 0;
  struct ep_tx *tx = bpf_map_lookup_elem(&ep_tx, &zero);
  __u64 *next = bpf_map_lookup_elem(&ep_sequence, &zero);
  if (!tx || !next || !tx->active || skb->protocol != bpf_htons(ETH_P_IP)) {
    count(2, segments(skb), skb->len);
    return TC_ACT_OK;
  }
  __u32 inner = skb->len;
  __u32 segs = segments(skb);
  // Room for the outer IPv4/UDP/ARROW headers in front of the IP packet (the TUN has no link
  // layer), then for an Ethernet header in front of those: the underlay is a link-layer device.
  // A GSO super-packet (TCP, up to the TUN's gso_max_size) stays whole: the flags make it a UDP
  // tunnel packet whose every segment repeats the outer headers and the ARROW header (as VXLAN's
  // do), and FIXED_GSO keeps its segment size, which the TUN's MTU already leaves room for.
  if (bpf_skb_adjust_room(skb, OUTER, BPF_ADJ_ROOM_MAC,
                          BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
                              BPF_F_ADJ_ROOM_ENCAP_L2(ARROW_HEADER) | BPF_F_ADJ_ROOM_FIXED_GSO) != 0) {
    count(3, segs, inner);
    return TC_ACT_OK;
  }
  if (bpf_skb_change_head(skb, sizeof(struct ethhdr), 0) != 0) return TC_ACT_SHOT;
  struct {
    struct ethhdr eth;
    struct iphdr ip;
    struct udphdr udp;
    __u8 arrow[ARROW_HEADER];
  } __attribute__((packed)) h = {};
  __builtin_memcpy(h.eth.h_dest, tx->dmac, ETH_ALEN);
  __builtin_memcpy(h.eth.h_source, tx->smac, ETH_ALEN);
  h.eth.h_proto = bpf_htons(ETH_P_IP);
  struct iphdr ip = {};
  ip.version = 4;
  ip.ihl = 5;
  ip.ttl = 64;
  ip.protocol = IPPROTO_UDP;
  ip.frag_off = bpf_htons(0x4000); // DF: the TUN's MTU leaves room for these headers
  ip.tot_len = bpf_htons(OUTER + inner);
  ip.saddr = tx->src_ip;
  ip.daddr = tx->dst_ip;
  __u32 sum = 0;
  __u16 *w = (__u16 *)&ip;
#pragma unroll
  for (int i = 0; i < 10; i++) sum += w[i];
  ip.check = csum_fold(sum);
  h.ip = ip;
  h.udp.source = tx->src_port;
  h.udp.dest = tx->dst_port;
  h.udp.len = bpf_htons(sizeof(struct udphdr) + ARROW_HEADER + inner);
  h.udp.check = 0; // allowed on IPv4, as the routers' program sends
  h.arrow[0] = ARROW_VERSION;
  h.arrow[ARROW_OFF_TYPE] = ARROW_TYPE_DATA;
  h.arrow[ARROW_OFF_HOPS] = tx->hop_limit;
  __builtin_memcpy(&h.arrow[ARROW_OFF_AUTH], tx->auth, 16);
  __u64 seq = __sync_fetch_and_add(next, 1);
  *(__u64 *)&h.arrow[ARROW_OFF_SEQ] = __builtin_bswap64(seq);
  if (bpf_skb_store_bytes(skb, 0, &h, sizeof(h), 0) != 0) return TC_ACT_SHOT;
  count(0, segs, inner);
  if (segs > 1) count(4, 1, inner);
  return bpf_redirect(tx->ifindex, 0);
}

// Not ours: TC_ACT_UNSPEC, tcx's "next", so that the next program on the interface (another
// endpoint's, on the same host) sees the packet too; the last one's "next" passes it to the stack.
SEC("tc")
int arrow_ep_decap(struct __sk_buff *skb) {
  void *data = (void *)(long)skb->data;
  void *end = (void *)(long)skb->data_end;
  struct ethhdr *eth = data;
  struct iphdr *ip = data + sizeof(*eth);
  struct udphdr *udp = (void *)(ip + 1);
  __u8 *a = (void *)(udp + 1);
  if ((void *)(a + ARROW_HEADER) > end) return TC_ACT_UNSPEC;
  if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 || ip->protocol != IPPROTO_UDP) return TC_ACT_UNSPEC;
  if (ip->frag_off & bpf_htons(0x3fff)) return TC_ACT_UNSPEC; // fragments go up whole
  __u32 zero = 0;
  struct ep_rx_config *cfg = bpf_map_lookup_elem(&ep_rx_config, &zero);
  if (!cfg || ip->daddr != cfg->ip || udp->dest != cfg->port) return TC_ACT_UNSPEC;
  // DATA, version 1, no tags (a tagged circuit stays on the Node path), a known return circuit.
  if (a[0] != ARROW_VERSION || a[ARROW_OFF_TYPE] != ARROW_TYPE_DATA || a[ARROW_OFF_FLAGS] != 0) return TC_ACT_UNSPEC;
  __u8 auth[16];
  __builtin_memcpy(auth, &a[ARROW_OFF_AUTH], 16);
  struct ep_counters *c = bpf_map_lookup_elem(&ep_rx, auth);
  if (!c) return TC_ACT_UNSPEC;
  __u32 inner = skb->len - sizeof(*eth) - OUTER;
  __u32 segs = segments(skb);
  __sync_fetch_and_add(&c->packets, segs);
  __sync_fetch_and_add(&c->bytes, inner);
  count(1, segs, inner);
  __u32 tun = cfg->tun_ifindex;
  if (bpf_skb_adjust_room(skb, -(__s32)OUTER, BPF_ADJ_ROOM_MAC, 0) != 0) return TC_ACT_SHOT;
  return bpf_redirect(tun, BPF_F_INGRESS);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
