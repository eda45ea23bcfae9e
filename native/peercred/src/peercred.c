/*
 * peercred: kernel-verified peer credentials of a connected Unix-domain socket (Node-API, plain C).
 *
 * Exports:
 *   getPeerCred(fd: number): { pid: number, uid: number, gid: number }
 *       getsockopt(fd, SOL_SOCKET, SO_PEERCRED). The kernel records the credentials of the process that
 *       called connect() at connect time; the peer cannot change or forge them afterwards.
 *       (SPIRE "Workload attestation (unix)": the agent reads SO_PEERCRED on the accepted UDS connection.)
 *   getPeerGroups(fd: number): number[]
 *       getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS) (Linux >= 4.13): supplementary gids of the peer at
 *       connect time.
 *   getPeerPidfd(fd: number): number
 *       getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD) (Linux >= 6.5): a new pidfd (O_CLOEXEC, owned by the
 *       caller, close it with fs.closeSync) referring to the exact process that called connect(). Unlike
 *       the numeric pid it cannot be confused with a later process that reuses the pid.
 *   hasPeerGroups: boolean   -- SO_PEERGROUPS was available at compile time.
 *   hasPeerPidfd: boolean    -- SO_PEERPIDFD was available at compile time.
 *   platform: string         -- "linux" or "unsupported".
 *
 * Every failure throws a JS Error with `code` = errno name (e.g. "EBADF", "ENOTSOCK", "ENOPROTOOPT"),
 * `errno` = the positive errno number and `syscall` = the failing call. The module never blocks, never
 * allocates more than the kernel-reported group list, and keeps no state, so it is safe to load from
 * several threads/contexts (registered with NAPI_MODULE_INIT).
 *
 * No dependency beyond node_api.h (N-API version 8: ABI-stable across Node >= 12.22, no rebuild on Node
 * upgrades).
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* struct ucred; must precede every system header */
#endif

#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__linux__)
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>
#define PEERCRED_LINUX 1
#ifndef SO_PEERGROUPS
/* Older libc headers on a >= 4.13 kernel: the number is ABI (asm-generic/socket.h) on all Linux arches
 * except alpha/mips/parisc/sparc, which define their own and always ship it in their headers. */
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__) || defined(__arm__) || \
    defined(__riscv) || defined(__powerpc__) || defined(__s390__) || defined(__loongarch__)
#define SO_PEERGROUPS 59
#endif
#endif
#ifndef SO_PEERPIDFD
/* Linux >= 6.5; same architecture caveat as SO_PEERGROUPS (asm-generic value). */
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__) || defined(__arm__) || \
    defined(__riscv) || defined(__powerpc__) || defined(__s390__) || defined(__loongarch__)
#define SO_PEERPIDFD 77
#endif
#endif
#else
#define PEERCRED_LINUX 0
#endif

/* Upper bound on the supplementary group list we accept (Linux NGROUPS_MAX is 65536). */
#define PEERCRED_MAX_GROUPS 65536

static const char *errno_name(int err) {
  switch (err) {
    case EBADF: return "EBADF";
    case ENOTSOCK: return "ENOTSOCK";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case EINVAL: return "EINVAL";
    case EFAULT: return "EFAULT";
    case ERANGE: return "ERANGE";
    case ENOMEM: return "ENOMEM";
    case ENOBUFS: return "ENOBUFS";
    case ENOTCONN: return "ENOTCONN";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case ENOSYS: return "ENOSYS";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ESRCH: return "ESRCH";
#ifdef ENODATA
    case ENODATA: return "ENODATA";
#endif
    default: return "EUNKNOWN";
  }
}

/* Throw Error(message) with .code/.errno/.syscall. Returns NULL for convenient `return throw_errno(...)`. */
static napi_value throw_errno(napi_env env, int err, const char *syscall, const char *what) {
  char msg[256];
  napi_value code_v, msg_v, error, errno_v, syscall_v;
  const char *name = errno_name(err);
  snprintf(msg, sizeof msg, "%s: %s (%s)", syscall, what != NULL ? what : strerror(err), name);
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code_v) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &msg_v) != napi_ok) return NULL;
  if (napi_create_error(env, code_v, msg_v, &error) != napi_ok) return NULL;
  if (napi_create_int32(env, err, &errno_v) == napi_ok) napi_set_named_property(env, error, "errno", errno_v);
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_v) == napi_ok) {
    napi_set_named_property(env, error, "syscall", syscall_v);
  }
  napi_throw(env, error);
  return NULL;
}

/* Read the single argument as a non-negative int32 fd. On failure a TypeError is pending. */
static int fd_arg(napi_env env, napi_callback_info info, int *out) {
  size_t argc = 1;
  napi_value argv[1];
  napi_valuetype t;
  double d;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  if (argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_number) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "fd must be a number");
    return 0;
  }
  if (napi_get_value_double(env, argv[0], &d) != napi_ok) return 0;
  if (!(d >= 0 && d <= 2147483647.0) || d != (double)(int32_t)d) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "fd must be an integer in [0, 2^31)");
    return 0;
  }
  *out = (int)d;
  return 1;
}

#if PEERCRED_LINUX
/* SO_PEERCRED/SO_PEERGROUPS are only meaningful for AF_UNIX; on TCP Linux returns pid 0, uid/gid -1. */
static int require_unix(napi_env env, int fd) {
  struct sockaddr_storage addr;
  socklen_t len = sizeof addr;
  memset(&addr, 0, sizeof addr);
  if (getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
    throw_errno(env, errno, "getsockname", NULL);
    return 0;
  }
  if (len < sizeof(sa_family_t) || addr.ss_family != AF_UNIX) {
    throw_errno(env, EAFNOSUPPORT, "getsockname", "socket is not an AF_UNIX socket");
    return 0;
  }
  return 1;
}
#endif

static napi_value get_peer_cred(napi_env env, napi_callback_info info) {
  int fd;
  if (!fd_arg(env, info, &fd)) return NULL;
#if PEERCRED_LINUX
  {
    struct ucred cred;
    socklen_t len = sizeof cred;
    napi_value obj, v;
    if (!require_unix(env, fd)) return NULL;
    memset(&cred, 0, sizeof cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      return throw_errno(env, errno, "getsockopt(SO_PEERCRED)", NULL);
    }
    if (len != sizeof cred) return throw_errno(env, EINVAL, "getsockopt(SO_PEERCRED)", "short ucred");
    if (napi_create_object(env, &obj) != napi_ok) return NULL;
    /* pid 0 = peer not visible in our pid namespace (or no peer); the JS layer rejects it. */
    if (napi_create_int32(env, (int32_t)cred.pid, &v) != napi_ok) return NULL;
    if (napi_set_named_property(env, obj, "pid", v) != napi_ok) return NULL;
    if (napi_create_uint32(env, (uint32_t)cred.uid, &v) != napi_ok) return NULL;
    if (napi_set_named_property(env, obj, "uid", v) != napi_ok) return NULL;
    if (napi_create_uint32(env, (uint32_t)cred.gid, &v) != napi_ok) return NULL;
    if (napi_set_named_property(env, obj, "gid", v) != napi_ok) return NULL;
    return obj;
  }
#else
  (void)fd;
  return throw_errno(env, ENOSYS, "getsockopt(SO_PEERCRED)", "SO_PEERCRED is only supported on Linux");
#endif
}

static napi_value get_peer_groups(napi_env env, napi_callback_info info) {
  int fd;
  if (!fd_arg(env, info, &fd)) return NULL;
#if PEERCRED_LINUX && defined(SO_PEERGROUPS)
  {
    socklen_t cap = 64 * sizeof(gid_t);
    gid_t *groups = NULL;
    napi_value arr, v;
    uint32_t i, n;
    if (!require_unix(env, fd)) return NULL;
    for (int attempt = 0; attempt < 3; attempt++) {
      socklen_t len = cap;
      gid_t *grown = (gid_t *)realloc(groups, cap > 0 ? cap : sizeof(gid_t));
      if (grown == NULL) {
        free(groups);
        return throw_errno(env, ENOMEM, "getsockopt(SO_PEERGROUPS)", NULL);
      }
      groups = grown;
      if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
        n = (uint32_t)(len / sizeof(gid_t));
        if (napi_create_array_with_length(env, n, &arr) != napi_ok) { free(groups); return NULL; }
        for (i = 0; i < n; i++) {
          if (napi_create_uint32(env, (uint32_t)groups[i], &v) != napi_ok ||
              napi_set_element(env, arr, i, v) != napi_ok) {
            free(groups);
            return NULL;
          }
        }
        free(groups);
        return arr;
      }
      if (errno != ERANGE) {
        int err = errno;
        free(groups);
        return throw_errno(env, err, "getsockopt(SO_PEERGROUPS)", NULL);
      }
      /* ERANGE: the kernel wrote the required length into len. */
      if (len <= cap || len > PEERCRED_MAX_GROUPS * sizeof(gid_t)) {
        free(groups);
        return throw_errno(env, ERANGE, "getsockopt(SO_PEERGROUPS)", "group list too large");
      }
      cap = len;
    }
    free(groups);
    return throw_errno(env, ERANGE, "getsockopt(SO_PEERGROUPS)", "group list kept growing");
  }
#else
  (void)fd;
  return throw_errno(env, ENOPROTOOPT, "getsockopt(SO_PEERGROUPS)", "SO_PEERGROUPS is not available on this platform");
#endif
}

static napi_value get_peer_pidfd(napi_env env, napi_callback_info info) {
  int fd;
  if (!fd_arg(env, info, &fd)) return NULL;
#if PEERCRED_LINUX && defined(SO_PEERPIDFD)
  {
    int pidfd = -1;
    socklen_t len = sizeof pidfd;
    napi_value v;
    if (!require_unix(env, fd)) return NULL;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) != 0) {
      return throw_errno(env, errno, "getsockopt(SO_PEERPIDFD)", NULL);
    }
    if (len != sizeof pidfd || pidfd < 0) {
      if (pidfd >= 0) close(pidfd);
      return throw_errno(env, EINVAL, "getsockopt(SO_PEERPIDFD)", "bad pidfd");
    }
    if (napi_create_int32(env, pidfd, &v) != napi_ok) {
      close(pidfd);
      return NULL;
    }
    return v;
  }
#else
  (void)fd;
  return throw_errno(env, ENOPROTOOPT, "getsockopt(SO_PEERPIDFD)", "SO_PEERPIDFD is not available on this platform");
#endif
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_value fn, flag, platform;
  if (napi_create_function(env, "getPeerCred", NAPI_AUTO_LENGTH, get_peer_cred, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "getPeerCred", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "getPeerGroups", NAPI_AUTO_LENGTH, get_peer_groups, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "getPeerGroups", fn) != napi_ok) return NULL;
#if PEERCRED_LINUX && defined(SO_PEERGROUPS)
  if (napi_get_boolean(env, true, &flag) != napi_ok) return NULL;
#else
  if (napi_get_boolean(env, false, &flag) != napi_ok) return NULL;
#endif
  if (napi_set_named_property(env, exports, "hasPeerGroups", flag) != napi_ok) return NULL;
  if (napi_create_function(env, "getPeerPidfd", NAPI_AUTO_LENGTH, get_peer_pidfd, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "getPeerPidfd", fn) != napi_ok) return NULL;
#if PEERCRED_LINUX && defined(SO_PEERPIDFD)
  if (napi_get_boolean(env, true, &flag) != napi_ok) return NULL;
#else
  if (napi_get_boolean(env, false, &flag) != napi_ok) return NULL;
#endif
  if (napi_set_named_property(env, exports, "hasPeerPidfd", flag) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, PEERCRED_LINUX ? "linux" : "unsupported", NAPI_AUTO_LENGTH, &platform) != napi_ok) {
    return NULL;
  }
  if (napi_set_named_property(env, exports, "platform", platform) != napi_ok) return NULL;
  return exports;
}
