/* test_heap: a store with memory_bytes keeps keys and values in a heap. It must use its memory well
 * (issue 17's efficiency figures), let memory freed by one size serve another (compaction), answer
 * KV_EFULL only when there is no room and change nothing then, keep its file within bounds, let
 * kv_check name a damaged heap, survive a writer killed inside the allocator or a compaction, and
 * never let a lock-free reader return a chunk freed and reused under it. */
#define _GNU_SOURCE
#include "check.h"
#include "checksum.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

#define FAULT_TOOL "build/kvtool_fault"
#define HEAP_OFF   224 /* documented header fields */
#define COMPACTIONS 272
#define FREE_HEADS 280

static uint64_t rd64(const kv_store *s, uint64_t off)
{
    uint64_t v;
    memcpy(&v, (const char *)kv_base(s) + off, 8);
    return v;
}

static void wr64(kv_store *s, uint64_t off, uint64_t v) { memcpy((char *)kv_base(s) + off, &v, 8); }

/* xorshift: the same sizes every run. */
static uint64_t rng = 88172645463325252ull;
static uint64_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A size from lo to hi bytes, log-uniform. */
static size_t log_uniform(size_t lo, size_t hi)
{
    double u = (double)(next_random() % 1000000) / 1000000.0;
    return (size_t)(lo * pow((double)hi / lo, u));
}

typedef struct filled {
    int keys;          /* keys set so far: "k0".."k<keys-1>" (some deleted) */
    char *live;        /* live[i]: key i is in the store */
    size_t *bytes;     /* key + value bytes of key i */
} filled;

static size_t live_bytes(const filled *f)
{
    size_t sum = 0;
    for (int i = 0; i < f->keys; i++)
        sum += f->live[i] ? f->bytes[i] : 0;
    return sum;
}

/* Set new keys with values of lo..hi bytes until KV_EFULL. */
static void fill(kv_store *s, filled *f, size_t lo, size_t hi, char *value)
{
    for (;;) {
        char key[16];
        int n = snprintf(key, sizeof key, "k%d", f->keys);
        size_t len = log_uniform(lo, hi);
        memset(value, 'a' + f->keys % 26, len);
        int rc = kv_set(s, key, (size_t)n, value, len);
        if (rc == KV_EFULL)
            return;
        REQUIRE_RC(rc, 0);
        f->live[f->keys] = 1;
        f->bytes[f->keys++] = (size_t)n + len;
    }
}

/* Issue 17's figures: log-uniform 16 B..16 KiB until full, live bytes >= 70% of memory_bytes; delete a
 * random half and fill with 1..64 KiB, >= 60%. The second fill needs memory freed by small values to
 * take big ones. */
static void memory_is_used_efficiently(void)
{
    const uint64_t memory = 16u << 20;
    kv_store *s = check_new_store(&(kv_options){100000, 16, 65536, 0, memory, 0, 0}, NULL);
    REQUIRE(s);
    filled f = {0, calloc(100000, 1), calloc(100000, sizeof(size_t))};
    char *value = malloc(65536);
    REQUIRE(f.live && f.bytes && value);
    fill(s, &f, 16, 16384, value);
    double first = (double)live_bytes(&f) / memory;
    if (!CHECK(first >= 0.70))
        printf("  (first fill: %.1f%% of memory_bytes live)\n", 100 * first);
    for (int i = 0; i < f.keys; i++) {
        if (next_random() % 2) {
            char key[16];
            int n = snprintf(key, sizeof key, "k%d", i);
            REQUIRE_RC(kv_delete(s, key, (size_t)n), 0);
            f.live[i] = 0;
        }
    }
    fill(s, &f, 1024, 65536, value);
    double second = (double)live_bytes(&f) / memory;
    if (!CHECK(second >= 0.60))
        printf("  (after the shift: %.1f%% of memory_bytes live)\n", 100 * second);
    CHECK(rd64(s, COMPACTIONS) > 0);
    CHECK(kv_memory_used(s) >= live_bytes(&f));
    int rc = kv_check(s);
    if (!CHECK_RC(rc, 0))
        printf("  (kv_check: %s)\n", kv_check_detail(s));
    /* Every live key reads back whole. */
    for (int i = 0; i < f.keys; i++) {
        char key[16];
        int n = snprintf(key, sizeof key, "k%d", i);
        size_t len = 0;
        rc = kv_get(s, key, (size_t)n, value, 65536, &len, NULL);
        if (!CHECK_RC(rc, f.live[i] ? 0 : KV_NOTFOUND))
            break;
        if (f.live[i] && !CHECK(len + (size_t)n == f.bytes[i] && value[len / 2] == 'a' + i % 26))
            break;
    }
    free(value);
    free(f.live);
    free(f.bytes);
}

/* Small values fill the heap, every other one is deleted: a value bigger than any hole, but smaller
 * than the free bytes, still fits (compaction), and a full heap answers KV_EFULL changing nothing. */
static void freed_memory_serves_other_sizes(void)
{
    kv_store *s = check_new_store(&(kv_options){1000, 16, 60000, 0, 65536, 0, 0}, NULL);
    REQUIRE(s);
    char key[16], value[60000];
    memset(value, 'v', sizeof value);
    int n = 0;
    for (;; n++) {
        snprintf(key, sizeof key, "s%d", n);
        int rc = kv_set(s, key, strlen(key), value, 200);
        if (rc == KV_EFULL)
            break;
        REQUIRE_RC(rc, 0);
    }
    CHECK(n > 250);
    for (int i = 0; i < n; i += 2) {
        snprintf(key, sizeof key, "s%d", i);
        REQUIRE_RC(kv_delete(s, key, strlen(key)), 0);
    }
    uint64_t version = kv_version(s), used = kv_memory_used(s);
    /* More than the free bytes: no room, nothing changes. */
    CHECK_RC(kv_set(s, "big", 3, value, 40000), KV_EFULL);
    CHECK_EQ(kv_version(s), version);
    CHECK_EQ(kv_memory_used(s), used);
    CHECK_GET(s, "big", NULL);
    /* Within them, though bigger than any hole: compaction makes room. */
    CHECK_RC(kv_set(s, "big", 3, value, 25000), 0);
    CHECK(rd64(s, COMPACTIONS) >= 1);
    for (int i = 1; i < n; i += 2) {
        snprintf(key, sizeof key, "s%d", i);
        size_t len = 0;
        char got[300];
        CHECK_RC(kv_get(s, key, strlen(key), got, sizeof got, &len, NULL), 0);
        CHECK_EQ(len, 200);
    }
    CHECK_RC(kv_check(s), 0);
    /* An update needs room for its new value while it holds the old: refused when there is none. */
    uint64_t before = kv_version(s);
    CHECK_RC(kv_set(s, "big", 3, value, 50000), KV_EFULL);
    CHECK_EQ(kv_version(s), before);
    size_t len = 0;
    CHECK_RC(kv_get(s, "big", 3, value, sizeof value, &len, NULL), 0);
    CHECK_EQ(len, 25000);
    CHECK_RC(kv_check(s), 0);
}

/* The file stays within memory_bytes + 96 bytes an entry + 1 MiB, whatever the geometry. */
static void file_size_is_bounded(void)
{
    const kv_options geometries[] = {
        {10, 63, 255, 0, 4096, 0, 0},
        {1000, 4096, 1u << 26, 0, 1u << 20, 0, 0},
        {100000, 64, 65536, 0, 64u << 20, 0, 0},
        {1, 1, 1, 0, 4096, 0, 0},
    };
    for (size_t i = 0; i < sizeof geometries / sizeof geometries[0]; i++) {
        const kv_options *o = &geometries[i];
        kv_store *s = check_new_store(o, NULL);
        REQUIRE(s);
        uint64_t bound = o->memory_bytes + 96ull * o->max_entries + (1u << 20);
        if (!CHECK(kv_map_size(s) <= bound))
            printf("  (geometry #%zu: %zu bytes, bound %llu)\n", i, kv_map_size(s), (unsigned long long)bound);
        CHECK_EQ(kv_memory_bytes(s), o->memory_bytes);
    }
}

/* A value above 1 MiB, up to 64 MiB, fits a store with memory_bytes: its change is too big for the
 * ring, whose readers are told to reread the store (KV_EEXPIRED). */
static void big_values_and_the_ring(void)
{
    kv_store *s = check_new_store(&(kv_options){4, 8, 4u << 20, 0, 9u << 20, 0, 0}, NULL);
    REQUIRE(s);
    size_t big = 3u << 20;
    char *value = malloc(big), *got = malloc(big);
    REQUIRE(value && got);
    for (size_t i = 0; i < big; i++)
        value[i] = (char)(i * 7);
    CHECK_RC(kv_set(s, "big", 3, value, big), 0);
    size_t len = 0;
    CHECK_RC(kv_get(s, "big", 3, got, big, &len, NULL), 0);
    CHECK(len == big && memcmp(got, value, big) == 0);
    change c = read_change(s, 1);
    CHECK_RC(c.rc, KV_EEXPIRED);
    CHECK_RC(check_set_str(s, "small", "x"), 0);
    CHECK_CHANGE(s, 2, KV_CHANGE_SET, "small", "x");
    CHECK_RC(kv_check(s), 0);
    free(value);
    free(got);
}

/* kv_check names the heap invariant a damaged byte breaks. */
static void check_names_heap_damage(void)
{
    static const struct {
        const char *detail;
        int what;
    } cases[] = {
        {"heap: memory_used differs from the live entries' chunks", 0},
        {"heap: a free chunk's footer differs from its size", 1},
        {"free lists: a list links to something that is not a free chunk, or twice to one (a cycle)", 2},
        {"heap: a used chunk no live entry owns", 3},
        {"free lists: a free chunk is in no list", 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kv_store *s = check_new_store(&(kv_options){8, 8, 64, 0, 4096, 0, 0}, NULL);
        REQUIRE(s);
        REQUIRE_RC(check_set_str(s, "a", "one"), 0);
        REQUIRE_RC(check_set_str(s, "b", "two"), 0);
        REQUIRE_RC(kv_check(s), 0);
        uint64_t heap = rd64(s, HEAP_OFF), free_at = 64; /* a and b: 32 bytes each */
        uint32_t units;
        memcpy(&units, (char *)kv_base(s) + heap + free_at, 4);
        uint64_t free_size = units * 16ull;
        int k = 63 - __builtin_clzll(free_size) - 5;
        switch (cases[i].what) {
        case 0: wr64(s, 240, rd64(s, 240) + 16); break;
        case 1: wr64(s, heap + free_at + free_size - 8, 48); break;
        case 2: wr64(s, heap + free_at + 8, free_at + 1); break; /* links to itself */
        case 3: ((uint32_t *)((char *)kv_base(s) + heap))[1] ^= 2; break; /* owner: another slot */
        case 4: wr64(s, FREE_HEADS + 8ull * k, 0); break;
        }
        CHECK_RC(kv_check(s), KV_ECORRUPT);
        if (!CHECK(strcmp(kv_check_detail(s), cases[i].detail) == 0))
            printf("  (case %zu: %s)\n", i, kv_check_detail(s));
    }
}

/* Run kvtool_fault with KV_FAULT_POINT=point; its wait status. */
static int run_faulty(const char *name, int point, char **args)
{
    char *argv[8] = {FAULT_TOOL, (char *)name};
    for (int i = 0; args[i] && i < 5; i++)
        argv[2 + i] = args[i];
    return check_run_at_fault(argv, point);
}

/* A writer killed in the middle of a compaction's move (point 11), of a split (9) or of a merge (10),
 * in a fragmented heap of mixed sizes: the next locker repairs, every entry is whole, the write
 * that was interrupted is wholly there (10: it was complete) or wholly absent (9, 11). */
static void killed_inside_the_allocator(void)
{
    static const int points[] = {9, 10, 11};
    for (size_t p = 0; p < sizeof points / sizeof points[0]; p++) {
        const char *name;
        kv_store *s = check_new_store(&(kv_options){200, 16, 30000, 0, 32768, 0, 0}, &name);
        REQUIRE(s);
        char key[16], value[30000];
        int n = 0;
        for (;; n++) {
            snprintf(key, sizeof key, "m%d", n);
            memset(value, 'a' + n % 26, sizeof value);
            int rc = kv_set(s, key, strlen(key), value, 100 + (size_t)(n * 37) % 400);
            if (rc == KV_EFULL)
                break;
            REQUIRE_RC(rc, 0);
        }
        for (int i = 0; i < n; i += 2) {
            snprintf(key, sizeof key, "m%d", i);
            REQUIRE_RC(kv_delete(s, key, strlen(key)), 0);
        }
        uint64_t version = kv_version(s);
        /* 9 and 11: a value bigger than any hole (a compaction, then a split); 10: an update, whose
         * old chunk is merged with a free neighbour when it is freed. */
        memset(value, 'Z', 12000);
        value[12000] = 0;
        char *big[] = {"set", "new", value, NULL};
        char *update[] = {"set", "m1", "updated", NULL};
        int status = run_faulty(name, points[p], points[p] == 10 ? update : big);
        if (!CHECK(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
            printf("  (point %d: status %d)\n", points[p], status);
        CHECK_RC(kv_repair(s), 0);
        int rc = kv_check(s);
        if (!CHECK_RC(rc, 0))
            printf("  (point %d, kv_check: %s)\n", points[p], kv_check_detail(s));
        int complete = points[p] == 10;
        CHECK_EQ(kv_version(s), version + complete);
        if (complete)
            CHECK_GET(s, "m1", "updated");
        else
            CHECK_GET(s, "new", NULL);
        for (int i = complete ? 3 : 1; i < n; i += 2) {
            snprintf(key, sizeof key, "m%d", i);
            size_t len = 0;
            CHECK_RC(kv_get(s, key, strlen(key), value, sizeof value, &len, NULL), 0);
            CHECK(len == 100 + (size_t)(i * 37) % 400 && value[0] == 'a' + i % 26 && value[len - 1] == value[0]);
        }
        /* And the heap works on: the big value fits now. */
        memset(value, 'Z', 12000);
        CHECK_RC(kv_set(s, "new", 3, value, 12000), 0);
        CHECK_RC(kv_check(s), 0);
    }
}

/* A reader and a writer in threads of one process: the writer rewrites keys with checksummed values
 * of mixed sizes in a heap so small that it compacts again and again, so chunks are freed, moved
 * and reused under the reader, which must never return a torn value. */
typedef struct race {
    kv_store *s;
    atomic_int done;
    long reads, torn;
} race;

static void *race_reader(void *arg)
{
    race *r = arg;
    char key[16], value[5000];
    for (long i = 0; !atomic_load(&r->done); i++) {
        snprintf(key, sizeof key, "r%ld", i % 12);
        size_t len = 0;
        if (kv_get(r->s, key, strlen(key), value, sizeof value, &len, NULL) != 0)
            continue;
        r->reads++;
        r->torn += !checksum_ok(value, len);
    }
    return NULL;
}

static void readers_never_see_a_reused_chunk(void)
{
    kv_store *s = check_new_store(&(kv_options){32, 8, 5000, 0, 32768, 0, 0}, NULL);
    REQUIRE(s);
    race r = {s, 0, 0, 0};
    pthread_t reader;
    REQUIRE(pthread_create(&reader, NULL, race_reader, &r) == 0);
    char key[16], body[5000], value[5100];
    long full = 0;
    for (long i = 0; i < 60000; i++) {
        snprintf(key, sizeof key, "r%ld", i % 12);
        size_t len = 16 + (size_t)(next_random() % 3000);
        memset(body, 'a' + i % 26, len);
        body[len] = 0;
        size_t n = checksummed(value, sizeof value, body);
        int rc = kv_set(s, key, strlen(key), value, n);
        full += rc == KV_EFULL;
        if (rc != KV_EFULL && !CHECK_RC(rc, 0))
            break;
    }
    atomic_store(&r.done, 1);
    pthread_join(reader, NULL);
    CHECK(r.reads > 0);
    CHECK_EQ(r.torn, 0);
    CHECK(rd64(s, COMPACTIONS) > 0);
    CHECK_RC(kv_check(s), 0);
}

int main(void)
{
    RUN(memory_is_used_efficiently);
    RUN(freed_memory_serves_other_sizes);
    RUN(file_size_is_bounded);
    RUN(big_values_and_the_ring);
    RUN(check_names_heap_damage);
    if (access(FAULT_TOOL, X_OK) == 0)
        RUN(killed_inside_the_allocator);
    else {
        check_begin("fault_tool_built");
        CHECK(access(FAULT_TOOL, X_OK) == 0); /* make tools; run from the repository root */
        check_end();
    }
    RUN(readers_never_see_a_reused_chunk);
    return CHECK_FINISH();
}
