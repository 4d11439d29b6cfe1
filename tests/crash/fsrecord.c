/* fsrecord: an LD_PRELOAD interposer that records the file-system operations a process makes
 * under one directory, for the crash-state explorer (tests/crash/explorer.py).
 *
 * Environment:
 *   TIDELOG_FSREC_ROOT   the directory whose files are recorded (canonical path, no trailing /)
 *   TIDELOG_FSREC_LOG    prefix of the output: <prefix>.ops (one op per line, tab-separated) and
 *                        <prefix>.data (the bytes of every recorded write, back to back)
 *   TIDELOG_FSREC_DROP_SYNC=1   sabotage: fsync/fdatasync of recorded files return 0 without
 *                        syncing or being recorded (the explorer must then find losses);
 *                        any other value but 0 or empty: only those of files whose name (when
 *                        opened) ends with it, e.g. ".cleaned"
 *
 * Without TIDELOG_FSREC_LOG, nothing is written: the ops under the root are only counted, for
 * fsrec_kill_after() (tests/crash/test_clean_sigkill.py: SIGKILL at a chosen op of a cleaning
 * pass).
 *
 * Op lines: O fd path flags | C fd | W fd offset length data_offset | T fd length |
 *   TP path length | R old new | U path | D path | K path | S fd | F fd mode offset length |
 *   M text (a marker written by the workload through fsrec_mark()).
 * Every call and its line happen under one mutex, so the order of the lines is the order in
 * which the calls took effect. Built by the crash tests with gcc into a temp dir.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FDS 65536

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char root[PATH_MAX];
static size_t root_len;
static int ops_fd = -1, data_fd = -1;
static long long data_offset;
static long long ops_done;     /* ops recorded (or counted) so far */
static long long kill_at = -1; /* fsrec_kill_after(): SIGKILL once ops_done reaches it */
static int drop_sync;
static char drop_suffix[PATH_MAX];
static unsigned char tracked[MAX_FDS];
static unsigned char dropped[MAX_FDS]; /* fsyncs of this fd are dropped (TIDELOG_FSREC_DROP_SYNC) */

#define REAL(ret, name, ...)                                                                  \
    static ret (*real_##name)(__VA_ARGS__);                                                   \
    static ret (*get_##name(void))(__VA_ARGS__) {                                             \
        if (!real_##name) real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name);         \
        return real_##name;                                                                   \
    }

REAL(int, open, const char *, int, ...)
REAL(int, open64, const char *, int, ...)
REAL(int, openat, int, const char *, int, ...)
REAL(int, openat64, int, const char *, int, ...)
REAL(int, __open_2, const char *, int)
REAL(int, __open64_2, const char *, int)
REAL(int, __openat_2, int, const char *, int)
REAL(int, __openat64_2, int, const char *, int)
REAL(int, creat, const char *, mode_t)
REAL(int, creat64, const char *, mode_t)
REAL(int, close, int)
REAL(ssize_t, write, int, const void *, size_t)
REAL(ssize_t, pwrite, int, const void *, size_t, off_t)
REAL(ssize_t, pwrite64, int, const void *, size_t, off_t)
REAL(ssize_t, writev, int, const struct iovec *, int)
REAL(ssize_t, pwritev, int, const struct iovec *, int, off_t)
REAL(ssize_t, pwritev64, int, const struct iovec *, int, off_t)
REAL(ssize_t, pwritev2, int, const struct iovec *, int, off_t, int)
REAL(ssize_t, pwritev64v2, int, const struct iovec *, int, off_t, int)
REAL(int, ftruncate, int, off_t)
REAL(int, ftruncate64, int, off_t)
REAL(int, truncate, const char *, off_t)
REAL(int, truncate64, const char *, off_t)
REAL(int, rename, const char *, const char *)
REAL(int, renameat, int, const char *, int, const char *)
REAL(int, renameat2, int, const char *, int, const char *, unsigned int)
REAL(int, unlink, const char *)
REAL(int, unlinkat, int, const char *, int)
REAL(int, rmdir, const char *)
REAL(int, mkdir, const char *, mode_t)
REAL(int, mkdirat, int, const char *, mode_t)
REAL(int, fsync, int)
REAL(int, fdatasync, int)
REAL(int, fallocate, int, int, off_t, off_t)
REAL(int, fallocate64, int, int, off_t, off_t)
REAL(int, posix_fallocate, int, off_t, off_t)
REAL(int, posix_fallocate64, int, off_t, off_t)
REAL(int, dup, int)
REAL(int, dup2, int, int)
REAL(int, dup3, int, int, int)

static void write_all(int fd, const void *buf, size_t len) {
    const char *at = buf;
    while (len > 0) {
        ssize_t n = get_write()(fd, at, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            abort(); /* a recording that silently misses ops would be worse than none */
        }
        at += n;
        len -= (size_t)n;
    }
}

static void emit(const char *fmt, ...) {
    char line[3 * PATH_MAX + 128];
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(line, sizeof line, fmt, args);
    va_end(args);
    if (n < 0 || (size_t)n >= sizeof line) abort();
    if (ops_fd >= 0) write_all(ops_fd, line, (size_t)n);
    if (line[0] != 'M' && ++ops_done == kill_at) raise(SIGKILL); /* the op itself took effect */
}

__attribute__((constructor)) static void fsrec_init(void) {
    const char *r = getenv("TIDELOG_FSREC_ROOT");
    const char *prefix = getenv("TIDELOG_FSREC_LOG");
    if (!r) return;
    snprintf(root, sizeof root, "%s", r);
    root_len = strlen(root);
    if (!prefix) return; /* counting only */
    const char *drop = getenv("TIDELOG_FSREC_DROP_SYNC");
    drop_sync = drop && strcmp(drop, "1") == 0;
    if (drop && !drop_sync && strcmp(drop, "0") != 0) snprintf(drop_suffix, sizeof drop_suffix, "%s", drop);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s.ops", prefix);
    ops_fd = get_open()(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    snprintf(path, sizeof path, "%s.data", prefix);
    data_fd = get_open()(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (ops_fd < 0 || data_fd < 0) abort();
}

static int enabled(void) { return root_len > 0; }

static int under_root(const char *path) {
    return strncmp(path, root, root_len) == 0 && (path[root_len] == '\0' || path[root_len] == '/');
}

static int is_tracked(int fd) { return enabled() && fd >= 0 && fd < MAX_FDS && tracked[fd]; }

/* The absolute path `path` names, relative to `dirfd`, with its parent directory canonical
 * (the last component is kept as given: it may not exist yet, or be a file being renamed). */
static int resolve(int dirfd, const char *path, char *out) {
    char joined[2 * PATH_MAX];
    if (path[0] == '/') {
        snprintf(joined, sizeof joined, "%s", path);
    } else {
        char base[PATH_MAX];
        if (dirfd == AT_FDCWD) {
            if (!getcwd(base, sizeof base)) return -1;
        } else {
            char link[64];
            snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
            ssize_t n = readlink(link, base, sizeof base - 1);
            if (n < 0) return -1;
            base[n] = '\0';
        }
        snprintf(joined, sizeof joined, "%s/%s", base, path);
    }
    size_t len = strlen(joined);
    while (len > 1 && joined[len - 1] == '/') joined[--len] = '\0';
    char *slash = strrchr(joined, '/');
    if (!slash) return -1;
    char parent[PATH_MAX], canonical[PATH_MAX];
    if (slash == joined) {
        snprintf(parent, sizeof parent, "/");
    } else {
        size_t plen = (size_t)(slash - joined);
        if (plen >= sizeof parent) return -1;
        memcpy(parent, joined, plen);
        parent[plen] = '\0';
    }
    if (!realpath(parent, canonical)) snprintf(canonical, sizeof canonical, "%s", parent);
    if (strcmp(slash + 1, ".") == 0) {
        snprintf(out, PATH_MAX, "%s", canonical);
        return 0;
    }
    if (snprintf(out, PATH_MAX, "%s/%s", strcmp(canonical, "/") == 0 ? "" : canonical, slash + 1) >= PATH_MAX)
        return -1;
    return 0;
}

static void opened(int fd, int flags) {
    if (!enabled() || fd < 0 || fd >= MAX_FDS) return;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return;
    path[n] = '\0';
    if (!under_root(path)) return;
    tracked[fd] = 1;
    size_t len = strlen(path), suffix_len = strlen(drop_suffix);
    dropped[fd] = suffix_len > 0 && len >= suffix_len && strcmp(path + len - suffix_len, drop_suffix) == 0;
    emit("O\t%d\t%s\t%d\n", fd, path, flags);
}

static int mode_of(int flags, va_list args) {
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(args, int) : 0;
}

#define OPEN_BODY(call)                           \
    pthread_mutex_lock(&lock);                    \
    int fd = call;                                \
    int saved = errno;                            \
    opened(fd, flags);                            \
    pthread_mutex_unlock(&lock);                  \
    errno = saved;                                \
    return fd;

int open(const char *path, int flags, ...) {
    va_list args;
    va_start(args, flags);
    int mode = mode_of(flags, args);
    va_end(args);
    OPEN_BODY(get_open()(path, flags, mode))
}
int open64(const char *path, int flags, ...) {
    va_list args;
    va_start(args, flags);
    int mode = mode_of(flags, args);
    va_end(args);
    OPEN_BODY(get_open64()(path, flags, mode))
}
int openat(int dirfd, const char *path, int flags, ...) {
    va_list args;
    va_start(args, flags);
    int mode = mode_of(flags, args);
    va_end(args);
    OPEN_BODY(get_openat()(dirfd, path, flags, mode))
}
int openat64(int dirfd, const char *path, int flags, ...) {
    va_list args;
    va_start(args, flags);
    int mode = mode_of(flags, args);
    va_end(args);
    OPEN_BODY(get_openat64()(dirfd, path, flags, mode))
}
int __open_2(const char *path, int flags) { OPEN_BODY(get___open_2()(path, flags)) }
int __open64_2(const char *path, int flags) { OPEN_BODY(get___open64_2()(path, flags)) }
int __openat_2(int dirfd, const char *path, int flags) { OPEN_BODY(get___openat_2()(dirfd, path, flags)) }
int __openat64_2(int dirfd, const char *path, int flags) { OPEN_BODY(get___openat64_2()(dirfd, path, flags)) }
int creat(const char *path, mode_t mode) {
    int flags = O_CREAT | O_WRONLY | O_TRUNC;
    OPEN_BODY(get_creat()(path, mode))
}
int creat64(const char *path, mode_t mode) {
    int flags = O_CREAT | O_WRONLY | O_TRUNC;
    OPEN_BODY(get_creat64()(path, mode))
}

#define DUP_BODY(call)                                                     \
    pthread_mutex_lock(&lock);                                             \
    int fd = call;                                                         \
    int saved = errno;                                                     \
    if (fd >= 0 && fd < MAX_FDS && enabled()) {                            \
        if (tracked[fd]) emit("C\t%d\n", fd);                              \
        tracked[fd] = 0;                                                   \
        if (is_tracked(old)) opened(fd, fcntl(fd, F_GETFL));               \
    }                                                                      \
    pthread_mutex_unlock(&lock);                                           \
    errno = saved;                                                         \
    return fd;

int dup(int old) { DUP_BODY(get_dup()(old)) }
int dup2(int old, int new_fd) { DUP_BODY(get_dup2()(old, new_fd)) }
int dup3(int old, int new_fd, int flags) { DUP_BODY(get_dup3()(old, new_fd, flags)) }

int close(int fd) {
    pthread_mutex_lock(&lock);
    int rc = get_close()(fd);
    int saved = errno;
    if (is_tracked(fd)) {
        tracked[fd] = 0;
        emit("C\t%d\n", fd);
    }
    pthread_mutex_unlock(&lock);
    errno = saved;
    return rc;
}

/* Records `written` bytes of `iov` as written at `offset` (-1: at the position before the call). */
static void wrote(int fd, const struct iovec *iov, int count, ssize_t written, long long offset) {
    if (!is_tracked(fd) || written <= 0) return;
    if (offset < 0) offset = (long long)lseek(fd, 0, SEEK_CUR) - written;
    if (data_fd < 0) { /* counting only */
        emit("W\t%d\t%lld\t%zd\t0\n", fd, offset, written);
        return;
    }
    emit("W\t%d\t%lld\t%zd\t%lld\n", fd, offset, written, data_offset);
    size_t left = (size_t)written;
    for (int i = 0; i < count && left > 0; i++) {
        size_t take = iov[i].iov_len < left ? iov[i].iov_len : left;
        write_all(data_fd, iov[i].iov_base, take);
        left -= take;
    }
    data_offset += written;
}

#define WRITE_BODY(call, iov, count, offset)     \
    pthread_mutex_lock(&lock);                   \
    ssize_t n = call;                            \
    int saved = errno;                           \
    wrote(fd, iov, count, n, offset);            \
    pthread_mutex_unlock(&lock);                 \
    errno = saved;                               \
    return n;

ssize_t write(int fd, const void *buf, size_t len) {
    struct iovec one = {(void *)buf, len};
    WRITE_BODY(get_write()(fd, buf, len), &one, 1, -1)
}
ssize_t pwrite(int fd, const void *buf, size_t len, off_t offset) {
    struct iovec one = {(void *)buf, len};
    WRITE_BODY(get_pwrite()(fd, buf, len, offset), &one, 1, offset)
}
ssize_t pwrite64(int fd, const void *buf, size_t len, off_t offset) {
    struct iovec one = {(void *)buf, len};
    WRITE_BODY(get_pwrite64()(fd, buf, len, offset), &one, 1, offset)
}
ssize_t writev(int fd, const struct iovec *iov, int count) { WRITE_BODY(get_writev()(fd, iov, count), iov, count, -1) }
ssize_t pwritev(int fd, const struct iovec *iov, int count, off_t offset) {
    WRITE_BODY(get_pwritev()(fd, iov, count, offset), iov, count, offset)
}
ssize_t pwritev64(int fd, const struct iovec *iov, int count, off_t offset) {
    WRITE_BODY(get_pwritev64()(fd, iov, count, offset), iov, count, offset)
}
ssize_t pwritev2(int fd, const struct iovec *iov, int count, off_t offset, int flags) {
    WRITE_BODY(get_pwritev2()(fd, iov, count, offset, flags), iov, count, offset)
}
ssize_t pwritev64v2(int fd, const struct iovec *iov, int count, off_t offset, int flags) {
    WRITE_BODY(get_pwritev64v2()(fd, iov, count, offset, flags), iov, count, offset)
}

#define FD_OP_BODY(call, ...)                                    \
    pthread_mutex_lock(&lock);                                   \
    int rc = call;                                               \
    int saved = errno;                                           \
    if (rc == 0 && is_tracked(fd)) emit(__VA_ARGS__);            \
    pthread_mutex_unlock(&lock);                                 \
    errno = saved;                                               \
    return rc;

int ftruncate(int fd, off_t length) { FD_OP_BODY(get_ftruncate()(fd, length), "T\t%d\t%lld\n", fd, (long long)length) }
int ftruncate64(int fd, off_t length) {
    FD_OP_BODY(get_ftruncate64()(fd, length), "T\t%d\t%lld\n", fd, (long long)length)
}
int fallocate(int fd, int mode, off_t offset, off_t length) {
    FD_OP_BODY(get_fallocate()(fd, mode, offset, length), "F\t%d\t%d\t%lld\t%lld\n", fd, mode, (long long)offset,
               (long long)length)
}
int fallocate64(int fd, int mode, off_t offset, off_t length) {
    FD_OP_BODY(get_fallocate64()(fd, mode, offset, length), "F\t%d\t%d\t%lld\t%lld\n", fd, mode, (long long)offset,
               (long long)length)
}
int posix_fallocate(int fd, off_t offset, off_t length) {
    FD_OP_BODY(get_posix_fallocate()(fd, offset, length), "F\t%d\t0\t%lld\t%lld\n", fd, (long long)offset,
               (long long)length)
}
int posix_fallocate64(int fd, off_t offset, off_t length) {
    FD_OP_BODY(get_posix_fallocate64()(fd, offset, length), "F\t%d\t0\t%lld\t%lld\n", fd, (long long)offset,
               (long long)length)
}

static int synced(int fd, int (*real)(int)) {
    pthread_mutex_lock(&lock);
    int rc, saved;
    if (is_tracked(fd) && (drop_sync || dropped[fd])) {
        rc = 0;
        saved = errno;
    } else {
        rc = real(fd);
        saved = errno;
        if (rc == 0 && is_tracked(fd)) emit("S\t%d\n", fd);
    }
    pthread_mutex_unlock(&lock);
    errno = saved;
    return rc;
}

int fsync(int fd) { return synced(fd, get_fsync()); }
int fdatasync(int fd) { return synced(fd, get_fdatasync()); }

/* Path ops: resolved before the call (afterwards the old name is gone), recorded on success. */
#define PATH_OP_BODY(dirfd, path, call, tag)                               \
    pthread_mutex_lock(&lock);                                             \
    char resolved[PATH_MAX];                                               \
    int ok = enabled() && resolve(dirfd, path, resolved) == 0;             \
    int rc = call;                                                         \
    int saved = errno;                                                     \
    if (rc == 0 && ok && under_root(resolved)) emit(tag "\t%s\n", resolved); \
    pthread_mutex_unlock(&lock);                                           \
    errno = saved;                                                         \
    return rc;

int unlink(const char *path) { PATH_OP_BODY(AT_FDCWD, path, get_unlink()(path), "U") }
int rmdir(const char *path) { PATH_OP_BODY(AT_FDCWD, path, get_rmdir()(path), "D") }
int mkdir(const char *path, mode_t mode) { PATH_OP_BODY(AT_FDCWD, path, get_mkdir()(path, mode), "K") }
int mkdirat(int dirfd, const char *path, mode_t mode) {
    PATH_OP_BODY(dirfd, path, get_mkdirat()(dirfd, path, mode), "K")
}
int unlinkat(int dirfd, const char *path, int flags) {
    pthread_mutex_lock(&lock);
    char resolved[PATH_MAX];
    int ok = enabled() && resolve(dirfd, path, resolved) == 0;
    int rc = get_unlinkat()(dirfd, path, flags);
    int saved = errno;
    if (rc == 0 && ok && under_root(resolved)) emit("%s\t%s\n", (flags & AT_REMOVEDIR) ? "D" : "U", resolved);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return rc;
}

static int path_length_op(const char *path, off_t length, int (*real)(const char *, off_t)) {
    pthread_mutex_lock(&lock);
    char resolved[PATH_MAX];
    int ok = enabled() && resolve(AT_FDCWD, path, resolved) == 0;
    int rc = real(path, length);
    int saved = errno;
    if (rc == 0 && ok && under_root(resolved)) emit("TP\t%s\t%lld\n", resolved, (long long)length);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return rc;
}
int truncate(const char *path, off_t length) { return path_length_op(path, length, get_truncate()); }
int truncate64(const char *path, off_t length) { return path_length_op(path, length, get_truncate64()); }

static int renamed(int olddir, const char *old, int newdir, const char *new_path, int rc_call_kind,
                   unsigned int flags) {
    pthread_mutex_lock(&lock);
    char from[PATH_MAX], to[PATH_MAX];
    int ok = enabled() && resolve(olddir, old, from) == 0 && resolve(newdir, new_path, to) == 0;
    int rc;
    if (rc_call_kind == 0)
        rc = get_rename()(old, new_path);
    else if (rc_call_kind == 1)
        rc = get_renameat()(olddir, old, newdir, new_path);
    else
        rc = get_renameat2()(olddir, old, newdir, new_path, flags);
    int saved = errno;
    if (rc == 0 && ok && (under_root(from) || under_root(to))) emit("R\t%s\t%s\n", from, to);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return rc;
}
int rename(const char *old, const char *new_path) { return renamed(AT_FDCWD, old, AT_FDCWD, new_path, 0, 0); }
int renameat(int olddir, const char *old, int newdir, const char *new_path) {
    return renamed(olddir, old, newdir, new_path, 1, 0);
}
int renameat2(int olddir, const char *old, int newdir, const char *new_path, unsigned int flags) {
    return renamed(olddir, old, newdir, new_path, 2, flags);
}

/* Called by the workload (ctypes) to put a marker line (an acknowledgement) into the op log. */
void fsrec_mark(const char *text) {
    if (ops_fd < 0) return;
    pthread_mutex_lock(&lock);
    emit("M\t%s\n", text);
    pthread_mutex_unlock(&lock);
}

/* Called by a test (ctypes): SIGKILL this process right after the `ops`-th op from now under the
 * root (0: disarm). Returns how many ops were counted so far. */
long long fsrec_kill_after(long long ops) {
    pthread_mutex_lock(&lock);
    long long done = ops_done;
    kill_at = ops > 0 ? done + ops : -1;
    pthread_mutex_unlock(&lock);
    return done;
}
