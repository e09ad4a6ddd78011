/*
 * walmap: read-only mappings of WAL segment files inside one reserved address
 * region per thread, handed to JavaScript as a single external Buffer.
 *
 * Why: a sender then passes slices of a segment's mapping straight to the socket
 * write, so the kernel copies page-cache pages into the socket once, instead of a
 * read() copying them into a user buffer first (on this project's 2-vCPU loopback
 * benchmark: sender CPU per GB down by about a third). Segments are mapped with
 * MAP_FIXED into slots of the region and replaced there, so V8 sees one long-lived
 * ArrayBuffer rather than one per segment: per-segment external buffers made V8
 * run a major GC every few segments.
 *
 * Safety rule for callers: user-space code must never read these bytes. A file
 * truncated under the mapping makes a user-space access SIGBUS, while the kernel's
 * copy in write()/writev() just fails with EFAULT, which ends one connection.
 * So mapped slices go only to plain (non-TLS) socket writes. A slot must not be
 * remapped while a write still references it (the JavaScript side counts).
 */
#define _GNU_SOURCE /* mremap */
#define NAPI_VERSION 8
#include <node_api.h>
#include <sys/mman.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  void *base;
  size_t length;
  napi_env env;
} region_t;

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, NULL, msg);
  return NULL;
}

/* Unmaps the region when the thread's environment ends (a worker thread that exits or
 * is terminated), even if its Buffer was never collected. */
static void region_cleanup(void *arg) {
  region_t *r = arg;
  if (r->base) munmap(r->base, r->length);
  r->base = NULL;
}

static void region_finalize(napi_env env, void *data, void *hint) {
  (void)data;
  region_t *r = hint;
  napi_remove_env_cleanup_hook(env, region_cleanup, r);
  region_cleanup(r);
  free(r);
}

/* reserve(length) -> Buffer over `length` bytes of inaccessible, unbacked address space. */
static napi_value reserve(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int64_t length;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 ||
      napi_get_value_int64(env, argv[0], &length) != napi_ok || length <= 0 || length % sysconf(_SC_PAGESIZE) != 0) {
    napi_throw_type_error(env, NULL, "reserve(length): a positive multiple of the page size");
    return NULL;
  }
  void *p = mmap(NULL, (size_t)length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return throw_errno(env, "mmap (reserve)", errno);
  region_t *r = malloc(sizeof *r);
  if (!r) {
    munmap(p, (size_t)length);
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  r->base = p;
  r->length = (size_t)length;
  r->env = env;
  napi_value buf;
  if (napi_create_external_buffer(env, (size_t)length, p, region_finalize, r, &buf) != napi_ok) {
    munmap(p, (size_t)length);
    free(r);
    napi_throw_error(env, NULL, "napi_create_external_buffer failed");
    return NULL;
  }
  napi_add_env_cleanup_hook(env, region_cleanup, r);
  return buf;
}

/* The region Buffer and a page-aligned [offset, offset+length) inside it, or 0 after throwing. */
static int region_range(napi_env env, napi_value region, napi_value off, napi_value len, char **at, size_t *length) {
  void *data;
  size_t size;
  int64_t o, l;
  long page = sysconf(_SC_PAGESIZE);
  if (napi_get_buffer_info(env, region, &data, &size) != napi_ok || napi_get_value_int64(env, off, &o) != napi_ok ||
      napi_get_value_int64(env, len, &l) != napi_ok || o < 0 || l <= 0 || o % page != 0 || l % page != 0 ||
      (uint64_t)o + (uint64_t)l > size) {
    napi_throw_range_error(env, NULL, "a page-aligned range inside the reserved region");
    return 0;
  }
  *at = (char *)data + o;
  *length = (size_t)l;
  return 1;
}

/* mapAt(region, offset, length, fd): the file's first `length` bytes, read-only, at region+offset. */
static napi_value map_at(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  char *at;
  size_t length;
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 4) {
    napi_throw_type_error(env, NULL, "mapAt(region, offset, length, fd)");
    return NULL;
  }
  if (!region_range(env, argv[0], argv[1], argv[2], &at, &length)) return NULL;
  if (napi_get_value_int32(env, argv[3], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, NULL, "mapAt: fd must be an open file descriptor");
    return NULL;
  }
  /* Map anywhere first, then move the mapping into the slot with mremap(MREMAP_FIXED),
   * which replaces the slot's old pages in one step. A failure (a file system without
   * mmap, no memory) then leaves the slot as it was: still reserved, never a hole that
   * another thread's allocation could take and a later MAP_FIXED would overwrite. */
  void *p = mmap(NULL, length, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return throw_errno(env, "mmap", errno);
  if (mremap(p, length, length, MREMAP_MAYMOVE | MREMAP_FIXED, at) == MAP_FAILED) {
    int err = errno;
    munmap(p, length);
    return throw_errno(env, "mremap", err);
  }
  return NULL;
}

/* unmapAt(region, offset, length): back to inaccessible reserved space (drops the file's pages). */
static napi_value unmap_at(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  char *at;
  size_t length;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3) {
    napi_throw_type_error(env, NULL, "unmapAt(region, offset, length)");
    return NULL;
  }
  if (!region_range(env, argv[0], argv[1], argv[2], &at, &length)) return NULL;
  if (mmap(at, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) == MAP_FAILED) {
    return throw_errno(env, "mmap (unmap)", errno);
  }
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  const struct { const char *name; napi_callback fn; } fns[] = {
    { "reserve", reserve }, { "mapAt", map_at }, { "unmapAt", unmap_at },
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
