// SPDX-License-Identifier: MIT
//
// Arrow's kernel fast path: an XDP program that forwards DATA packets of known circuits without
// leaving the kernel. It copies DataPlane.process (src/router/dataplane.ts), which stays the
// specification, check for check and counter for counter; docs/dataplane.md explains the split.
//
// The same code is built as a tc (clsact) program, for interfaces without XDP.
//
// Everything the program does not handle goes up unchanged (XDP_PASS) to the router's UDP socket,
// where the Node data plane treats and counts it: other packet types, malformed and unknown
// packets, deliver-udp circuits (not in the maps at all), packets not for this router, IP options
// or fragments, and DATA whose next hop the kernel cannot route to yet (no neighbour entry).
//
// deliver-ip circuits (IP transit, docs/egress.md) are decapsulated here too, by the tc build only:
// the outer headers are stripped and the inner IPv4 packet is redirected into the ingress of the
// router's egress TUN, as if the Node router had written it there. The Node router keeps the
// first packet of a customer it does not serve yet (that packet makes it take the customer over),
// inner IPv6, GSO super-packets, and everything under XDP, which cannot hand a frame to another
// device's ingress.
//
// Maps (per circuit, at 1 M circuits; sizes in bytes):
//
//   circuits  HASH   key: authenticator[16]  value: struct arrow_circuit (48)
//             What the router's table says: written by user space only, so a repair (new active
//             next hop) is one whole-value update that the program sees entirely or not at all.
//             Cost: 48 (element header) + 16 + 48 + 16 (bucket) = 128.
//   slots     ARRAY  index: slot             value: struct arrow_slot (72)
//             What the kernel writes per circuit: counters and the policing bucket. Separate from
//             `circuits` so that user-space updates never overwrite kernel state; the slot number
//             is kept across re-chains, as the Node table keeps counters and guards.
//   tags      HASH   key: slot (u32)         value: struct arrow_tag_guard (288)
//             The tag key and replay window, only for ingress circuits that require tags.
//   prefixes  LPM_TRIE  key: slot, role, IPv4 prefix  value: u8
//             A deliver-ip circuit's destination prefixes (role 0) and its customer's source prefix
//             (role 1), IPv4 only: the inner packet's checks, as src/router/deliver-ip.ts makes them.
//   config    ARRAY  [0]: struct arrow_config: the router's own IPv4 address and UDP port, and
//             the egress TUN's ifindex.
//   stats     PERCPU_ARRAY  router-wide counters by enum arrow_stat (a few dozen u64 in all).
//
// So 200 bytes per circuit plus 360 per tagged ingress circuit (tags element, its bucket), plus a
// deliver-ip circuit's prefixes in the trie.
//
// Per-circuit counters are shared atomics rather than per-CPU: per-CPU values cost 40+ bytes per
// circuit per CPU (2.5 GB at 1 M circuits on 64 CPUs), and an ingress circuit's policing bucket is
// one shared cache line written on every packet anyway. One circuit is one UDP 5-tuple, which RSS
// steers to one queue, so the line is rarely contended. The router-wide stats are per-CPU.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef AF_INET
#define AF_INET 2
#endif

#include "arrow-tag.bpf.h"

// The replay window of src/router/replay.ts.
#define REPLAY_BLOCKS 64
#define REPLAY_BITS (REPLAY_BLOCKS * 32)
#define REPLAY_WINDOW (REPLAY_BITS - 32)

// Circuit kinds the kernel handles (deliver-udp never enters the maps).
enum arrow_kind { KIND_FORWARD = 1, KIND_INTERNAL = 2, KIND_DELIVER_ENDPOINT = 3, KIND_DELIVER_IP = 4 };

// arrow_circuit.flags
#define CF_INGRESS 0x01 // DATA enters the ISP here: counted in (Entry.ingress)
#define CF_POLICE 0x02  // an ingress guard: police at the bought rate (Entry.guard)
#define CF_TAGGED 0x04  // the guard has a tag key: verify, replay-check and pop the tag
#define CF_REWRITE 0x08 // the next hop names an authenticator to write (Hop.auth)
#define CF_DECAP 0x10   // deliver-ip: this router serves the customer now, and this circuit is the
                        // one its answers take (IpEgress): decapsulate here. Without it, up to Node.

struct arrow_circuit {
  __u32 slot;
  __u8 kind;
  __u8 flags;
  __be16 next_port;  // the active next hop, network order
  __be32 next_ip;
  __u8 next_auth[16];
  __u64 ns_per_byte_q16; // police.ts PoliceParams
  __u64 burst_ns;
};

struct arrow_slot {
  struct bpf_spin_lock lock; // guards tat
  __u32 hop_limit;           // drops, by reason (u32: user space folds wraps, see kernel.ts)
  __u64 tat;                 // GCRA theoretical arrival time, ns (police.ts PoliceState)
  __u64 packets;             // DATA past every check, and bytes as they arrived
  __u64 bytes;
  __u64 out_bytes;           // the same packets as they left (after a popped tag)
  __u64 hop_limit_bytes;     // at an ingress router hop-limit drops are counted in, with bytes
  __u32 over_rate;
  __u32 bad_tag;
  __u32 replay;
  __u32 not_ip;           // deliver-ip refusals of the inner packet (deliver-ip.ts)
  __u32 outside_prefixes;
  __u32 spoofed_source;
};

struct arrow_tag_guard {
  struct bpf_spin_lock lock; // guards the window
  __u32 started;
  __u64 top;                 // highest sequence accepted
  __u8 key[16];              // SipHash key as bytes (k0, k1 little-endian)
  __u32 bits[REPLAY_BLOCKS];
};

struct arrow_config {
  __be32 ip;     // the router's own address and port: DATA must be addressed to them
  __be16 port;
  __u16 unused;
  __u32 egress_ifindex; // the egress TUN deliver-ip circuits decapsulate into; 0: none (up to Node)
  __u64 test_now; // the clock when clock_from_map is set (tests only)
};

// Router-wide counters (per-CPU). Keep in step with STAT_NAMES in src/router/kernel.ts.
enum arrow_stat {
  STAT_PASS_NOT_OURS, // not IPv4/UDP to our address and port, IP options, fragments
  STAT_PASS_MALFORMED, // not a well-formed ARROW header: the slow path counts the reason
  STAT_PASS_NOT_DATA,
  STAT_PASS_UNKNOWN, // no circuit in the map (unknown, or deliver-udp)
  STAT_PASS_NO_ROUTE, // bpf_fib_lookup could not give a next hop MAC yet
  STAT_PASS_BIG, // a tagged payload above ARROW_TAG_MAX_PAYLOAD
  STAT_TX,
  STAT_REDIRECT,
  STAT_DROP_HOP_LIMIT,
  STAT_DROP_OVER_RATE,
  STAT_DROP_BAD_TAG,
  STAT_DROP_REPLAY,
  STAT_ERROR, // an inconsistent map (a tagged circuit without its guard) or a failed helper
  STAT_PASS_EGRESS, // deliver-ip DATA left to the Node router (not served yet, XDP, IPv6, GSO, no TUN)
  STAT_DECAP,       // deliver-ip DATA decapsulated into the egress TUN
  STAT_DROP_NOT_IP,
  STAT_DROP_OUTSIDE_PREFIXES,
  STAT_DROP_SPOOFED_SOURCE,
  STAT_COUNT,
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __type(key, __u8[16]);
  __type(value, struct arrow_circuit);
} circuits SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 65536);
  __type(key, __u32);
  __type(value, struct arrow_slot);
} slots SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __type(key, __u32);
  __type(value, struct arrow_tag_guard);
} tags SEC(".maps");

// The LPM key: the prefix length counts the slot and the role too (40 + the prefix's bits), so a
// lookup of slot, role and address (prefixlen 72) finds the longest prefix of that circuit's role.
struct arrow_prefix_key {
  __u32 prefixlen;
  __u8 slot[4]; // big-endian: the trie compares bytes from the first
  __u8 role;    // PREFIX_DESTINATION or PREFIX_SOURCE
  __u8 addr[4];
} __attribute__((packed));

#define PREFIX_DESTINATION 0
#define PREFIX_SOURCE 1
#define PREFIX_KEY_BITS 72

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, 262144);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct arrow_prefix_key);
  __type(value, __u8);
} prefixes SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct arrow_config);
} config SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, STAT_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} stats SEC(".maps");

// Set before load (libbpf .rodata); the verifier removes the branch not taken.
// clock_from_map: policing reads config.test_now instead of bpf_ktime_get_ns, so a test can give
// the program and DataPlane the same clock. use_fib: 0 sends the frame back out of the interface
// it came in on with the MAC addresses swapped, as BPF_PROG_TEST_RUN has no route; and on loopback,
// where every next hop is a local address (the route lookup answers "not forwarded") and the
// frame, sent back out of lo, comes in again for the next router or the customer's socket.
const volatile __u8 clock_from_map = 0;
const volatile __u8 use_fib = 1;

static __always_inline void stat(__u32 which) {
  __u64 *v = bpf_map_lookup_elem(&stats, &which);
  if (v) *v += 1; // per-CPU: no atomic needed
}

/*
 * Whether the first tag of the stack is right (arrow_tag computes it). All bytes are compared
 * whatever differs, as verifyTopTag does.
 */
static __always_inline int tag_ok(const __u8 *key, __u8 *arrow, __u8 *payload, __u32 len, void *data_end) {
  struct arrow_tag_io io = {};
  __builtin_memcpy(io.key, key, 16);
  if (!arrow_tag(&io, arrow, payload, len, data_end)) return 0;
  if ((void *)(arrow + ARROW_HEADER + ARROW_TAG) > data_end) return 0;
  __u8 *tag = arrow + ARROW_HEADER;
  return ((io.out[0] ^ le64(tag)) | (io.out[1] ^ le64(tag + 8))) == 0;
}

// ---- The replay window (src/router/replay.ts), on a u64 sequence --------------------------------

static __always_inline int replay_fresh(struct arrow_tag_guard *g, __u64 seq) {
  if (!g->started || seq > g->top) return 1;
  if (g->top - seq >= REPLAY_WINDOW) return 0;
  return (g->bits[(seq >> 5) & (REPLAY_BLOCKS - 1)] & (1U << (seq & 31))) == 0;
}

static __always_inline void replay_accept(struct arrow_tag_guard *g, __u64 seq) {
  if (!g->started) {
    for (int i = 0; i < REPLAY_BLOCKS; i++) g->bits[i] = 0;
  } else if (seq > g->top) {
    // Clear the blocks the top moves past: they now stand for sequences not seen yet.
    __u64 ahead = seq - g->top;
    __u64 blocks = ahead >= REPLAY_BITS ? REPLAY_BLOCKS : (seq >> 5) - (g->top >> 5);
    __u32 from = (g->top >> 5) & (REPLAY_BLOCKS - 1);
    for (__u32 i = 1; i <= REPLAY_BLOCKS; i++) {
      if (i > blocks) break;
      g->bits[(from + i) & (REPLAY_BLOCKS - 1)] = 0;
    }
  }
  if (!g->started || seq > g->top) {
    g->top = seq;
    g->started = 1;
  }
  g->bits[(seq >> 5) & (REPLAY_BLOCKS - 1)] |= 1U << (seq & 31);
}

// ---- Policing (src/router/police.ts): GCRA on one u64 ------------------------------------------

static __always_inline int police(struct arrow_circuit *c, struct arrow_slot *s, __u64 bytes, __u64 now) {
  // Rounded up, as costNs: rounding never gives a customer more than bought.
  __u64 cost = (bytes * c->ns_per_byte_q16 + 0xffff) >> 16;
  int ok;
  bpf_spin_lock(&s->lock);
  __u64 start = s->tat > now ? s->tat : now;
  __u64 tat = start + cost;
  ok = tat - now <= c->burst_ns;
  if (ok) s->tat = tat; // a refused packet takes no tokens
  bpf_spin_unlock(&s->lock);
  return ok;
}

static __always_inline void csum_ip(void *iphdr) {
  struct iphdr *ip = iphdr;
  __u32 sum = 0;
  __u16 *w = iphdr;
  ip->check = 0;
#pragma unroll
  for (int i = 0; i < 10; i++) sum += w[i];
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  ip->check = (__u16)~sum;
}

/*
 * What each segment of a GSO super-packet repeats: the ARROW header and the inner IPv4 header with
 * its TCP or UDP header (0 when they are not in the linear part). Its segments' datagrams add up
 * to the super-packet's length plus this for every segment after the first.
 */
static __always_inline __u32 replicated_len(__u8 *inner, void *data_end) {
  if ((void *)(inner + sizeof(struct iphdr)) > data_end) return 0;
  __u32 ihl = (inner[0] & 0x0f) * 4;
  __u32 l4 = sizeof(struct udphdr);
  if (inner[9] == IPPROTO_TCP) {
    __u8 *tcp = inner + (ihl & 0x3c);
    if ((void *)(tcp + 13) > data_end) return 0;
    l4 = (tcp[12] >> 4) * 4;
  }
  return ARROW_HEADER + ihl + l4;
}

/*
 * Why a deliver-ip circuit's inner packet (`length` bytes at `inner`) may not leave the ISP, as a
 * drop stat, or 0 when it may: innerPacketRefusal (src/router/deliver-ip.ts) for IPv4, whose IPv6
 * half stays in Node (the caller passes inner IPv6 up before any check).
 */
static __always_inline __u32 inner_refusal(__u32 slot, __u8 *inner, __u32 length, void *data_end) {
  if (length < 1 || (void *)(inner + sizeof(struct iphdr)) > data_end) return STAT_DROP_NOT_IP;
  struct iphdr *ip = (void *)inner;
  if (ip->version != 4 || length < sizeof(struct iphdr) || ip->ihl < 5 || bpf_ntohs(ip->tot_len) != length)
    return STAT_DROP_NOT_IP;
  struct arrow_prefix_key k = {.prefixlen = PREFIX_KEY_BITS, .role = PREFIX_DESTINATION};
  k.slot[0] = slot >> 24;
  k.slot[1] = slot >> 16;
  k.slot[2] = slot >> 8;
  k.slot[3] = slot;
  __builtin_memcpy(k.addr, &ip->daddr, 4);
  if (!bpf_map_lookup_elem(&prefixes, &k)) return STAT_DROP_OUTSIDE_PREFIXES;
  k.role = PREFIX_SOURCE;
  __builtin_memcpy(k.addr, &ip->saddr, 4);
  if (!bpf_map_lookup_elem(&prefixes, &k)) return STAT_DROP_SPOOFED_SOURCE;
  return 0;
}

// The Ethernet, IP, UDP and fixed ARROW headers, rewritten on the stack and written back at the
// (possibly moved) start of the frame.
struct frame_head {
  struct ethhdr eth;
  struct iphdr ip;
  struct udphdr udp;
  __u8 arrow[ARROW_HEADER];
} __attribute__((packed));

#define HEAD_LEN sizeof(struct frame_head)
// Of a super-packet, the inner IPv4 and TCP headers too (replicated_len), options included.
#define GSO_PULL 120

// What the program decided; arrow_xdp and arrow_tc turn it into their own return codes.
// V_DECAP: redirect into the ingress of *out_ifindex (the egress TUN), tc only.
enum verdict { V_PASS, V_DROP, V_TX, V_REDIRECT, V_DECAP };

#define CTX_DATA(ctx, xdp)                                                                            \
  ((xdp) ? (void *)(long)((struct xdp_md *)(ctx))->data : (void *)(long)((struct __sk_buff *)(ctx))->data)
#define CTX_DATA_END(ctx, xdp)                                                                        \
  ((xdp) ? (void *)(long)((struct xdp_md *)(ctx))->data_end                                          \
         : (void *)(long)((struct __sk_buff *)(ctx))->data_end)

/*
 * The whole path, for XDP (`xdp` = 1: an xdp_md) or tc (0: an __sk_buff). Always inlined with a
 * constant `xdp`, so each program keeps only its own branches. V_REDIRECT sets *out_ifindex.
 */
static __always_inline int arrow_process(void *ctx, const int xdp, __u32 *out_ifindex) {
  void *data = CTX_DATA(ctx, xdp);
  void *data_end = CTX_DATA_END(ctx, xdp);
  __u32 in_ifindex = xdp ? ((struct xdp_md *)ctx)->ingress_ifindex : ((struct __sk_buff *)ctx)->ifindex;
  struct frame_head *h = data;
  __u32 zero = 0;

  // Ours at all? IPv4 without options, not a fragment, UDP to the router's address and port.
  struct ethhdr *eth = data;
  struct iphdr *iph = (void *)(eth + 1);
  struct udphdr *udph = (void *)(iph + 1);
  if ((void *)(udph + 1) > data_end) goto not_ours;
  if (eth->h_proto != bpf_htons(ETH_P_IP) || iph->ihl != 5 || iph->version != 4 ||
      iph->protocol != IPPROTO_UDP || (iph->frag_off & bpf_htons(0x3fff)) != 0)
    goto not_ours;
  struct arrow_config *cfg = bpf_map_lookup_elem(&config, &zero);
  if (!cfg || iph->daddr != cfg->ip || udph->dest != cfg->port) goto not_ours;
  // The datagram must fill the frame exactly: its length is the ARROW packet's (no length field).
  // tc measures by skb->len: a GSO super-packet (an endpoint's TCP, whole) has its headers pulled in only.
  __u32 ip_len = bpf_ntohs(iph->tot_len);
  __u32 frame_len = xdp ? (__u32)(data_end - data) : ((struct __sk_buff *)ctx)->len;
  if (sizeof(struct ethhdr) + ip_len != frame_len || bpf_ntohs(udph->len) != ip_len - sizeof(struct iphdr))
    goto not_ours;
  // Segments of one super-packet share its ARROW header; they are counted, policed and sent as one.
  __u32 segs = 1;
  if (!xdp && ((struct __sk_buff *)ctx)->gso_segs > 1) segs = ((struct __sk_buff *)ctx)->gso_segs;
  __u32 len = ip_len - sizeof(struct iphdr) - sizeof(struct udphdr); // the ARROW datagram, buf.length
  if ((void *)(h + 1) > data_end) {
    stat(STAT_PASS_MALFORMED); // shorter than the ARROW header: `truncated`
    return V_PASS;
  }

  // 1. Well-formed (header.ts check); the slow path counts the reason of a bad one.
  __u8 *a = h->arrow;
  __u8 flags = a[ARROW_OFF_FLAGS];
  if (a[0] != ARROW_VERSION || a[ARROW_OFF_TYPE] < 1 || a[ARROW_OFF_TYPE] > ARROW_TYPE_MAX ||
      (flags & ~ARROW_KNOWN_FLAGS) != 0 || ((flags & ARROW_FLAG_TAG) == 0 && flags != 0)) {
    stat(STAT_PASS_MALFORMED);
    return V_PASS;
  }
  __u32 ntags = (flags & ARROW_FLAG_TAG) ? 1 + (flags >> 4) : 0;
  if (len < ARROW_HEADER + ARROW_TAG * ntags) {
    stat(STAT_PASS_MALFORMED);
    return V_PASS;
  }
  // 2. Only DATA takes the fast path: echoes, probes, keepalives... are the control plane's.
  if (a[ARROW_OFF_TYPE] != ARROW_TYPE_DATA) {
    stat(STAT_PASS_NOT_DATA);
    return V_PASS;
  }
  // 3. Known authenticator.
  __u8 auth[16];
  __builtin_memcpy(auth, a + ARROW_OFF_AUTH, 16);
  struct arrow_circuit *c = bpf_map_lookup_elem(&circuits, auth);
  if (!c) {
    stat(STAT_PASS_UNKNOWN);
    return V_PASS;
  }
  struct arrow_slot *s = bpf_map_lookup_elem(&slots, &c->slot);
  if (!s) {
    stat(STAT_ERROR);
    return V_PASS;
  }
  int pop = (c->flags & CF_INGRESS) && (c->flags & CF_POLICE) && (c->flags & CF_TAGGED);
  __u32 payload_len = len - ARROW_HEADER - ARROW_TAG * ntags;
  // A tag covers one datagram's payload: a tagged super-packet (its payload not even pulled in)
  // goes up, where the stack hands it to the socket segment by segment.
  if ((pop && payload_len > ARROW_TAG_MAX_PAYLOAD) || (segs > 1 && ntags > 0)) {
    stat(STAT_PASS_BIG);
    return V_PASS;
  }
  // deliver-ip: the kernel's to decapsulate, or the Node router's, decided before any state moves.
  // Node takes what the kernel cannot hand to the TUN, and the first DATA of a customer this router
  // does not serve yet (that packet makes it take the customer over, egress.ts).
  int decap = c->kind == KIND_DELIVER_IP;
  __u8 *inner = a + ARROW_HEADER + ARROW_TAG * (ntags & 0x1f);
  if (decap && (xdp || !(c->flags & CF_DECAP) || cfg->egress_ifindex == 0 || segs > 1 ||
                ((void *)(inner + 1) <= data_end && (inner[0] >> 4) == 6))) {
    stat(STAT_PASS_EGRESS);
    return V_PASS;
  }

  // The route to the next hop, before any check that changes state: a packet the kernel cannot
  // send yet (no neighbour entry) goes up unchanged and leaves no trace here; the Node router
  // sends it, which also resolves the neighbour for the packets after it.
  struct bpf_fib_lookup fib = {};
  if (use_fib && !decap) {
    fib.family = AF_INET;
    fib.l4_protocol = IPPROTO_UDP;
    fib.sport = cfg->port;
    fib.dport = c->next_port;
    // 0 for a super-packet: the kernel then checks it as GSO (its segments fit), not by its length.
    fib.tot_len = segs > 1 ? 0 : ip_len - (pop ? ARROW_TAG : 0);
    fib.ifindex = in_ifindex;
    fib.ipv4_src = cfg->ip;
    fib.ipv4_dst = c->next_ip;
    if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS) {
      stat(STAT_PASS_NO_ROUTE);
      return V_PASS;
    }
  }

  // A super-packet is untagged (above): its segments' datagrams, as the wire will carry them.
  __u64 wire = len;
  if (segs > 1) wire += (__u64)(segs - 1) * replicated_len(a + ARROW_HEADER, data_end);

  // 4. Hop limit: a looped circuit dies here (counted in first at an ingress router).
  __u8 hops = a[ARROW_OFF_HOPS];
  if (hops <= 1) {
    __sync_fetch_and_add(&s->hop_limit, segs);
    __sync_fetch_and_add(&s->hop_limit_bytes, wire);
    stat(STAT_DROP_HOP_LIMIT);
    return V_DROP;
  }

  // 5. DATA entering the ISP: tag and replay window, then policing (ingress.ts admit).
  if ((c->flags & CF_INGRESS) && (c->flags & CF_POLICE)) {
    if (c->flags & CF_TAGGED) {
      if (ntags == 0) goto bad_tag;
      __u32 slot = c->slot;
      struct arrow_tag_guard *g = bpf_map_lookup_elem(&tags, &slot);
      if (!g) {
        stat(STAT_ERROR);
        return V_PASS;
      }
      __u64 seq = bpf_be64_to_cpu(*(__u64 *)(a + ARROW_OFF_SEQ));
      int fresh;
      // The cheap check first: an old sequence is refused before any MAC is computed.
      bpf_spin_lock(&g->lock);
      fresh = replay_fresh(g, seq);
      bpf_spin_unlock(&g->lock);
      if (!fresh) goto replay;
      __u8 key[16];
      __builtin_memcpy(key, g->key, 16);
      __u8 *payload = a + ARROW_HEADER + ARROW_TAG * (ntags & 0x1f);
      if (!tag_ok(key, a, payload, payload_len & (2 * ARROW_TAG_MAX_PAYLOAD - 1), data_end)) goto bad_tag;
      // Checked again under the lock: another CPU may have accepted the same sequence meanwhile.
      bpf_spin_lock(&g->lock);
      fresh = replay_fresh(g, seq);
      if (fresh) replay_accept(g, seq);
      bpf_spin_unlock(&g->lock);
      if (!fresh) goto replay;
    }
    __u64 now = clock_from_map ? cfg->test_now : bpf_ktime_get_ns();
    if (!police(c, s, wire, now)) {
      __sync_fetch_and_add(&s->over_rate, segs);
      stat(STAT_DROP_OVER_RATE);
      return V_DROP;
    }
  }

  // 6a. Decapsulate (tc only): the inner packet checked against the circuit's prefixes, then the
  // outer IP, UDP and ARROW headers (with any tags) removed after the MAC header, and the frame
  // redirected into the egress TUN's ingress, where the host routes it as Node's write would.
  if (!xdp && decap) {
    // Counted as DataPlane counts it: every packet past the checks above, then the refusal or `out`.
    __sync_fetch_and_add(&s->packets, 1);
    __sync_fetch_and_add(&s->bytes, len);
    __u32 refused = inner_refusal(c->slot, inner, payload_len, data_end);
    if (refused != 0) {
      if (refused == STAT_DROP_NOT_IP) __sync_fetch_and_add(&s->not_ip, 1);
      else if (refused == STAT_DROP_OUTSIDE_PREFIXES) __sync_fetch_and_add(&s->outside_prefixes, 1);
      else __sync_fetch_and_add(&s->spoofed_source, 1);
      stat(refused);
      return V_DROP;
    }
    __sync_fetch_and_add(&s->out_bytes, pop ? len - ARROW_TAG : len);
    __s32 strip = sizeof(struct iphdr) + sizeof(struct udphdr) + ARROW_HEADER + ARROW_TAG * (ntags & 0x1f);
    if (bpf_skb_adjust_room(ctx, -strip, BPF_ADJ_ROOM_MAC, 0) != 0) {
      stat(STAT_ERROR);
      return V_DROP;
    }
    stat(STAT_DECAP);
    *out_ifindex = cfg->egress_ifindex;
    return V_DECAP;
  }

  // 6. Forward: the header rewritten on the stack, then written where the frame now starts.
  struct frame_head out;
  __builtin_memcpy(&out, h, HEAD_LEN);
  out.arrow[ARROW_OFF_HOPS] = hops - 1;
  if (c->flags & CF_REWRITE) __builtin_memcpy(out.arrow + ARROW_OFF_AUTH, c->next_auth, 16);
  __u32 out_len = len;
  if (pop) {
    // Pop our tag: the header moves up over it, so the next ISP finds its own tag first.
    __u32 left = ntags - 1;
    out.arrow[ARROW_OFF_FLAGS] = left == 0 ? 0 : ARROW_FLAG_TAG | ((left - 1) << 4);
    out_len -= ARROW_TAG;
  }
  __sync_fetch_and_add(&s->packets, segs);
  __sync_fetch_and_add(&s->bytes, wire);
  __sync_fetch_and_add(&s->out_bytes, out_len + (wire - len));

  out.ip.saddr = cfg->ip;
  out.ip.daddr = c->next_ip;
  out.ip.ttl = 64; // a fresh datagram from the router, as the Node path's socket would send
  out.ip.tot_len = bpf_htons(out_len + sizeof(struct iphdr) + sizeof(struct udphdr));
  csum_ip((__u8 *)&out + sizeof(struct ethhdr));
  out.udp.source = cfg->port;
  out.udp.dest = c->next_port;
  out.udp.len = bpf_htons(out_len + sizeof(struct udphdr));
  out.udp.check = 0; // allowed on IPv4 (RFC 768); the ARROW tag, where used, covers the payload
  if (use_fib) {
    __builtin_memcpy(out.eth.h_source, fib.smac, ETH_ALEN);
    __builtin_memcpy(out.eth.h_dest, fib.dmac, ETH_ALEN);
  } else {
    __builtin_memcpy(out.eth.h_source, h->eth.h_dest, ETH_ALEN);
    __builtin_memcpy(out.eth.h_dest, h->eth.h_source, ETH_ALEN);
  }

  // XDP moves the frame's start; tc removes the 16 bytes after the MAC header. Either way the
  // headers are written whole below, so only the payload's position matters: it does not move.
  if (pop && (xdp ? bpf_xdp_adjust_head(ctx, ARROW_TAG) : bpf_skb_adjust_room(ctx, -ARROW_TAG, BPF_ADJ_ROOM_MAC, 0)) != 0) {
    // Cannot happen for a frame this long; the state above is already spent, so count it.
    stat(STAT_ERROR);
    return V_DROP;
  }
  data = CTX_DATA(ctx, xdp);
  data_end = CTX_DATA_END(ctx, xdp);
  if (data + HEAD_LEN > data_end) {
    stat(STAT_ERROR);
    return V_DROP;
  }
  __builtin_memcpy(data, &out, HEAD_LEN);

  if (!use_fib || fib.ifindex == in_ifindex) {
    stat(STAT_TX);
    return V_TX;
  }
  stat(STAT_REDIRECT);
  *out_ifindex = fib.ifindex;
  return V_REDIRECT;

bad_tag:
  __sync_fetch_and_add(&s->bad_tag, segs);
  stat(STAT_DROP_BAD_TAG);
  return V_DROP;
replay:
  __sync_fetch_and_add(&s->replay, 1);
  stat(STAT_DROP_REPLAY);
  return V_DROP;
not_ours:
  stat(STAT_PASS_NOT_OURS);
  return V_PASS;
}

SEC("xdp")
int arrow_xdp(struct xdp_md *ctx) {
  __u32 ifindex = 0;
  switch (arrow_process(ctx, 1, &ifindex)) {
  case V_DROP: return XDP_DROP;
  case V_TX: return XDP_TX;
  case V_REDIRECT: return bpf_redirect(ifindex, 0);
  default: return XDP_PASS;
  }
}

// The same path at tc ingress (tcx), for interfaces without XDP and for loopback. What is not for
// the fast path returns TC_ACT_UNSPEC (TCX_NEXT): the next program on the hook looks at it, then the
// stack. On lo every router of a loopback lab attaches here, each taking only its own address.
SEC("tc")
int arrow_tc(struct __sk_buff *skb) {
  // Direct packet access reaches only the linear part: pull the datagram in (the tag covers it all).
  // Of a GSO super-packet (up to 64 KB of an endpoint's TCP, untagged) only the headers: the
  // program reads no payload there, and copying it would cost more than the segments it saves.
  __u32 want = skb->len;
  if (skb->gso_segs > 1 && want > HEAD_LEN + GSO_PULL) want = HEAD_LEN + GSO_PULL;
  if (skb->data_end - skb->data < want && bpf_skb_pull_data(skb, want) != 0) return TC_ACT_UNSPEC;
  __u32 ifindex = 0;
  switch (arrow_process(skb, 0, &ifindex)) {
  case V_DROP: return TC_ACT_SHOT;
  case V_TX: return bpf_redirect(skb->ifindex, 0); // back out of the interface it came in on
  case V_REDIRECT: return bpf_redirect(ifindex, 0);
  case V_DECAP: return bpf_redirect(ifindex, BPF_F_INGRESS);
  default: return TC_ACT_UNSPEC;
  }
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
