/* kvtool: a minimal C client of the library, so tests can act as "another process written in C".
 *
 *   kvtool NAME create [MAX_ENTRIES KEY_MAX VALUE_MAX [MEMORY]]  create (or open) the segment
 *   kvtool NAME set KEY VALUE                             exit 0, or 1 with the error on stderr
 *   kvtool NAME get KEY                                   value on stdout; exit 1 when missing
 *   kvtool NAME del KEY
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

static int run(kv_store *s, int argc, char **argv)
{
    const char *cmd = argv[2];
    int rc;
    if (!strcmp(cmd, "create"))
        return 0;
    if (!strcmp(cmd, "set") && argc == 5)
        return (rc = kv_set(s, argv[3], strlen(argv[3]), argv[4], strlen(argv[4]))) ? fail("set", rc) : 0;
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
    if (!strcmp(cmd, "writer") && argc == 6)
        return run_writer(s, atol(argv[3]), atol(argv[4]), atol(argv[5]));
    if (!strcmp(cmd, "counter") && argc == 4)
        return run_counter(s, argv[3]);
    if (!strcmp(cmd, "stamp") && argc == 6)
        return run_stamp(s, argv[3], atol(argv[4]), atol(argv[5]));
    if (!strcmp(cmd, "reader") && argc == 5)
        return run_reader(s, atol(argv[3]), atol(argv[4]));
    fprintf(stderr, "kvtool: bad command\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: kvtool NAME COMMAND [ARGS]\n");
        return 2;
    }
    kv_options opts = {0, 0, 0, 0, 0};
    int flags = 0;
    if (!strcmp(argv[2], "create")) {
        flags = KV_CREATE;
        if (argc == 6 || argc == 7)
            opts = (kv_options){(uint32_t)atol(argv[3]), (uint32_t)atol(argv[4]), (uint32_t)atol(argv[5]), 0,
                                argc == 7 ? strtoull(argv[6], NULL, 10) : 0};
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
