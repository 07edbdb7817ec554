// A small Node-API addon over libbpf for the router's kernel fast path (src/router/kernel.ts).
//
// open(path)                         -> object handle (closed when collected, or by close)
// setConst(obj, name, value)         before load: a `const volatile` of .rodata, found by BTF
// setMaxEntries(obj, map, n)         before load
// load(obj)                          -> undefined; throws with the verifier's log on failure
// mapFd(obj, map)                    -> fd
// mapValueSize(obj, map)             -> bytes: user space checks its encoders against the object
// programFd(obj, program)            -> fd
// programId(fd)                      -> the kernel's id of a program (bpftool prog show id N)
// mapUpdate(fd, key, value, flags)   -> 0 or -errno
// mapDelete(fd, key)                 -> 0 or -errno
// mapLookup(fd, key, value)          -> true (value filled), false (absent); throws on other errors
// percpuSum(fd, key, valueSize, out) -> true/false: the value on every possible CPU, summed as u64
//                                       words (valueSize a multiple of 8) into `out`
// possibleCpus()                     -> n
// attachXdp(progFd, ifindex, mode)   -> link fd ("native" | "generic" | "auto"); the program stays
//                                       attached while the link fd is open, so a router that dies
//                                       falls back to the Node path by itself
// attachTc(progFd, ifindex)          -> link fd: tc ingress (tcx), likewise a link
// detach(linkFd)
// testRun(progFd, dataIn, dataOut, ifindex, repeat, gsoSegs, gsoSize) -> [retval, sizeOut, ns per run]:
//   BPF_PROG_TEST_RUN; ifindex > 0 gives an XDP program its arrival interface, gsoSegs > 0 makes a
//   tc program's frame a GSO super-packet of that many segments of gsoSize
// close(obj)
//
// Why an addon rather than bpftool: a router writes its whole table into the maps, and a repair
// moves many circuits at once; one system call per update, no process per update.
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/if_link.h>
#include <node_api.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(call)                                                                                        \
  do {                                                                                                     \
    if ((call) != napi_ok) {                                                                               \
      napi_throw_error(env, NULL, "arrow-bpf: " #call " failed");                                          \
      return NULL;                                                                                         \
    }                                                                                                      \
  } while (0)

// libbpf's messages (the verifier log among them) for the error of the call that failed.
static char log_buf[16384];
static size_t log_len;

static int capture(enum libbpf_print_level level, const char *fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  if (log_len >= sizeof log_buf - 1) return 0;
  int n = vsnprintf(log_buf + log_len, sizeof log_buf - log_len, fmt, args);
  if (n > 0) log_len += (size_t)n < sizeof log_buf - log_len ? (size_t)n : sizeof log_buf - 1 - log_len;
  return 0;
}

static napi_value throw_err(napi_env env, const char *what, int err) {
  char msg[sizeof log_buf + 256];
  // The log's tail: the verifier's reason comes last.
  const char *tail = log_len > 4000 ? log_buf + log_len - 4000 : log_buf;
  snprintf(msg, sizeof msg, "%s: %s%s%s", what, strerror(err > 0 ? err : -err), log_len ? "\n" : "",
           log_len ? tail : "");
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static void obj_finalize(napi_env env, void *data, void *hint) {
  struct bpf_object **slot = data;
  if (*slot) bpf_object__close(*slot);
  free(slot);
}

static napi_value args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, "arrow-bpf: missing arguments");
    return NULL;
  }
  return argv[0];
}

static struct bpf_object *get_obj(napi_env env, napi_value v) {
  struct bpf_object **slot;
  if (napi_get_value_external(env, v, (void **)&slot) != napi_ok || !*slot) {
    napi_throw_type_error(env, NULL, "arrow-bpf: not an open BPF object");
    return NULL;
  }
  return *slot;
}

static int get_string(napi_env env, napi_value v, char *out, size_t size) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, out, size, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "arrow-bpf: expected a string");
    return -1;
  }
  return 0;
}

static int get_buffer(napi_env env, napi_value v, void **data, size_t *len) {
  if (napi_get_buffer_info(env, v, data, len) != napi_ok) {
    napi_throw_type_error(env, NULL, "arrow-bpf: expected a Buffer");
    return -1;
  }
  return 0;
}

static int get_i32(napi_env env, napi_value v, int32_t *out) {
  if (napi_get_value_int32(env, v, out) != napi_ok) {
    napi_throw_type_error(env, NULL, "arrow-bpf: expected a number");
    return -1;
  }
  return 0;
}

static napi_value int_value(napi_env env, int32_t n) {
  napi_value r;
  CHECK(napi_create_int32(env, n, &r));
  return r;
}

static napi_value bool_value(napi_env env, bool b) {
  napi_value r;
  CHECK(napi_get_boolean(env, b, &r));
  return r;
}

static napi_value n_open(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args(env, info, 1, argv)) return NULL;
  char path[4096];
  if (get_string(env, argv[0], path, sizeof path)) return NULL;
  log_len = 0;
  struct bpf_object *obj = bpf_object__open_file(path, NULL);
  if (!obj) return throw_err(env, path, errno);
  struct bpf_object **slot = malloc(sizeof *slot);
  if (!slot) {
    bpf_object__close(obj);
    return throw_err(env, "malloc", ENOMEM);
  }
  *slot = obj;
  napi_value r;
  CHECK(napi_create_external(env, slot, obj_finalize, NULL, &r));
  return r;
}

static napi_value n_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args(env, info, 1, argv)) return NULL;
  struct bpf_object **slot;
  if (napi_get_value_external(env, argv[0], (void **)&slot) != napi_ok) return NULL;
  if (*slot) bpf_object__close(*slot);
  *slot = NULL;
  return NULL;
}

// Writes `value` (little-endian, the variable's own size) into the initial .rodata image.
static napi_value n_set_const(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!args(env, info, 3, argv)) return NULL;
  struct bpf_object *obj = get_obj(env, argv[0]);
  if (!obj) return NULL;
  char name[256];
  if (get_string(env, argv[1], name, sizeof name)) return NULL;
  int64_t value;
  if (napi_get_value_int64(env, argv[2], &value) != napi_ok) return NULL;
  struct btf *btf = bpf_object__btf(obj);
  struct bpf_map *map;
  bpf_object__for_each_map(map, obj) {
    if (!strstr(bpf_map__name(map), ".rodata")) continue;
    int sec = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
    if (sec < 0) break;
    const struct btf_type *t = btf__type_by_id(btf, sec);
    const struct btf_var_secinfo *v = btf_var_secinfos(t);
    for (int i = 0; i < btf_vlen(t); i++, v++) {
      const struct btf_type *var = btf__type_by_id(btf, v->type);
      if (strcmp(btf__name_by_offset(btf, var->name_off), name) != 0) continue;
      size_t size;
      const char *initial = bpf_map__initial_value(map, &size);
      if (!initial || v->offset + v->size > size || v->size > 8) return throw_err(env, name, EINVAL);
      char *image = malloc(size);
      if (!image) return throw_err(env, "malloc", ENOMEM);
      memcpy(image, initial, size);
      memcpy(image + v->offset, &value, v->size); // x86_64/arm64: little-endian
      int err = bpf_map__set_initial_value(map, image, size);
      free(image);
      if (err) return throw_err(env, name, err);
      return NULL;
    }
  }
  return throw_err(env, name, ENOENT);
}

static napi_value n_set_max_entries(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!args(env, info, 3, argv)) return NULL;
  struct bpf_object *obj = get_obj(env, argv[0]);
  if (!obj) return NULL;
  char name[256];
  int32_t n;
  if (get_string(env, argv[1], name, sizeof name) || get_i32(env, argv[2], &n)) return NULL;
  struct bpf_map *map = bpf_object__find_map_by_name(obj, name);
  if (!map) return throw_err(env, name, ENOENT);
  int err = bpf_map__set_max_entries(map, (__u32)n);
  if (err) return throw_err(env, name, err);
  return NULL;
}

static napi_value n_load(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args(env, info, 1, argv)) return NULL;
  struct bpf_object *obj = get_obj(env, argv[0]);
  if (!obj) return NULL;
  log_len = 0;
  int err = bpf_object__load(obj);
  if (err) return throw_err(env, "loading the BPF object", err);
  return NULL;
}

// (obj, name): the object's map or program of that name; NULL with a JS error thrown otherwise.
static struct bpf_map *map_arg(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!args(env, info, 2, argv)) return NULL;
  struct bpf_object *obj = get_obj(env, argv[0]);
  if (!obj) return NULL;
  char name[256];
  if (get_string(env, argv[1], name, sizeof name)) return NULL;
  struct bpf_map *map = bpf_object__find_map_by_name(obj, name);
  if (!map) throw_err(env, name, ENOENT);
  return map;
}

static struct bpf_program *program_arg(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!args(env, info, 2, argv)) return NULL;
  struct bpf_object *obj = get_obj(env, argv[0]);
  if (!obj) return NULL;
  char name[256];
  if (get_string(env, argv[1], name, sizeof name)) return NULL;
  struct bpf_program *prog = bpf_object__find_program_by_name(obj, name);
  if (!prog) throw_err(env, name, ENOENT);
  return prog;
}

static napi_value n_map_fd(napi_env env, napi_callback_info info) {
  struct bpf_map *map = map_arg(env, info);
  if (!map) return NULL;
  int fd = bpf_map__fd(map);
  if (fd < 0) return throw_err(env, bpf_map__name(map), fd);
  return int_value(env, fd);
}

static napi_value n_map_value_size(napi_env env, napi_callback_info info) {
  struct bpf_map *map = map_arg(env, info);
  if (!map) return NULL;
  return int_value(env, (int32_t)bpf_map__value_size(map));
}

static napi_value n_program_fd(napi_env env, napi_callback_info info) {
  struct bpf_program *prog = program_arg(env, info);
  if (!prog) return NULL;
  int fd = bpf_program__fd(prog);
  if (fd < 0) return throw_err(env, bpf_program__name(prog), fd);
  return int_value(env, fd);
}

static napi_value n_program_id(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args(env, info, 1, argv)) return NULL;
  int32_t fd;
  if (get_i32(env, argv[0], &fd)) return NULL;
  struct bpf_prog_info prog_info = {0};
  __u32 len = sizeof prog_info;
  if (bpf_obj_get_info_by_fd(fd, &prog_info, &len) != 0) return throw_err(env, "program info", errno);
  return int_value(env, (int32_t)prog_info.id);
}

static napi_value n_map_update(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!args(env, info, 4, argv)) return NULL;
  int32_t fd, flags;
  void *key, *value;
  size_t klen, vlen;
  if (get_i32(env, argv[0], &fd) || get_buffer(env, argv[1], &key, &klen) ||
      get_buffer(env, argv[2], &value, &vlen) || get_i32(env, argv[3], &flags))
    return NULL;
  int err = bpf_map_update_elem(fd, key, value, (__u64)flags);
  return int_value(env, err < 0 ? -errno : 0);
}

// mapUpdateBatch(fd, keys, values, count) -> 0 or -errno: `count` entries, keys and values packed
// back to back, in one BPF_MAP_UPDATE_BATCH (a repair rewrites thousands of circuits at once).
static napi_value n_map_update_batch(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!args(env, info, 4, argv)) return NULL;
  int32_t fd, count;
  void *keys, *values;
  size_t klen, vlen;
  if (get_i32(env, argv[0], &fd) || get_buffer(env, argv[1], &keys, &klen) ||
      get_buffer(env, argv[2], &values, &vlen) || get_i32(env, argv[3], &count))
    return NULL;
  __u32 n = (__u32)count;
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  int err = bpf_map_update_batch(fd, keys, values, &n, &opts);
  if (err < 0) return int_value(env, -errno);
  return int_value(env, n == (__u32)count ? 0 : -EIO);
}

static napi_value n_map_delete(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!args(env, info, 2, argv)) return NULL;
  int32_t fd;
  void *key;
  size_t klen;
  if (get_i32(env, argv[0], &fd) || get_buffer(env, argv[1], &key, &klen)) return NULL;
  int err = bpf_map_delete_elem(fd, key);
  return int_value(env, err < 0 ? -errno : 0);
}

static napi_value n_map_lookup(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!args(env, info, 3, argv)) return NULL;
  int32_t fd;
  void *key, *value;
  size_t klen, vlen;
  if (get_i32(env, argv[0], &fd) || get_buffer(env, argv[1], &key, &klen) ||
      get_buffer(env, argv[2], &value, &vlen))
    return NULL;
  if (bpf_map_lookup_elem(fd, key, value) == 0) return bool_value(env, true);
  if (errno == ENOENT) return bool_value(env, false);
  return throw_err(env, "map lookup", errno);
}

static napi_value n_percpu_sum(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!args(env, info, 4, argv)) return NULL;
  int32_t fd, size;
  void *key, *out;
  size_t klen, olen;
  if (get_i32(env, argv[0], &fd) || get_buffer(env, argv[1], &key, &klen) || get_i32(env, argv[2], &size) ||
      get_buffer(env, argv[3], &out, &olen))
    return NULL;
  if (size <= 0 || size % 8 != 0 || (size_t)size > olen) return throw_err(env, "percpuSum size", EINVAL);
  int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return throw_err(env, "possible CPUs", cpus);
  // Per-CPU values come back one per possible CPU, each rounded up to 8 bytes.
  __u64 *all = calloc((size_t)cpus, (size_t)size);
  if (!all) return throw_err(env, "calloc", ENOMEM);
  if (bpf_map_lookup_elem(fd, key, all) != 0) {
    int e = errno;
    free(all);
    if (e == ENOENT) return bool_value(env, false);
    return throw_err(env, "per-CPU map lookup", e);
  }
  size_t words = (size_t)size / 8;
  __u64 *sum = out;
  for (size_t w = 0; w < words; w++) sum[w] = 0;
  for (int c = 0; c < cpus; c++)
    for (size_t w = 0; w < words; w++) sum[w] += all[(size_t)c * words + w];
  free(all);
  return bool_value(env, true);
}

static napi_value n_possible_cpus(napi_env env, napi_callback_info info) {
  int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return throw_err(env, "possible CPUs", cpus);
  return int_value(env, cpus);
}

static napi_value n_attach_xdp(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!args(env, info, 3, argv)) return NULL;
  int32_t prog_fd, ifindex;
  char mode[16];
  if (get_i32(env, argv[0], &prog_fd) || get_i32(env, argv[1], &ifindex) ||
      get_string(env, argv[2], mode, sizeof mode))
    return NULL;
  LIBBPF_OPTS(bpf_link_create_opts, opts);
  if (strcmp(mode, "native") == 0) opts.flags = XDP_FLAGS_DRV_MODE;
  else if (strcmp(mode, "generic") == 0) opts.flags = XDP_FLAGS_SKB_MODE;
  else if (strcmp(mode, "auto") != 0) {
    napi_throw_type_error(env, NULL, "attachXdp: mode must be native, generic or auto");
    return NULL;
  }
  log_len = 0;
  int fd = bpf_link_create(prog_fd, ifindex, BPF_XDP, &opts);
  if (fd < 0) return throw_err(env, "attaching XDP", errno);
  return int_value(env, fd);
}

// tcx (kernel 6.6): a tc ingress attachment as a bpf_link, so it too ends with the process. Debian
// 12's headers predate it; the value is the kernel's ABI.
#ifndef BPF_TCX_INGRESS
#define BPF_TCX_INGRESS 46
#define BPF_TCX_EGRESS 47
#endif

// attachTc(prog, ifindex, egress): a tcx link, ingress (the router) or egress (the endpoint's TUN).
static napi_value n_attach_tc(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!args(env, info, 3, argv)) return NULL;
  int32_t prog_fd, ifindex;
  bool egress = false;
  if (get_i32(env, argv[0], &prog_fd) || get_i32(env, argv[1], &ifindex)) return NULL;
  napi_valuetype t;
  if (napi_typeof(env, argv[2], &t) == napi_ok && t == napi_boolean) napi_get_value_bool(env, argv[2], &egress);
  log_len = 0;
  int fd = bpf_link_create(prog_fd, ifindex, egress ? BPF_TCX_EGRESS : BPF_TCX_INGRESS, NULL);
  if (fd < 0)
    return throw_err(env, egress ? "attaching tc (tcx egress, kernel 6.6 or later)"
                                 : "attaching tc (tcx ingress, kernel 6.6 or later)", errno);
  return int_value(env, fd);
}

static napi_value n_detach(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args(env, info, 1, argv)) return NULL;
  int32_t fd;
  if (get_i32(env, argv[0], &fd)) return NULL;
  if (close(fd) != 0) return throw_err(env, "detaching XDP", errno);
  return NULL;
}

static napi_value n_test_run(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!args(env, info, 7, argv)) return NULL;
  int32_t prog_fd, ifindex, repeat, gso_segs, gso_size;
  void *in, *out;
  size_t in_len, out_len;
  if (get_i32(env, argv[0], &prog_fd) || get_buffer(env, argv[1], &in, &in_len) ||
      get_buffer(env, argv[2], &out, &out_len) || get_i32(env, argv[3], &ifindex) || get_i32(env, argv[4], &repeat) ||
      get_i32(env, argv[5], &gso_segs) || get_i32(env, argv[6], &gso_size))
    return NULL;
  // The kernel takes a context's wire_len only from the frame's length up.
  struct __sk_buff skb_ctx = {.wire_len = (__u32)in_len, .gso_segs = (__u32)gso_segs, .gso_size = (__u32)gso_size};
  // The kernel wants the frame's bounds in the context too: no metadata, data_end = the frame's length.
  struct xdp_md ctx = {.data = 0, .data_end = (__u32)in_len, .ingress_ifindex = (__u32)ifindex};
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in, .data_size_in = (__u32)in_len, .data_out = out,
              .data_size_out = (__u32)out_len, .repeat = repeat > 0 ? (__u32)repeat : 1);
  if (ifindex > 0) {
    opts.ctx_in = &ctx;
    opts.ctx_size_in = sizeof ctx;
  } else if (gso_segs > 0) {
    opts.ctx_in = &skb_ctx;
    opts.ctx_size_in = sizeof skb_ctx;
  }
  if (bpf_prog_test_run_opts(prog_fd, &opts) != 0) return throw_err(env, "BPF_PROG_TEST_RUN", errno);
  napi_value r, rv, size, duration;
  CHECK(napi_create_array_with_length(env, 3, &r));
  CHECK(napi_create_uint32(env, opts.retval, &rv));
  CHECK(napi_create_uint32(env, opts.data_size_out, &size));
  CHECK(napi_create_uint32(env, opts.duration, &duration));
  CHECK(napi_set_element(env, r, 0, rv));
  CHECK(napi_set_element(env, r, 1, size));
  CHECK(napi_set_element(env, r, 2, duration));
  return r;
}

static napi_value init(napi_env env, napi_value exports) {
  libbpf_set_print(capture);
  napi_property_descriptor props[] = {
      {"open", NULL, n_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, n_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setConst", NULL, n_set_const, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setMaxEntries", NULL, n_set_max_entries, NULL, NULL, NULL, napi_enumerable, NULL},
      {"load", NULL, n_load, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mapFd", NULL, n_map_fd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mapValueSize", NULL, n_map_value_size, NULL, NULL, NULL, napi_enumerable, NULL},
      {"programFd", NULL, n_program_fd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"programId", NULL, n_program_id, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mapUpdate", NULL, n_map_update, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mapUpdateBatch", NULL, n_map_update_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mapDelete", NULL, n_map_delete, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mapLookup", NULL, n_map_lookup, NULL, NULL, NULL, napi_enumerable, NULL},
      {"percpuSum", NULL, n_percpu_sum, NULL, NULL, NULL, napi_enumerable, NULL},
      {"possibleCpus", NULL, n_possible_cpus, NULL, NULL, NULL, napi_enumerable, NULL},
      {"attachXdp", NULL, n_attach_xdp, NULL, NULL, NULL, napi_enumerable, NULL},
      {"attachTc", NULL, n_attach_tc, NULL, NULL, NULL, napi_enumerable, NULL},
      {"detach", NULL, n_detach, NULL, NULL, NULL, napi_enumerable, NULL},
      {"testRun", NULL, n_test_run, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

#ifndef NODE_GYP_MODULE_NAME
#define NODE_GYP_MODULE_NAME arrow_bpf
#endif
NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
