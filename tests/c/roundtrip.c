/* A C program's round trip through a copickfs mount.
 *
 * usage: roundtrip MOUNTPOINT NEWNAME EXISTING
 *
 * Creates MOUNTPOINT/NEWNAME exclusively, writes it with write(2) and pwrite(2)
 * (3 MiB buffers, so the kernel sends full 1 MiB FUSE requests), fsyncs, reads it
 * back with pread(2), truncates it, writes past the end, and renames it over
 * MOUNTPOINT/EXISTING (a static file). Exits non-zero with a message on any mismatch.
 * tests/test_tools.py (roundtrip_expected) knows the bytes it leaves behind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define MIB (1024L * 1024L)
#define A_LEN (3 * MIB + 123)
#define B_OFF (5 * MIB)
#define B_LEN (3 * MIB)
#define X_OFF 1000
#define X_LEN 77
#define FINAL (4 * MIB + 7)
#define TAIL_OFF (FINAL + 4096)

static void fail(const char *what) {
    fprintf(stderr, "roundtrip: %s: %s\n", what, errno ? strerror(errno) : "mismatch");
    exit(1);
}

static void check(int ok, const char *what) {
    if (!ok) {
        errno = 0;
        fail(what);
    }
}

static void fill(unsigned char *buf, long n, long mul, long add, long mod) {
    for (long i = 0; i < n; i++)
        buf[i] = (unsigned char)((i * mul + add) % mod);
}

static void write_all(int fd, const unsigned char *buf, long n) {
    while (n > 0) {
        ssize_t w = write(fd, buf, (size_t)n);
        if (w < 0) fail("write");
        check(w > 0, "write wrote nothing");
        buf += w;
        n -= w;
    }
}

static void pwrite_all(int fd, const unsigned char *buf, long n, off_t off) {
    while (n > 0) {
        ssize_t w = pwrite(fd, buf, (size_t)n, off);
        if (w < 0) fail("pwrite");
        check(w > 0, "pwrite wrote nothing");
        buf += w;
        n -= w;
        off += w;
    }
}

/* pread the whole of fd in chunks of `chunk` bytes and compare with expected[0..len). */
static void verify_pread(int fd, const unsigned char *expected, long len, long chunk, const char *what) {
    unsigned char *got = malloc((size_t)chunk);
    if (!got) fail("malloc");
    long off = 0;
    while (off < len) {
        long want = len - off < chunk ? len - off : chunk;
        ssize_t r = pread(fd, got, (size_t)want, off);
        if (r < 0) fail("pread");
        check(r > 0, "pread: unexpected end of file");
        if (memcmp(got, expected + off, (size_t)r) != 0) {
            fprintf(stderr, "roundtrip: %s: bytes differ in [%ld, %ld)\n", what, off, off + (long)r);
            exit(1);
        }
        off += r;
    }
    ssize_t r = pread(fd, got, 1, len);
    if (r < 0) fail("pread at end");
    check(r == 0, "pread past the end returned data");
    free(got);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MOUNTPOINT NEWNAME EXISTING\n", argv[0]);
        return 2;
    }
    char path[4096], existing[4096];
    snprintf(path, sizeof path, "%s/%s", argv[1], argv[2]);
    snprintf(existing, sizeof existing, "%s/%s", argv[1], argv[3]);
    umask(022);

    long total = B_OFF + B_LEN;
    unsigned char *expected = calloc((size_t)total, 1);  /* total > TAIL_OFF + 4 */
    unsigned char *a = malloc(A_LEN), *b = malloc(B_LEN);
    if (!expected || !a || !b) fail("malloc");
    fill(a, A_LEN, 31, 7, 251);
    fill(b, B_LEN, 17, 3, 253);

    int fd = open(path, O_CREAT | O_EXCL | O_RDWR, 0640);
    if (fd < 0) fail("open O_CREAT|O_EXCL");
    errno = 0;
    check(open(path, O_CREAT | O_EXCL | O_RDWR, 0640) < 0 && errno == EEXIST,
          "second O_EXCL open did not fail with EEXIST");

    write_all(fd, a, A_LEN);
    memcpy(expected, a, A_LEN);
    pwrite_all(fd, b, B_LEN, B_OFF);
    memcpy(expected + B_OFF, b, B_LEN);
    unsigned char x[X_LEN];
    memset(x, 'x', X_LEN);
    pwrite_all(fd, x, X_LEN, X_OFF);
    memcpy(expected + X_OFF, x, X_LEN);
    if (fsync(fd) < 0) fail("fsync");

    struct stat st;
    if (fstat(fd, &st) < 0) fail("fstat");
    check(st.st_size == total, "size after writes");
    check(lseek(fd, 0, SEEK_END) == total, "lseek SEEK_END");
    verify_pread(fd, expected, total, 3 * MIB, "after writes (3 MiB reads)");
    verify_pread(fd, expected, total, 65537, "after writes (odd reads)");

    if (ftruncate(fd, FINAL) < 0) fail("ftruncate");
    memset(expected + FINAL, 0, (size_t)(TAIL_OFF - FINAL));
    if (fstat(fd, &st) < 0) fail("fstat");
    check(st.st_size == FINAL, "size after ftruncate");
    verify_pread(fd, expected, FINAL, MIB, "after ftruncate");

    pwrite_all(fd, (const unsigned char *)"TAIL", 4, TAIL_OFF);
    memcpy(expected + TAIL_OFF, "TAIL", 4);
    if (fdatasync(fd) < 0) fail("fdatasync");
    verify_pread(fd, expected, TAIL_OFF + 4, 3 * MIB, "after write past the end");
    if (close(fd) < 0) fail("close");

    if (rename(path, existing) < 0) fail("rename over the existing file");
    errno = 0;
    check(stat(path, &st) < 0 && errno == ENOENT, "old name still there after rename");
    if (stat(existing, &st) < 0) fail("stat after rename");
    check(S_ISREG(st.st_mode), "not a regular file after rename");
    check((st.st_mode & 07777) == 0640, "mode after rename");
    check(st.st_size == TAIL_OFF + 4, "size after rename");
    check(st.st_uid == getuid(), "owner");

    fd = open(existing, O_RDONLY);
    if (fd < 0) fail("open after rename");
    verify_pread(fd, expected, TAIL_OFF + 4, MIB, "after rename");
    close(fd);
    printf("ok\n");
    return 0;
}
