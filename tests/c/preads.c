/* Reads byte ranges of a file with pread(2), as a C reader of MRC files does.
 *
 * usage: preads FILE < RANGES
 * RANGES: lines "OFFSET LENGTH"; the bytes of each range are written to stdout in order.
 * A short read (end of file) writes what was read; a failed read exits with status 1.
 */
#define _XOPEN_SOURCE 700
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FILE < RANGES\n", argv[0]);
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) {
        perror("open");
        return 1;
    }
    long long offset, length;
    while (scanf("%lld %lld", &offset, &length) == 2) {
        char *buf = malloc(length > 0 ? (size_t)length : 1);
        if (buf == NULL) {
            return 1;
        }
        long long done = 0;
        while (done < length) {
            ssize_t n = pread(fd, buf + done, (size_t)(length - done), (off_t)(offset + done));
            if (n < 0) {
                perror("pread");
                return 1;
            }
            if (n == 0) {
                break;
            }
            done += n;
        }
        if (fwrite(buf, 1, (size_t)done, stdout) != (size_t)done) {
            return 1;
        }
        free(buf);
    }
    return close(fd) == 0 ? 0 : 1;
}
