/* kvtool: a minimal C client of the library, so tests can act as "another process written in C".
 *
 *   kvtool NAME create [MAX_ENTRIES KEY_MAX VALUE_MAX [MEMORY [lru]]]  create (or open) the segment
 *   kvtool NAME set KEY VALUE                             exit 0, or 1 with the error on stderr
 *   kvtool NAME setin KEY                                 set KEY to the bytes on stdin, whatever they
 *                                                         are (a value that is not UTF-8 text)
 *   kvtool NAME get KEY                                   value on stdout; exit 1 when missing
 *   kvtool NAME del KEY
 *   kvtool NAME incr KEY BY [COUNT]                       COUNT (default 1) kv_incr calls adding BY;
 *                                                         prints the value the last one made
 *   kvtool NAME check                                     kv_check; the broken invariant on stderr
 *   kvtool NAME status                                    "version count recoveries" on stdout
 *   kvtool NAME writer ID NKEYS COUNT                     COUNT checksummed sets over NKEYS keys;
 *                                                         prints the number that succeeded
 *   kvtool NAME reader NKEYS COUNT                        COUNT gets, each value's checksum verified;
 *                                                         prints "reads torn", exit 1 if torn > 0
 *   kvtool NAME counter KEY                               sets KEY to checksummed "KEY-1", "KEY-2", ...
 *                                                         until killed: the last number in the store
 *                                                         is how many of its writes were applied
 *   kvtool NAME stamp KEY COUNT GAP_MS                    COUNT sets of KEY, GAP_MS apart, each value the
 *                                                         Unix time in microseconds just before the set
 *   kvtool NAME sequence PREFIX NKEYS COUNT               sets PREFIX-(i % NKEYS) to checksummed "PREFIX:i"
 *                                                         for i = 0..COUNT-1; stops at the first error;
 *                                                         prints the number acknowledged
 *   kvtool NAME monotone PREFIX NKEYS COUNT               COUNT gets over those keys: prints "reads torn
 *                                                         backwards" (a key's i going down); exit 1 if any
 *   kvtool NAME resize MAX_ENTRIES KEY_MAX VALUE_MAX [MEMORY]  kv_resize (0 keeps a field)
 *
 * Checksummed values are BODY "#" HEX8 where HEX8 is kv_hash(BODY) in lower-case hex; the Bun tests
 * verify the same format. Built with -DKV_FAULT_INJECTION it dies where KV_FAULT_POINT says. */
#define _GNU_SOURCE
#include "shared_memory_kv.h"
#include "checksum.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int fail(const char *what, int rc)
{
    fprintf(stderr, "kvtool: %s: %s (%d)\n", what, kv_strerror(rc), rc);
    return rc == KV_NOTFOUND ? 1 : 2;
}


static int run_writer(kv_store *s, long id, long nkeys, long count)
{
    long ok = 0;
    char key[32], body[96], value[128];
    for (long i = 0; i < count; i++) {
        snprintf(key, sizeof key, "k%ld", i % nkeys);
        /* Vary the length so a torn read would mix lengths and bodies. */
        snprintf(body, sizeof body, "w%ld-%ld-%.*s", id, i, (int)(i % 40), "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        size_t len = checksummed(value, sizeof value, body);
        if (kv_set(s, key, strlen(key), value, len) == 0)
            ok++;
    }
    printf("%ld\n", ok);
    return 0;
}

static int run_reader(kv_store *s, long nkeys, long count)
{
    long reads = 0, torn = 0;
    char key[32], value[4096];
    for (long i = 0; i < count; i++) {
        snprintf(key, sizeof key, "k%ld", i % nkeys);
        size_t len;
        if (kv_get(s, key, strlen(key), value, sizeof value, &len, NULL) != 0)
            continue;
        reads++;
        torn += !checksum_ok(value, len);
    }
    printf("%ld %ld\n", reads, torn);
    return torn ? 1 : 0;
}

static int run_counter(kv_store *s, const char *key)
{
    char body[96], value[128];
    for (long n = 1;; n++) {
        snprintf(body, sizeof body, "%s-%ld", key, n);
        size_t len = checksummed(value, sizeof value, body);
        int rc = kv_set(s, key, strlen(key), value, len);
        if (rc)
            return fail("counter", rc);
    }
}

static int run_incr(kv_store *s, const char *key, long long by, long count)
{
    int64_t value = 0;
    for (long i = 0; i < count; i++) {
        int rc = kv_incr(s, key, strlen(key), by, &value);
        if (rc)
            return fail("incr", rc);
    }
    printf("%lld\n", (long long)value);
    return 0;
}

static long long now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static int run_stamp(kv_store *s, const char *key, long count, long gap_ms)
{
    char value[32];
    struct timespec gap = {gap_ms / 1000, (gap_ms % 1000) * 1000000L};
    for (long i = 0; i < count; i++) {
        if (i)
            nanosleep(&gap, NULL);
        int len = snprintf(value, sizeof value, "%lld", now_us());
        int rc = kv_set(s, key, strlen(key), value, (size_t)len);
        if (rc)
            return fail("stamp", rc);
    }
    return 0;
}

/* The value is stdin's bytes as they come: argv cannot carry every byte (a NUL, or a shell that
 * re-encodes), and tests need values that are not text. */
static int run_setin(kv_store *s, const char *key)
{
    static char value[KV_LIMIT_VALUE_MAX + 1];
    size_t len = fread(value, 1, sizeof value, stdin);
    if (len > KV_LIMIT_VALUE_MAX) {
        fprintf(stderr, "kvtool: setin: more than %d bytes on stdin\n", KV_LIMIT_VALUE_MAX);
        return 2;
    }
    int rc = kv_set(s, key, strlen(key), value, len);
    return rc ? fail("setin", rc) : 0;
}

static int run_sequence(kv_store *s, const char *prefix, long nkeys, long count)
{
    char key[64], body[96], value[128];
    long ok = 0;
    int rc = 0;
    for (long i = 0; i < count && !rc; i++) {
        snprintf(key, sizeof key, "%s-%ld", prefix, i % nkeys);
        snprintf(body, sizeof body, "%s:%ld", prefix, i);
        size_t len = checksummed(value, sizeof value, body);
        if (!(rc = kv_set(s, key, strlen(key), value, len)))
            ok++;
    }
    printf("%ld\n", ok);
    return rc ? fail("sequence", rc) : 0;
}

#define MONOTONE_KEYS 4096
static int run_monotone(kv_store *s, const char *prefix, long nkeys, long count)
{
    static long last[MONOTONE_KEYS];
    char key[64], value[256];
    long reads = 0, torn = 0, backwards = 0;
    if (nkeys < 1 || nkeys > MONOTONE_KEYS)
        return fail("monotone", KV_EINVAL);
    for (long j = 0; j < nkeys; j++)
        last[j] = -1;
    for (long i = 0; i < count; i++) {
        long j = i % nkeys;
        snprintf(key, sizeof key, "%s-%ld", prefix, j);
        size_t len;
        if (kv_get(s, key, strlen(key), value, sizeof value - 1, &len, NULL) != 0)
            continue;
        reads++;
        if (!checksum_ok(value, len)) {
            torn++;
            continue;
        }
        value[len] = 0;
        const char *colon = strrchr(value, ':');
        long seen = colon ? atol(colon + 1) : -1;
        backwards += seen < last[j];
        last[j] = seen;
    }
    printf("%ld %ld %ld\n", reads, torn, backwards);
    return torn || backwards ? 1 : 0;
}

static int run(kv_store *s, int argc, char **argv)
{
    const char *cmd = argv[2];
    int rc;
    if (!strcmp(cmd, "create"))
        return 0;
    if (!strcmp(cmd, "set") && argc == 5)
        return (rc = kv_set(s, argv[3], strlen(argv[3]), argv[4], strlen(argv[4]))) ? fail("set", rc) : 0;
    if (!strcmp(cmd, "setin") && argc == 4)
        return run_setin(s, argv[3]);
    if (!strcmp(cmd, "del") && argc == 4)
        return (rc = kv_delete(s, argv[3], strlen(argv[3]))) ? fail("del", rc) : 0;
    if (!strcmp(cmd, "get") && argc == 4) {
        static char value[KV_LIMIT_VALUE_MAX];
        size_t len;
        if ((rc = kv_get(s, argv[3], strlen(argv[3]), value, sizeof value, &len, NULL)))
            return fail("get", rc);
        fwrite(value, 1, len, stdout);
        return 0;
    }
    if (!strcmp(cmd, "check")) {
        if ((rc = kv_check(s)))
            fprintf(stderr, "kvtool: check: %s\n", kv_check_detail(s));
        return rc ? fail("check", rc) : 0;
    }
    if (!strcmp(cmd, "status")) {
        printf("%llu %u %llu\n", (unsigned long long)kv_version(s), kv_count(s),
               (unsigned long long)kv_lock_recoveries(s));
        return 0;
    }
    if (!strcmp(cmd, "incr") && (argc == 5 || argc == 6))
        return run_incr(s, argv[3], atoll(argv[4]), argc == 6 ? atol(argv[5]) : 1);
    if (!strcmp(cmd, "writer") && argc == 6)
        return run_writer(s, atol(argv[3]), atol(argv[4]), atol(argv[5]));
    if (!strcmp(cmd, "counter") && argc == 4)
        return run_counter(s, argv[3]);
    if (!strcmp(cmd, "stamp") && argc == 6)
        return run_stamp(s, argv[3], atol(argv[4]), atol(argv[5]));
    if (!strcmp(cmd, "reader") && argc == 5)
        return run_reader(s, atol(argv[3]), atol(argv[4]));
    if (!strcmp(cmd, "sequence") && argc == 6)
        return run_sequence(s, argv[3], atol(argv[4]), atol(argv[5]));
    if (!strcmp(cmd, "monotone") && argc == 6)
        return run_monotone(s, argv[3], atol(argv[4]), atol(argv[5]));
    if (!strcmp(cmd, "resize") && (argc == 6 || argc == 7)) {
        kv_options o = {(uint32_t)atol(argv[3]), (uint32_t)atol(argv[4]), (uint32_t)atol(argv[5]), 0,
                        argc == 7 ? strtoull(argv[6], NULL, 10) : 0, 0, 0};
        return (rc = kv_resize(argv[1], &o)) ? fail("resize", rc) : 0;
    }
    fprintf(stderr, "kvtool: bad command\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: kvtool NAME COMMAND [ARGS]\n");
        return 2;
    }
    kv_options opts = {0, 0, 0, 0, 0, 0, 0};
    int flags = 0;
    if (!strcmp(argv[2], "create")) {
        flags = KV_CREATE;
        if (argc >= 6 && argc <= 8)
            opts = (kv_options){(uint32_t)atol(argv[3]), (uint32_t)atol(argv[4]), (uint32_t)atol(argv[5]), 0,
                                argc >= 7 ? strtoull(argv[6], NULL, 10) : 0,
                                argc == 8 && !strcmp(argv[7], "lru") ? KV_EVICT_LRU : 0, 0};
    }
    kv_store *s;
    int rc = kv_open(argv[1], flags, &opts, &s);
    if (rc)
        return fail("open", rc);
    rc = run(s, argc, argv);
    fflush(stdout);
    kv_close(s);
    return rc;
}
