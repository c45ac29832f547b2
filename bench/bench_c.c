/* The ceiling: the C library called from a C loop, on the same keys and values as bench/inprocess.ts.
 *   bench_c NAME ENTRIES SECONDS          ->  one JSON line: {"get": {...}, "set": {...}}
 *   bench_c NAME ENTRIES SECONDS ttl      ->  the same, every entry set (and rewritten) with a TTL of
 *                                             an hour (kv_set_ttl)
 *   bench_c NAME ENTRIES SECONDS lru      ->  the same on a store of ENTRIES entries that evicts
 *                                             (KV_EVICT_LRU), its sets over LRU_KEYS times as many
 *                                             keys: most of them evict; also "evicted_per_set"
 *   bench_c NAME ENTRIES SECONDS lru-mixed -> the same with values of 100 to 2,000 bytes in a heap
 *                                             of 1,100 bytes per entry: evicting must find room
 *                                             that fits among chunks of every size
 *   bench_c NAME ENTRIES SECONDS hammer   ->  a busy writer on an existing store: sets for SECONDS
 *                                             over its ENTRIES keys, then {"set": {...}}
 *   bench_c NAME ENTRIES SECONDS resize   ->  a store of ENTRIES entries grown to twice that, then
 *                                             shrunk back, by kv_resize: {"resize": {...}} with each
 *                                             one's time, and the first call of a handle following
 * Latencies are per operation, measured over batches of BATCH operations (a clock read per
 * operation would cost more than the operation). */
#define _GNU_SOURCE
#include "shared_memory_kv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 64
/* As bench/measure.ts: "ttl", each entry's TTL, far beyond a run; "lru", the distinct keys the sets
 * write, per entry the store holds. */
#define TTL_MS 3600000u
#define LRU_KEYS 4
/* "lru-mixed": key i's value is 100 to 2,000 bytes (a spread of sizes, so a set that evicts must
 * find a chunk that fits in a heap of holes), in a heap of MIXED_BYTES per entry. */
#define MIXED_MAX   2000
#define MIXED_BYTES 1100

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static size_t key_of(char *buf, long i) { return (size_t)sprintf(buf, "key-%ld", i); }

/* The value every implementation stores for key i: 64 ASCII bytes. */
static void value_of(char *buf, long i)
{
    int n = sprintf(buf, "value-%ld-", i);
    memset(buf + n, '.', (size_t)(64 - n));
    buf[64] = '\0';
}

typedef int (*op_fn)(kv_store *, long, char *);

static int do_get(kv_store *s, long i, char *scratch)
{
    char key[32], out[MIXED_MAX];
    size_t len;
    (void)scratch;
    return kv_get(s, key, key_of(key, i), out, sizeof out, &len, NULL);
}

static int do_set(kv_store *s, long i, char *value)
{
    char key[32];
    return kv_set(s, key, key_of(key, i), value, 64);
}

static int do_set_ttl(kv_store *s, long i, char *value)
{
    char key[32];
    return kv_set_ttl(s, key, key_of(key, i), value, 64, TTL_MS);
}

static int do_set_mixed(kv_store *s, long i, char *value)
{
    static char bytes[MIXED_MAX];
    char key[32];
    (void)value;
    return kv_set(s, key, key_of(key, i), bytes, 100 + (size_t)(i * 7919 % (MIXED_MAX - 99)));
}

/* Times op over keys 0..entries-1 in a scattered order; returns how many it ran. */
static long measure(kv_store *s, long entries, double seconds, op_fn op, const char *label, int last)
{
    size_t cap = 1 << 22, n = 0;
    double *lat = malloc(cap * sizeof *lat);
    char value[80];
    value_of(value, 7);
    double start = now_ns(), end = start + seconds * 1e9, t = start;
    long i = 0, ops = 0;
    while (t < end && n < cap) {
        for (int b = 0; b < BATCH; b++, i++)
            if (op(s, (i * 7919) % entries, value)) {
                fprintf(stderr, "bench_c: %s failed\n", label);
                exit(1);
            }
        double t2 = now_ns();
        lat[n++] = (t2 - t) / BATCH;
        t = t2;
        ops += BATCH;
    }
    qsort(lat, n, sizeof *lat, cmp_double);
    printf("\"%s\": {\"ops\": %.0f, \"p50\": %.1f, \"p99\": %.1f}%s", label, ops / ((t - start) / 1e9),
           lat[n / 2], lat[(size_t)(n * 0.99)], last ? "" : ", ");
    free(lat);
    return ops;
}

static int hammer(const char *name, long entries, double seconds)
{
    kv_store *s;
    int rc = kv_open(name, 0, NULL, &s);
    if (rc) {
        fprintf(stderr, "bench_c: %s\n", kv_strerror(rc));
        return 1;
    }
    printf("{");
    measure(s, entries, seconds, do_set, "set", 1);
    printf("}\n");
    kv_close(s);
    return 0;
}

static void fill(kv_store *s, long entries, op_fn set)
{
    char value[80];
    for (long i = 0; i < entries; i++) {
        value_of(value, i);
        set(s, i, value);
    }
}

/* One resize of the store to max_entries, timed; then the first call of a handle that had the old
 * segment open, which follows (opens and maps the new one). Milliseconds and microseconds. */
static int time_resize(const char *name, kv_store *s, uint32_t max_entries, const char *label, int last)
{
    kv_options o = {max_entries, 0, 0, 0, 0, 0, 0};
    double t0 = now_ns();
    int rc = kv_resize(name, &o);
    double t1 = now_ns();
    char key[32], out[MIXED_MAX];
    size_t len;
    int got = kv_get(s, key, key_of(key, 1), out, sizeof out, &len, NULL);
    double t2 = now_ns();
    kv_store *fresh = NULL; /* a handle's geometry and size stay its first mapping's: ask a new one */
    if (rc || got || kv_open(name, 0, NULL, &fresh) || kv_max_entries(fresh) != max_entries) {
        fprintf(stderr, "bench_c: resize: %s / %s\n", kv_strerror(rc), kv_strerror(got));
        kv_close(fresh);
        return 1;
    }
    printf("\"%s_ms\": %.1f, \"%s_follow_us\": %.1f, \"%s_segment_bytes\": %zu%s", label, (t1 - t0) / 1e6, label,
           (t2 - t1) / 1e3, label, kv_map_size(fresh), last ? "" : ", ");
    kv_close(fresh);
    return 0;
}

static int resize_bench(const char *name, long entries)
{
    kv_options o = {(uint32_t)entries, 0, 0, 0, 0, 0, 0};
    kv_store *s;
    int rc = kv_open(name, KV_CREATE | KV_EXCL, &o, &s);
    if (rc) {
        fprintf(stderr, "bench_c: %s\n", kv_strerror(rc));
        return 1;
    }
    fill(s, entries, do_set);
    printf("{\"resize\": {\"entries\": %ld, ", entries);
    rc = time_resize(name, s, (uint32_t)(2 * entries), "grow", 0) ||
         time_resize(name, s, (uint32_t)entries, "shrink", 1);
    printf("}}\n");
    kv_close(s);
    kv_unlink(name);
    return rc;
}

int main(int argc, char **argv)
{
    const char *mode = argc == 5 ? argv[4] : "";
    if (argc != 4 && !(argc == 5 && (!strcmp(mode, "hammer") || !strcmp(mode, "resize") || !strcmp(mode, "ttl") ||
                                     !strcmp(mode, "lru") || !strcmp(mode, "lru-mixed")))) {
        fprintf(stderr, "usage: bench_c NAME ENTRIES SECONDS [hammer | resize | ttl | lru | lru-mixed]\n");
        return 2;
    }
    long entries = atol(argv[2]);
    double seconds = atof(argv[3]);
    if (!strcmp(mode, "hammer") || !strcmp(mode, "resize"))
        return !strcmp(mode, "hammer") ? hammer(argv[1], entries, seconds) : resize_bench(argv[1], entries);
    int mixed = !strcmp(mode, "lru-mixed"), lru = mixed || !strcmp(mode, "lru");
    op_fn set = !strcmp(mode, "ttl") ? do_set_ttl : mixed ? do_set_mixed : do_set;
    kv_options o = {(uint32_t)(entries < 10 ? 10 : entries), 0, mixed ? MIXED_MAX : 0, 0,
                    mixed ? (uint64_t)entries * MIXED_BYTES : 0, lru ? KV_EVICT_LRU : 0, 0};
    kv_store *s;
    int rc = kv_open(argv[1], KV_CREATE | KV_EXCL, &o, &s);
    if (rc) {
        fprintf(stderr, "bench_c: %s\n", kv_strerror(rc));
        return 1;
    }
    kv_unlink(argv[1]); /* the mapping is all we need; nothing is left behind */
    fill(s, entries, set);
    printf("{");
    measure(s, entries, seconds, do_get, "get", 0);
    uint64_t evicted = kv_evictions_total(s);
    long sets = measure(s, lru ? LRU_KEYS * entries : entries, seconds, set, "set", !lru);
    if (lru)
        printf("\"evicted_per_set\": %.3f", (double)(kv_evictions_total(s) - evicted) / (double)sets);
    printf("}\n");
    kv_close(s);
    return 0;
}
