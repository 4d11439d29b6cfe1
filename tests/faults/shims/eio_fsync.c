/* Test-only LD_PRELOAD shim: fsync and fdatasync fail with EIO, as a failing disk's do, for
 * files whose path contains $TIDELOG_TEST_EIO_PATH, while the file $TIDELOG_TEST_EIO_SWITCH
 * exists (so a test arms and disarms it while the broker runs). Everything else is passed on.
 * Built by tests/faults/test_fsync_eio.py with gcc; never part of the package. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int armed_for(int fd) {
    const char *pattern = getenv("TIDELOG_TEST_EIO_PATH");
    const char *switch_file = getenv("TIDELOG_TEST_EIO_SWITCH");
    if (pattern == NULL || switch_file == NULL || access(switch_file, F_OK) != 0) {
        return 0;
    }
    char link[64];
    char target[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t length = readlink(link, target, sizeof target - 1);
    if (length < 0) {
        return 0;
    }
    target[length] = '\0';
    return strstr(target, pattern) != NULL;
}

int fsync(int fd) {
    static int (*real)(int) = NULL;
    if (armed_for(fd)) {
        errno = EIO;
        return -1;
    }
    if (real == NULL) {
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    }
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int) = NULL;
    if (armed_for(fd)) {
        errno = EIO;
        return -1;
    }
    if (real == NULL) {
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    }
    return real(fd);
}
