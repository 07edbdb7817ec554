// A tiny Linux TUN addon for the Arrow endpoint (Node-API + libuv, no other dependency).
//
// open(name)                 -> [fd, name]: /dev/net/tun, TUNSETIFF with IFF_TUN | IFF_NO_PI, non-blocking
// startReader(fd, buf, slot, lengths, onPackets) -> handle: on readability, reads up to
//                               lengths.length packets into fixed slots of `buf` and calls
//                               onPackets(count) once per batch (count < 0: -errno, reading stopped)
// stopReader(handle)
// write(fd, bytes)           -> bytes written, or -errno
// close(fd)
//
// Why our own: the packet path must not poll or allocate; uv_poll gives readiness events and the
// fixed slots let JavaScript see each batch of packets without a single allocation here.
// Built by scripts/build-native.mjs with the C compiler against Node's own headers.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <uv.h>

typedef struct {
  uv_poll_t poll;
  int fd;
  int stopped;
  napi_env env;
  napi_ref on_packets;
  napi_ref buffer_ref;
  napi_ref lengths_ref;
  napi_async_context async;
  uint8_t *buffer;
  size_t slot;
  size_t slots;
  int32_t *lengths;
} reader_t;

static const char *errno_code(int e) {
  switch (e) {
  case EPERM: return "EPERM";
  case EACCES: return "EACCES";
  case ENOENT: return "ENOENT";
  case ENODEV: return "ENODEV";
  case EBUSY: return "EBUSY";
  case EINVAL: return "EINVAL";
  case EBADF: return "EBADF";
  case EIO: return "EIO";
  case EFAULT: return "EFAULT";
  default: return "EUNKNOWN";
  }
}

static napi_value throw_errno(napi_env env, const char *what, int e) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(e));
  napi_throw_error(env, errno_code(e), msg);
  return NULL;
}

#define CHECK(call)                                                                                        \
  do {                                                                                                     \
    if ((call) != napi_ok) {                                                                               \
      napi_throw_error(env, NULL, "tun-native: " #call " failed");                                         \
      return NULL;                                                                                         \
    }                                                                                                      \
  } while (0)

static napi_value tun_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[IFNAMSIZ] = {0};
  size_t len = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "open(name): name must be a string");
    return NULL;
  }
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, "open /dev/net/tun", errno);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  memcpy(ifr.ifr_name, name, len < IFNAMSIZ - 1 ? len : IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "ioctl TUNSETIFF", e);
  }
  napi_value result, jfd, jname;
  CHECK(napi_create_array_with_length(env, 2, &result));
  CHECK(napi_create_int32(env, fd, &jfd));
  CHECK(napi_create_string_utf8(env, ifr.ifr_name, NAPI_AUTO_LENGTH, &jname));
  CHECK(napi_set_element(env, result, 0, jfd));
  CHECK(napi_set_element(env, result, 1, jname));
  return result;
}

static void deliver(reader_t *r, int32_t count) {
  if (r->stopped) return; // the previous batch's callback stopped the reader
  napi_env env = r->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, arg, result;
  // napi_make_callback needs an object as `this` (undefined would throw).
  if (napi_get_reference_value(env, r->on_packets, &cb) == napi_ok && napi_get_global(env, &recv) == napi_ok &&
      napi_create_int32(env, count, &arg) == napi_ok) {
    napi_make_callback(env, r->async, recv, cb, 1, &arg, &result);
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
    }
  }
  napi_close_handle_scope(env, scope);
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  (void)events;
  reader_t *r = handle->data;
  if (r->stopped) return;
  if (status < 0) {
    uv_poll_stop(&r->poll);
    deliver(r, status);
    return;
  }
  int32_t n = 0;
  while ((size_t)n < r->slots) {
    ssize_t got = read(r->fd, r->buffer + (size_t)n * r->slot, r->slot);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      int e = errno;
      uv_poll_stop(&r->poll);
      if (n > 0) deliver(r, n);
      deliver(r, -e);
      return;
    }
    r->lengths[n++] = (int32_t)got;
  }
  if (n > 0) deliver(r, n);
}

static void on_closed(uv_handle_t *handle) { free(handle->data); }

static void reader_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  (void)hint;
  // The reader is freed by stopReader (uv_close); a handle dropped without stopReader keeps
  // reading, since the device belongs to the JavaScript object that holds the fd.
}

static napi_value tun_start_reader(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) {
    napi_throw_type_error(env, NULL, "startReader(fd, buffer, slot, lengths, onPackets)");
    return NULL;
  }
  int32_t fd, slot;
  void *buffer;
  size_t buffer_len;
  napi_typedarray_type type;
  size_t lengths_count;
  void *lengths;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_buffer_info(env, argv[1], &buffer, &buffer_len) != napi_ok ||
      napi_get_value_int32(env, argv[2], &slot) != napi_ok ||
      napi_get_typedarray_info(env, argv[3], &type, &lengths_count, &lengths, NULL, NULL) != napi_ok ||
      type != napi_int32_array || slot <= 0 || lengths_count == 0 ||
      (size_t)slot * lengths_count > buffer_len) {
    napi_throw_type_error(env, NULL,
                          "startReader: need an fd, a Buffer of slot x lengths.length bytes, an Int32Array");
    return NULL;
  }
  reader_t *r = calloc(1, sizeof *r);
  if (!r) return throw_errno(env, "startReader", ENOMEM);
  r->fd = fd;
  r->env = env;
  r->buffer = buffer;
  r->slot = (size_t)slot;
  r->slots = lengths_count;
  r->lengths = lengths;
  uv_loop_t *loop;
  int rc = napi_get_uv_event_loop(env, &loop) == napi_ok ? uv_poll_init(loop, &r->poll, fd) : UV_EINVAL;
  if (rc < 0) {
    free(r);
    return throw_errno(env, "uv_poll_init", -rc);
  }
  r->poll.data = r;
  napi_value resource_name;
  CHECK(napi_create_string_utf8(env, "ArrowTunRead", NAPI_AUTO_LENGTH, &resource_name));
  CHECK(napi_async_init(env, NULL, resource_name, &r->async));
  CHECK(napi_create_reference(env, argv[4], 1, &r->on_packets));
  CHECK(napi_create_reference(env, argv[1], 1, &r->buffer_ref));
  CHECK(napi_create_reference(env, argv[3], 1, &r->lengths_ref));
  rc = uv_poll_start(&r->poll, UV_READABLE, on_readable);
  if (rc < 0) {
    napi_delete_reference(env, r->on_packets);
    napi_delete_reference(env, r->buffer_ref);
    napi_delete_reference(env, r->lengths_ref);
    napi_async_destroy(env, r->async);
    uv_close((uv_handle_t *)&r->poll, on_closed);
    return throw_errno(env, "uv_poll_start", -rc);
  }
  napi_value handle;
  CHECK(napi_create_external(env, r, reader_finalize, NULL, &handle));
  return handle;
}

static napi_value tun_stop_reader(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  reader_t *r;
  if (argc < 1 || napi_get_value_external(env, argv[0], (void **)&r) != napi_ok) {
    napi_throw_type_error(env, NULL, "stopReader(handle)");
    return NULL;
  }
  if (r->stopped) return NULL;
  r->stopped = 1;
  uv_poll_stop(&r->poll);
  napi_delete_reference(env, r->on_packets);
  napi_delete_reference(env, r->buffer_ref);
  napi_delete_reference(env, r->lengths_ref);
  napi_async_destroy(env, r->async);
  uv_close((uv_handle_t *)&r->poll, on_closed);
  return NULL;
}

static napi_value tun_write(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "write(fd, bytes: Uint8Array)");
    return NULL;
  }
  ssize_t n;
  do n = write(fd, data, length);
  while (n < 0 && errno == EINTR);
  napi_value result;
  CHECK(napi_create_int32(env, n < 0 ? -errno : (int32_t)n, &result));
  return result;
}

static napi_value tun_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "close(fd)");
    return NULL;
  }
  close(fd);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", NULL, tun_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"startReader", NULL, tun_start_reader, NULL, NULL, NULL, napi_enumerable, NULL},
      {"stopReader", NULL, tun_stop_reader, NULL, NULL, NULL, napi_enumerable, NULL},
      {"write", NULL, tun_write, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, tun_close, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

#ifndef NODE_GYP_MODULE_NAME
#define NODE_GYP_MODULE_NAME arrow_tun
#endif
NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
