// arrow-udpgen: the traffic generator of `arrow bench forward`'s kernel rows (docs/performance.md).
//
// A Node sender tops out near 100k datagrams/s, far below a router in the kernel, so the kernel rows
// are driven from C: one connected UDP socket, sendmmsg in batches of BATCH, the same datagram each
// time with its sequence number advanced (big-endian, bytes 20..27 of the ARROW header) so a circuit
// with a replay window accepts every one. With a tag key, every datagram also gets the tag of the
// one ISP it enters (docs/wire.md, "The tag stack"):
//
//   tag = SipHash-2-4-128(K, auth ‖ sequence ‖ payload length (8 bytes, BE) ‖ payload)
//
// with auth the datagram's own authenticator (bytes 4..19), the tag at bytes 28..43 and the payload
// after it. The template (hex) must already carry T and one tag's room; this program only fills it.
//
// A socket sender costs about 2 µs a datagram here (the UDP stack, an skb, the veth), which is slower
// than a router in XDP. So the bench drives its rows with --xdp instead: the XDP program
// bench_generate (src/bench/bpf/bench.bpf.c) run through BPF_PROG_RUN in live-frames mode, which
// numbers and tags each copy of an Ethernet frame in the kernel and sends it out of IFNAME (XDP_TX),
// with no socket and no skb, as xdp-trafficgen does.
//
// Usage: arrow-udpgen HOST PORT SECONDS TEMPLATE_HEX [TAG_KEY_HEX]
//        arrow-udpgen --xdp OBJECT IFNAME SECONDS FIRST_SEQUENCE FRAME_HEX [TAG_KEY_HEX]
//        arrow-udpgen --dump N TEMPLATE_HEX TAG_KEY_HEX   (prints N datagrams as hex, for the tests)
// Prints one JSON line when done: {"sent":N,"errors":N,"seconds":S}. Bounded by SECONDS and by
// MAX_PPS * SECONDS datagrams; SIGINT or SIGTERM end it early, still printing the line.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_DATAGRAM 65507
#define OFFSET_AUTH 4
#define OFFSET_SEQUENCE 20
#define OFFSET_TAG 28
#define TAG_LENGTH 16
#define MAX_PPS 20000000.0

static volatile sig_atomic_t stopping = 0;
static void on_signal(int sig) { (void)sig; stopping = 1; }

// SipHash-2-4 with 128-bit output, after the reference implementation (Aumasson, Bernstein).
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
  do {                                                                                             \
    v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                                      \
    v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                                         \
    v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                                         \
    v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                                      \
  } while (0)

static uint64_t le64(const uint8_t *p) {
  uint64_t x = 0;
  for (int i = 7; i >= 0; i--) x = (x << 8) | p[i];
  return x;
}

static void put_le64(uint8_t *p, uint64_t x) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(x >> (8 * i));
}

static void siphash128(const uint8_t key[16], const uint8_t *in, size_t len, uint8_t out[16]) {
  uint64_t k0 = le64(key), k1 = le64(key + 8);
  uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
  uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
  v1 ^= 0xee;
  const uint8_t *end = in + (len & ~(size_t)7);
  for (; in != end; in += 8) {
    uint64_t m = le64(in);
    v3 ^= m;
    SIPROUND; SIPROUND;
    v0 ^= m;
  }
  uint64_t b = (uint64_t)len << 56;
  for (int i = (int)(len & 7) - 1; i >= 0; i--) b |= (uint64_t)in[i] << (8 * i);
  v3 ^= b;
  SIPROUND; SIPROUND;
  v0 ^= b;
  v2 ^= 0xee;
  SIPROUND; SIPROUND; SIPROUND; SIPROUND;
  put_le64(out, v0 ^ v1 ^ v2 ^ v3);
  v1 ^= 0xdd;
  SIPROUND; SIPROUND; SIPROUND; SIPROUND;
  put_le64(out + 8, v0 ^ v1 ^ v2 ^ v3);
}

static int unhex(const char *hex, uint8_t *out, size_t max) {
  size_t n = strlen(hex);
  if (n % 2 || n / 2 > max) return -1;
  for (size_t i = 0; i < n / 2; i++) {
    unsigned int byte;
    if (sscanf(hex + 2 * i, "%2x", &byte) != 1) return -1;
    out[i] = (uint8_t)byte;
  }
  return (int)(n / 2);
}

// The scratch message of one tag: auth ‖ sequence ‖ length ‖ payload.
static uint8_t message[MAX_DATAGRAM + 32];

/** Numbers datagram `d` with `seq` and, with a key, writes its tag. */
static void stamp(uint8_t *d, int size, uint64_t seq, const uint8_t *key) {
  for (int i = 0; i < 8; i++) d[OFFSET_SEQUENCE + i] = (uint8_t)(seq >> (56 - 8 * i));
  if (!key) return;
  int payload = OFFSET_TAG + TAG_LENGTH, plen = size - payload;
  memcpy(message, d + OFFSET_AUTH, 24); // auth ‖ sequence, adjacent on the wire
  memset(message + 24, 0, 8);
  message[30] = (uint8_t)(plen >> 8);
  message[31] = (uint8_t)plen;
  memcpy(message + 32, d + payload, (size_t)plen);
  siphash128(key, message, 32 + (size_t)plen, d + OFFSET_TAG);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int usage(void) {
  fprintf(stderr, "usage: arrow-udpgen HOST PORT SECONDS TEMPLATE_HEX [TAG_KEY_HEX]\n"
                  "       arrow-udpgen --xdp OBJECT IFNAME SECONDS FIRST_SEQUENCE FRAME_HEX [TAG_KEY_HEX]\n"
                  "       arrow-udpgen --dump N TEMPLATE_HEX TAG_KEY_HEX\n");
  return 2;
}

static uint8_t bufs[BATCH][MAX_DATAGRAM];

/** Frames per BPF_PROG_RUN call: ~50 ms at 2 Mpps, so the time bound is kept to within that. */
#define XDP_CHUNK 100000
#define BPF_F_LIVE (1U << 1) /* BPF_F_TEST_XDP_LIVE_FRAMES, kernel 5.18+ */

#define GEN_HEAD (14 + 20 + 8 + OFFSET_TAG + TAG_LENGTH)

struct gen_config {
  uint8_t head[GEN_HEAD];
  uint8_t key[16];
  uint32_t tagged;
  uint32_t pad;
};

static int xdp_blast(int argc, char **argv) {
  const char *object = argv[2], *ifname = argv[3];
  double seconds = atof(argv[4]);
  uint64_t first = strtoull(argv[5], NULL, 10);
  static uint8_t frame[4096];
  int size = unhex(argv[6], frame, sizeof frame);
  struct gen_config cfg = {0};
  unsigned int ifindex = if_nametoindex(ifname);
  if (seconds <= 0 || size <= 0 || ifindex == 0 || (argc == 8 && unhex(argv[7], cfg.key, 16) != 16)) {
    fprintf(stderr, "arrow-udpgen --xdp: bad SECONDS, FRAME_HEX, TAG_KEY_HEX or no interface %s\n", ifname);
    return 2;
  }
  if (size < GEN_HEAD) {
    fprintf(stderr, "arrow-udpgen --xdp: a frame needs at least %d bytes (Ethernet, IP, UDP, ARROW, a tag)\n", GEN_HEAD);
    return 2;
  }
  memcpy(cfg.head, frame, GEN_HEAD);
  cfg.tagged = argc == 8;
  struct bpf_object *obj = bpf_object__open_file(object, NULL);
  if (!obj || bpf_object__load(obj) != 0) {
    fprintf(stderr, "arrow-udpgen --xdp: loading %s: %s\n", object, strerror(errno));
    return 1;
  }
  struct bpf_program *prog = bpf_object__find_program_by_name(obj, "bench_generate");
  struct bpf_map *cm = bpf_object__find_map_by_name(obj, "gen_config");
  struct bpf_map *sm = bpf_object__find_map_by_name(obj, "gen_sequence");
  uint32_t zero = 0;
  if (!prog || !cm || !sm || bpf_map_update_elem(bpf_map__fd(cm), &zero, &cfg, BPF_ANY) != 0 ||
      bpf_map_update_elem(bpf_map__fd(sm), &zero, &first, BPF_ANY) != 0) {
    fprintf(stderr, "arrow-udpgen --xdp: %s lacks bench_generate or its maps\n", object);
    return 1;
  }
  struct xdp_md ctx = {.data = 0, .data_end = (uint32_t)size, .ingress_ifindex = ifindex};
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = (uint32_t)size, .ctx_in = &ctx,
              .ctx_size_in = sizeof ctx, .repeat = XDP_CHUNK, .flags = BPF_F_LIVE, .batch_size = 64);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  double start = now_s(), end = start + seconds, t = start;
  uint64_t errors = 0;
  while (!stopping && t < end) {
    if (bpf_prog_test_run_opts(bpf_program__fd(prog), &opts) != 0) {
      if (errno != EINTR) {
        fprintf(stderr, "arrow-udpgen --xdp: BPF_PROG_RUN (live frames): %s\n", strerror(errno));
        return 1;
      }
      errors++;
    }
    t = now_s();
  }
  // The counter says exactly how many frames the program numbered, hence sent out.
  uint64_t next = first;
  bpf_map_lookup_elem(bpf_map__fd(sm), &zero, &next);
  printf("{\"sent\":%llu,\"errors\":%llu,\"seconds\":%.6f,\"nextSequence\":%llu}\n",
         (unsigned long long)(next - first), (unsigned long long)errors, t - start, (unsigned long long)next);
  bpf_object__close(obj);
  return 0;
}

int main(int argc, char **argv) {
  uint8_t key[16], *keyp = NULL;
  static uint8_t template[MAX_DATAGRAM];
  if (argc == 5 && strcmp(argv[1], "--dump") == 0) {
    int n = atoi(argv[2]);
    int size = unhex(argv[3], template, sizeof template);
    if (n <= 0 || size < OFFSET_TAG + TAG_LENGTH || unhex(argv[4], key, 16) != 16) return usage();
    for (int i = 0; i < n; i++) {
      stamp(template, size, (uint64_t)i + 1, key);
      for (int j = 0; j < size; j++) printf("%02x", template[j]);
      printf("\n");
    }
    return 0;
  }
  if ((argc == 7 || argc == 8) && strcmp(argv[1], "--xdp") == 0) return xdp_blast(argc, argv);
  if (argc != 5 && argc != 6) return usage();
  double seconds = atof(argv[3]);
  int size = unhex(argv[4], template, sizeof template);
  if (seconds <= 0 || size < OFFSET_TAG) {
    fprintf(stderr, "arrow-udpgen: SECONDS must be > 0 and TEMPLATE_HEX an ARROW datagram (>= 28 bytes)\n");
    return 2;
  }
  if (argc == 6) {
    if (unhex(argv[5], key, 16) != 16 || size < OFFSET_TAG + TAG_LENGTH) {
      fprintf(stderr, "arrow-udpgen: TAG_KEY_HEX must be 16 bytes and the template hold a tag\n");
      return 2;
    }
    keyp = key;
  }
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
  if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) {
    fprintf(stderr, "arrow-udpgen: %s is not an IPv4 address\n", argv[1]);
    return 2;
  }
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof to) < 0) {
    perror("arrow-udpgen: socket");
    return 1;
  }
  int sndbuf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);

  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  memset(msgs, 0, sizeof msgs);
  for (int i = 0; i < BATCH; i++) {
    memcpy(bufs[i], template, (size_t)size);
    iov[i].iov_base = bufs[i];
    iov[i].iov_len = (size_t)size;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  uint64_t seq = 1, sent = 0, errors = 0, cap = (uint64_t)(MAX_PPS * seconds);
  double start = now_s(), end = start + seconds, t = start;
  while (!stopping && t < end && sent < cap) {
    for (int i = 0; i < BATCH; i++) stamp(bufs[i], size, seq + (uint64_t)i, keyp);
    int r = sendmmsg(fd, msgs, BATCH, 0);
    if (r < 0) {
      // A full queue (ENOBUFS) or a refused port: counted, the blast goes on.
      if (errno != ENOBUFS && errno != EAGAIN && errno != ECONNREFUSED && errno != EINTR) {
        perror("arrow-udpgen: sendmmsg");
        return 1;
      }
      errors++;
    } else {
      sent += (uint64_t)r;
    }
    seq += BATCH; // numbers of datagrams not sent are skipped: gaps are harmless to a replay window
    t = now_s();
  }
  printf("{\"sent\":%llu,\"errors\":%llu,\"seconds\":%.6f}\n", (unsigned long long)sent,
         (unsigned long long)errors, t - start);
  return 0;
}
