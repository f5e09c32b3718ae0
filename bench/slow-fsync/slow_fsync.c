// LD_PRELOAD shim that makes every fsync/fdatasync take at least SLOW_FSYNC_US microseconds
// (default 2000), to measure a store on a disk whose flushes cost what a real SSD's or a
// cloud volume's do. This machine's virtual disk acknowledges a flush in about 0.2 ms.
//
//   cc -O2 -shared -fPIC -o slow_fsync.so slow_fsync.c -ldl
//   LD_PRELOAD=$PWD/slow_fsync.so SLOW_FSYNC_US=2000 natter serve …
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

static long delay_us(void) {
    const char *v = getenv("SLOW_FSYNC_US");
    return v ? atol(v) : 2000;
}

static void pause_for_flush(void) {
    long us = delay_us();
    struct timespec t = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&t, NULL);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    int r = real(fd);
    pause_for_flush();
    return r;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    int r = real(fd);
    pause_for_flush();
    return r;
}
