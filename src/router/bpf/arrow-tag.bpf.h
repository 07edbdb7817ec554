// SPDX-License-Identifier: MIT
//
// The ARROW header's layout and its per-packet tag, shared by the router's program (arrow.bpf.c)
// and the benchmark's traffic generator (src/bench/bpf/bench.bpf.c), which writes the tags the
// router verifies. Needs <linux/types.h> and <bpf/bpf_helpers.h> first.
#ifndef ARROW_TAG_BPF_H
#define ARROW_TAG_BPF_H

// The ARROW header (src/wire/header.ts, docs/wire.md).
#define ARROW_VERSION 1
#define ARROW_HEADER 28
#define ARROW_TAG 16
#define ARROW_OFF_TYPE 1
#define ARROW_OFF_FLAGS 2
#define ARROW_OFF_HOPS 3
#define ARROW_OFF_AUTH 4
#define ARROW_OFF_SEQ 20
#define ARROW_TYPE_DATA 1
#define ARROW_TYPE_MAX 13 // LAST_LEG_REPLY: types 1-13 are known
#define ARROW_FLAG_TAG 0x01
#define ARROW_KNOWN_FLAGS 0xf1

// A tagged payload the program verifies is at most this long; a longer one (jumbo frames) goes
// up to the slow path. 2048 bytes covers every packet of a 1500-byte MTU with room to spare, and
// keeps the verifier's walk of the SipHash loop short.
#define ARROW_TAG_MAX_PAYLOAD 2048

// ---- SipHash-2-4-128 (src/wire/siphash.ts), on u64 as the reference implementation --------------

#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                      \
  do {                                                                                                \
    v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                                         \
    v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                                            \
    v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                                            \
    v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                                         \
  } while (0)
#define COMPRESS(m)                                                                                   \
  do {                                                                                                \
    v3 ^= (m); SIPROUND; SIPROUND; v0 ^= (m);                                                         \
  } while (0)

// A little-endian 64-bit word, as SipHash reads its message: one load on a little-endian host
// (unaligned packet loads are fine where the JIT runs: x86_64, arm64), not eight byte loads.
static __always_inline __u64 le64(const __u8 *p) {
  __u64 w = *(const __u64 *)p; // a memcpy would be split into byte loads by the BPF backend
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return w;
#else
  return __builtin_bswap64(w);
#endif
}

struct arrow_tag_io {
  __u8 key[16]; // in: the circuit's tag key
  __u64 out[2]; // out: the tag
};

/*
 * The tag of a packet: SipHash-2-4-128(key, auth ‖ seq ‖ payload length (8 bytes, big-endian) ‖
 * payload) (src/wire/tag.ts), into io->out as two little-endian words (the tag's bytes in order).
 * (Five arguments at most for a BPF function: the key goes in and the tag out through `io`.)
 * `arrow` points at the ARROW header, `payload` at the first byte after the tag stack, `len` is the
 * payload length (checked against data_end by the caller, and at most ARROW_TAG_MAX_PAYLOAD).
 * Returns 0 when the packet is shorter than that. A subprogram, not inlined: the verifier then
 * forgets where in the loop it returned, instead of walking what follows once per payload length.
 */
static __noinline __attribute__((unused)) int arrow_tag(struct arrow_tag_io *io, __u8 *arrow, __u8 *payload, __u32 len, void *data_end) {
  __u64 k0 = le64(io->key), k1 = le64(io->key + 8);
  __u64 v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL ^ 0xee;
  __u64 v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
  __u64 m;
  if ((void *)(arrow + ARROW_HEADER + ARROW_TAG) > data_end) return 0;
  COMPRESS(le64(arrow + ARROW_OFF_AUTH));
  COMPRESS(le64(arrow + ARROW_OFF_AUTH + 8));
  COMPRESS(le64(arrow + ARROW_OFF_SEQ));
  // The length as 8 big-endian bytes, read as a little-endian word.
  COMPRESS((__u64)((len >> 8) & 0xff) << 48 | (__u64)(len & 0xff) << 56);
  __u32 words = len / 8;
  __u8 *p = payload;
  for (__u32 i = 0; i < ARROW_TAG_MAX_PAYLOAD / 8; i++) {
    if (i >= words) break;
    barrier_var(p); // keeps clang from folding the bound into arithmetic on data_end
    if ((void *)(p + 8) > data_end) return 0;
    m = le64(p);
    COMPRESS(m);
    p += 8;
  }
  // The last block: the remaining 0-7 bytes, the total message length (mod 256) in its top byte.
  __u32 rest = len & 7;
  m = (__u64)((32 + len) & 0xff) << 56;
  for (__u32 j = 0; j < 7; j++) {
    if (j >= rest) break;
    barrier_var(p);
    if ((void *)(p + 1) > data_end) return 0;
    m |= (__u64)p[0] << (8 * j);
    p++;
  }
  COMPRESS(m);
  v2 ^= 0xee;
  SIPROUND; SIPROUND; SIPROUND; SIPROUND;
  __u64 t0 = v0 ^ v1 ^ v2 ^ v3;
  v1 ^= 0xdd;
  SIPROUND; SIPROUND; SIPROUND; SIPROUND;
  io->out[0] = t0;
  io->out[1] = v0 ^ v1 ^ v2 ^ v3;
  return 1;
}

#endif
