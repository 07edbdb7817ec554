// sd_notify(3) for Node: one datagram to systemd's $NOTIFY_SOCKET (a unix datagram socket, which
// Node's dgram cannot open). A path starting with '@' is in the abstract namespace.
//
// notify(socketPath, message) -> bytes sent; throws with the errno on failure.
#include <errno.h>
#include <node_api.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static napi_value throw_errno(napi_env env, const char *what, int e) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(e));
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static napi_value notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  char message[4096];
  size_t path_len = 0, message_len = 0;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &path_len) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], message, sizeof message, &message_len) != napi_ok) {
    napi_throw_type_error(env, NULL, "notify(socketPath: string, message: string)");
    return NULL;
  }
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (path_len == 0 || path_len >= sizeof addr.sun_path) {
    napi_throw_range_error(env, NULL, "NOTIFY_SOCKET path is empty or too long");
    return NULL;
  }
  memcpy(addr.sun_path, path, path_len);
  if (path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  ssize_t n = sendto(fd, message, message_len, MSG_NOSIGNAL, (struct sockaddr *)&addr, len);
  int e = errno;
  close(fd);
  if (n < 0) return throw_errno(env, "sendto NOTIFY_SOCKET", e);
  napi_value out;
  napi_create_int64(env, n, &out);
  return out;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "notify", NAPI_AUTO_LENGTH, notify, NULL, &fn);
  napi_set_named_property(env, exports, "notify", fn);
  return exports;
}
