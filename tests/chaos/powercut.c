/*
 * powercut.c: an LD_PRELOAD shim that keeps the "durable image" of the ledger's files.
 *
 * The power-loss model: after a power cut only what was fsynced is on the disk. This shim
 * runs inside the real core daemon (with the real SQLite) and, each time fsync() or
 * fdatasync() succeeds on a file whose path starts with $KIOSK_POWERCUT_PREFIX (the
 * ledger: ledger.sqlite and its -wal, -shm, -journal), copies the file's whole content as
 * it is at that instant to $KIOSK_POWERCUT_IMAGES/<basename>, atomically (temporary file,
 * then rename). The copy is taken before the sync call returns to SQLite, so a commit
 * that returned is in the image, and a SIGKILL during the copy leaves the previous image.
 * Nothing else writes an image: a write that was never followed by a sync of its file is
 * lost at the cut, exactly as the model says. A file that was never synced has no image
 * (it does not exist after the cut); unlink() of a modelled file removes its image.
 *
 * The test "cuts the power" by SIGKILLing the daemon and replacing the live files by
 * their images (tests/chaos/power_loss.py). Each sync is appended to
 * $KIOSK_POWERCUT_IMAGES/syncs.log ("<basename> <size>") for the run's figures.
 *
 * For the looser model (a real disk may keep any part of what was written since the last
 * sync, torn at sector boundaries), every write and truncation of a modelled file (but
 * the -shm) since its last sync is also appended to <images>/<basename>.pending as a record: kind ('W'
 * write, 'T' truncate), offset and length as little-endian int64, then the bytes written.
 * A sync empties that log. The test may lay any subset of those records, whole or in
 * sectors, over the image at a cut.
 *
 * With $KIOSK_POWERCUT_KILL_AFTER_WRITES=N the process SIGKILLs itself right after its
 * N-th write to a modelled file (that write done and logged, its sync not yet made): a
 * cut aimed inside a transaction, a checkpoint or the recovery at start-up.
 *
 * Built by the test with the machine's gcc: gcc -shared -fPIC -O2 -o powercut.so
 * powercut.c -ldl. Test-only: nothing in the product loads it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define DELETED_SUFFIX " (deleted)"
#define COPY_CHUNK (1 << 16)

typedef int (*sync_fn)(int);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef int (*ftruncate_fn)(int, off_t);
typedef int (*unlink_fn)(const char *);
typedef int (*unlinkat_fn)(int, const char *, int);

static const char *env_or_null(const char *name) {
    const char *v = getenv(name);
    return (v != NULL && v[0] != '\0') ? v : NULL;
}

static void die(const char *what, const char *path) {
    char msg[PATH_MAX + 128];
    int n = snprintf(msg, sizeof msg, "powercut: %s %s: %s\n", what, path, strerror(errno));
    if (n > 0) {
        ssize_t ignored = write(2, msg, (size_t)n);
        (void)ignored;
    }
    abort(); /* the model is broken: never let the run go on silently */
}

/* Whether `path` is one of the modelled files: the prefix itself or prefix + "-...". */
static int modelled(const char *path) {
    const char *prefix = env_or_null("KIOSK_POWERCUT_PREFIX");
    if (prefix == NULL) {
        return 0;
    }
    size_t n = strlen(prefix);
    if (strncmp(path, prefix, n) != 0) {
        return 0;
    }
    if (path[n] != '\0' && path[n] != '-') {
        return 0;
    }
    size_t len = strlen(path), dl = strlen(DELETED_SUFFIX);
    return !(len >= dl && strcmp(path + len - dl, DELETED_SUFFIX) == 0);
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static void image_path(char *out, size_t size, const char *dir, const char *name) {
    if (snprintf(out, size, "%s/%s", dir, name) >= (int)size) {
        errno = ENAMETOOLONG;
        die("image path too long for", name);
    }
}

static void copy_all(int in, int out, off_t size, const char *path) {
    off_t done = 0;
    while (done < size) {
        loff_t off_in = done;
        ssize_t n = copy_file_range(in, &off_in, out, NULL, (size_t)(size - done), 0);
        if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL)) {
            char buf[COPY_CHUNK];
            size_t want = (size_t)(size - done) < sizeof buf ? (size_t)(size - done) : sizeof buf;
            n = pread(in, buf, want, done);
            if (n > 0 && write(out, buf, (size_t)n) != n) {
                die("short write of the image of", path);
            }
        }
        if (n < 0) {
            die("cannot copy", path);
        }
        if (n == 0) {
            break; /* the file shrank under us: impossible for SQLite's single writer */
        }
        done += n;
    }
}

/* The path behind `fd` into `path` if it is a modelled file; 0 otherwise. */
static int modelled_fd(int fd, char *path, size_t size) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, path, size - 1);
    if (len < 0) {
        return 0;
    }
    path[len] = '\0';
    return modelled(path);
}

static long kill_after_writes(void) {
    static long limit = -1;
    if (limit < 0) {
        const char *v = env_or_null("KIOSK_POWERCUT_KILL_AFTER_WRITES");
        limit = v ? strtol(v, NULL, 10) : 0;
    }
    return limit;
}

static long writes_seen = 0;

/* Append one record to the file's pending log: what a cut may or may not keep. */
static void note_pending(int fd, char kind, off_t offset, const void *data, size_t n) {
    const char *dir = env_or_null("KIOSK_POWERCUT_IMAGES");
    char path[PATH_MAX], logp[PATH_MAX], name[PATH_MAX];
    if (dir == NULL || !modelled_fd(fd, path, sizeof path)) {
        return;
    }
    size_t plen = strlen(path);
    if (plen >= 4 && strcmp(path + plen - 4, "-shm") == 0) {
        return; /* the WAL index: never synced, rebuilt after a crash; the cut handles it */
    }
    if (snprintf(name, sizeof name, "%s.pending", base_name(path)) >= (int)sizeof name) {
        return;
    }
    image_path(logp, sizeof logp, dir, name);
    size_t total = 1 + 16 + (kind == 'W' ? n : 0);
    unsigned char *buf = malloc(total);
    if (buf == NULL) {
        die("out of memory logging a write to", path);
    }
    int64_t off64 = (int64_t)offset, len64 = (int64_t)n;
    buf[0] = (unsigned char)kind;
    memcpy(buf + 1, &off64, 8); /* x86-64 and arm64: little-endian */
    memcpy(buf + 9, &len64, 8);
    if (kind == 'W') {
        memcpy(buf + 17, data, n);
    }
    int lg = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (lg < 0 || write(lg, buf, total) != (ssize_t)total) {
        die("cannot log a pending write to", logp);
    }
    close(lg);
    free(buf);
    long limit = kill_after_writes();
    if (limit > 0 && __atomic_add_fetch(&writes_seen, 1, __ATOMIC_SEQ_CST) == limit) {
        raise(SIGKILL); /* the power goes out between this write and its sync */
    }
}

/* Copy the file behind `fd` to its image, if it is modelled. */
static void snapshot(int fd) {
    const char *dir = env_or_null("KIOSK_POWERCUT_IMAGES");
    if (dir == NULL) {
        return;
    }
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    if (!modelled_fd(fd, path, sizeof path)) {
        return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        die("cannot stat", path);
    }
    if (!S_ISREG(st.st_mode)) {
        return;
    }
    char final[PATH_MAX], tmp[PATH_MAX];
    const char *name = base_name(path);
    image_path(final, sizeof final, dir, name);
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", final, (long)syscall(SYS_gettid)) >=
        (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        die("image path too long for", name);
    }
    int in = open(link, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        die("cannot reopen", path);
    }
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        die("cannot create the image", tmp);
    }
    copy_all(in, out, st.st_size, path);
    close(in);
    if (close(out) != 0 || rename(tmp, final) != 0) {
        die("cannot publish the image", final);
    }
    char pending[PATH_MAX];
    if (snprintf(pending, sizeof pending, "%s.pending", final) < (int)sizeof pending) {
        truncate(pending, 0); /* all of it is in the image now */
    }
    char logp[PATH_MAX], line[PATH_MAX + 32];
    image_path(logp, sizeof logp, dir, "syncs.log");
    int lg = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (lg >= 0) {
        int n = snprintf(line, sizeof line, "%s %lld\n", name, (long long)st.st_size);
        if (n > 0) {
            ssize_t ignored = write(lg, line, (size_t)n);
            (void)ignored;
        }
        close(lg);
    }
}

static int synced(const char *which, int fd) {
    sync_fn real = (sync_fn)dlsym(RTLD_NEXT, which);
    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }
    int rc = real(fd);
    if (rc == 0) {
        int saved = errno;
        snapshot(fd);
        errno = saved;
    }
    return rc;
}

int fsync(int fd) { return synced("fsync", fd); }

/* Record a completed change of a modelled file, keeping the caller's errno. */
static void after_change(int fd, char kind, off_t at, const void *buf, size_t n) {
    int saved = errno;
    note_pending(fd, kind, at, buf, n);
    errno = saved;
}

/* pwrite and pwrite64 (and ftruncate and ftruncate64) differ only in the symbol name. */
#define POSITIONED_WRITE(name)                                            \
    ssize_t name(int fd, const void *buf, size_t n, off_t offset) {      \
        pwrite_fn real = (pwrite_fn)dlsym(RTLD_NEXT, #name);             \
        ssize_t rc = real(fd, buf, n, offset);                           \
        if (rc > 0) {                                                    \
            after_change(fd, 'W', offset, buf, (size_t)rc);              \
        }                                                                \
        return rc;                                                       \
    }

#define TRUNCATE(name)                                                   \
    int name(int fd, off_t length) {                                     \
        ftruncate_fn real = (ftruncate_fn)dlsym(RTLD_NEXT, #name);       \
        int rc = real(fd, length);                                       \
        if (rc == 0) {                                                   \
            after_change(fd, 'T', length, NULL, 0);                      \
        }                                                                \
        return rc;                                                       \
    }

POSITIONED_WRITE(pwrite)
POSITIONED_WRITE(pwrite64)
TRUNCATE(ftruncate)
TRUNCATE(ftruncate64)

ssize_t write(int fd, const void *buf, size_t n) {
    write_fn real = (write_fn)dlsym(RTLD_NEXT, "write");
    off_t at = fd > 2 ? lseek(fd, 0, SEEK_CUR) : (off_t)-1;
    ssize_t rc = real(fd, buf, n);
    if (rc > 0 && at >= 0) {
        after_change(fd, 'W', at, buf, (size_t)rc);
    }
    return rc;
}

int fdatasync(int fd) { return synced("fdatasync", fd); }

static void forget(const char *path) {
    const char *dir = env_or_null("KIOSK_POWERCUT_IMAGES");
    char abs[PATH_MAX], final[PATH_MAX];
    if (dir == NULL || path == NULL) {
        return;
    }
    if (path[0] != '/') {
        if (getcwd(abs, sizeof abs) == NULL) {
            return;
        }
        size_t n = strlen(abs);
        if (snprintf(abs + n, sizeof abs - n, "/%s", path) >= (int)(sizeof abs - n)) {
            return;
        }
    } else if (snprintf(abs, sizeof abs, "%s", path) >= (int)sizeof abs) {
        return;
    }
    if (modelled(abs)) {
        image_path(final, sizeof final, dir, base_name(abs));
        if (unlink(final) != 0 && errno != ENOENT) {
            die("cannot remove the image", final);
        }
    }
}

static void after_removal(const char *path) {
    int saved = errno;
    forget(path);
    errno = saved;
}

int unlink(const char *path) {
    unlink_fn real = (unlink_fn)dlsym(RTLD_NEXT, "unlink");
    int rc = real(path);
    if (rc == 0) {
        after_removal(path);
    }
    return rc;
}

int unlinkat(int dirfd, const char *path, int flags) {
    unlinkat_fn real = (unlinkat_fn)dlsym(RTLD_NEXT, "unlinkat");
    int rc = real(dirfd, path, flags);
    if (rc == 0 && (dirfd == AT_FDCWD || path[0] == '/')) {
        after_removal(path);
    }
    return rc;
}
