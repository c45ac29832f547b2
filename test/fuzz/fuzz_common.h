/* fuzz_common.h: what the two libFuzzer targets share. Include it from exactly one file per binary
 * (it defines the guarded mmap the library is linked against).
 *
 * - fz_in: a cursor over the fuzzer's input; reading past the end yields zeros, so every input decodes.
 * - FZ_REQUIRE: a failed expectation prints why and aborts, which libFuzzer records as a crash.
 * - Segment names: one per process ("/shmkv-fuzz-TAG-PID"), so parallel fuzzers (-jobs, -fork) never
 *   share a segment; names left behind by processes that died are removed at start-up (this header
 *   defines LLVMFuzzerInitialize to do so).
 * - kv_fuzz_mmap / kv_fuzz_munmap: fuzz.mk compiles the library with -Dmmap=kv_fuzz_mmap
 *   -Dmunmap=kv_fuzz_munmap, so the store's mapping sits between two PROT_NONE zones and the tail of its
 *   last page is poisoned for ASan. A read or write past the mapping then faults or is reported at once,
 *   with its stack, instead of silently landing in whatever memory happens to follow the mapping.
 * - kv_fuzz_clock_gettime: fuzz.mk also compiles it with -Dclock_gettime=kv_fuzz_clock_gettime: the
 *   library's wall clock (CLOCK_REALTIME) runs fz_clock_skew_ms ahead of the real one, which a target
 *   moves forward (fz_advance_clock) to make entries expire; fz_now and fz_now_ms read that clock. */
#ifndef SHMKV_FUZZ_COMMON_H
#define SHMKV_FUZZ_COMMON_H

#define _GNU_SOURCE
#include "shared_memory_kv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sanitizer/asan_interface.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FZ_NAME_PREFIX "shmkv-fuzz-"

#define FZ_REQUIRE(cond, ...)                                                       \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "%s:%d: expectation failed: %s\n  ", __FILE__, __LINE__, \
                    #cond);                                                         \
            fprintf(stderr, __VA_ARGS__);                                           \
            fputc('\n', stderr);                                                    \
            abort();                                                                \
        }                                                                           \
    } while (0)

/* UBSan findings stop the run with a stack, like ASan's (libFuzzer then saves the input). */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) { return "halt_on_error=1:print_stacktrace=1"; }

/* ---- input cursor ------------------------------------------------------------------------------ */

typedef struct fz_in {
    const uint8_t *p;
    size_t n;
} fz_in;

static inline uint8_t fz_u8(fz_in *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint16_t fz_u16(fz_in *in)
{
    uint16_t lo = fz_u8(in);
    return (uint16_t)(lo | (uint16_t)fz_u8(in) << 8);
}

static inline uint32_t fz_u32(fz_in *in)
{
    uint32_t lo = fz_u16(in);
    return lo | (uint32_t)fz_u16(in) << 16;
}

/* Fill dst with the next n bytes, zeros once the input runs out. */
static inline void fz_bytes(fz_in *in, unsigned char *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = fz_u8(in);
}

/* ---- segment names ----------------------------------------------------------------------------- */

static inline void fz_shm_name(char *buf, size_t cap, const char *tag)
{
    snprintf(buf, cap, "/" FZ_NAME_PREFIX "%s-%ld", tag, (long)getpid());
}

/* A crash between creating a segment and unlinking it leaves the name behind; its pid says whether
 * its owner is gone. Runs once per process, so /dev/shm stays clean over many crashing runs. */
static inline void fz_remove_stale_names(void)
{
    DIR *d = opendir("/dev/shm");
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *dash = strrchr(de->d_name, '-');
        if (strncmp(de->d_name, FZ_NAME_PREFIX, strlen(FZ_NAME_PREFIX)) || !dash)
            continue;
        long pid = strtol(dash + 1, NULL, 10);
        if (pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
            char name[300];
            snprintf(name, sizeof name, "/%s", de->d_name);
            shm_unlink(name);
        }
    }
    closedir(d);
}

/* libFuzzer calls it once per process, before the first input. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_remove_stale_names();
    return 0;
}

/* ---- the library's guarded mapping ------------------------------------------------------------- */

#define FZ_GUARD ((size_t)64 << 20) /* PROT_NONE bytes on each side: address space only */

void *kv_fuzz_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int kv_fuzz_munmap(void *addr, size_t len);

static inline size_t fz_page_round(size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (n + page - 1) / page * page;
}

void *kv_fuzz_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    (void)addr; /* the library always passes NULL */
    size_t span = fz_page_round(len) + 2 * FZ_GUARD;
    unsigned char *zone =
        mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (zone == MAP_FAILED)
        return MAP_FAILED;
    unsigned char *p = mmap(zone + FZ_GUARD, len, prot, flags | MAP_FIXED, fd, off);
    if (p == MAP_FAILED) {
        int e = errno;
        munmap(zone, span);
        errno = e;
        return MAP_FAILED;
    }
    /* The rest of the last page is addressable to the hardware, not to the store. */
    ASAN_POISON_MEMORY_REGION(p + len, fz_page_round(len) - len);
    return p;
}

int kv_fuzz_munmap(void *addr, size_t len)
{
    unsigned char *p = addr;
    /* Unpoison first: the address range will be reused by later mappings. */
    ASAN_UNPOISON_MEMORY_REGION(p + len, fz_page_round(len) - len);
    return munmap(p - FZ_GUARD, fz_page_round(len) + 2 * FZ_GUARD);
}

/* ---- small shared helpers ---------------------------------------------------------------------- */

/* How far the library's wall clock runs ahead of the real one: 0 at the start of each input. */
static uint64_t fz_clock_skew_ms;

int kv_fuzz_clock_gettime(clockid_t clock, struct timespec *ts);
int kv_fuzz_clock_gettime(clockid_t clock, struct timespec *ts)
{
    int rc = clock_gettime(clock, ts);
    if (rc == 0 && clock == CLOCK_REALTIME && fz_clock_skew_ms) {
        uint64_t ns = (uint64_t)ts->tv_nsec + fz_clock_skew_ms % 1000 * 1000000u;
        ts->tv_sec += (time_t)(fz_clock_skew_ms / 1000 + ns / 1000000000u);
        ts->tv_nsec = (long)(ns % 1000000000u);
    }
    return rc;
}

static inline void fz_reset_clock(void) { fz_clock_skew_ms = 0; }
static inline void fz_advance_clock(uint64_t ms) { fz_clock_skew_ms += ms; }

/* The library's wall clock, in ms (expiries) and in seconds (what it stamps entries with). */
static inline uint64_t fz_now_ms(void)
{
    struct timespec ts;
    kv_fuzz_clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline int64_t fz_now(void) { return (int64_t)(fz_now_ms() / 1000); }

/* An exact-size heap copy, so ASan sees any read past what the library was given. */
static inline unsigned char *fz_dup(const void *src, size_t n)
{
    unsigned char *p = malloc(n ? n : 1);
    FZ_REQUIRE(p, "out of memory");
    if (n)
        memcpy(p, src, n);
    return p;
}

/* A return code the header documents: 0, the library's range, or a negated errno. */
static inline int fz_known_rc(int rc)
{
    return rc == 0 || (rc >= KV_ERR_FIRST && rc <= KV_ERR_LAST) || (rc < 0 && rc > -4096);
}

#endif
