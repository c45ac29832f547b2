/* test_resize: kv_resize gives a store a new geometry in place of the old one: every entry, revision,
 * timestamp and ring record carries over, every handle follows on its next call, a resize that
 * cannot hold the data changes nothing, and a resizer killed at any point leaves a usable store. */
#include "check.h"

#include <sys/syscall.h>

#define TOOL       "build/kvtool"
#define FAULT_TOOL "build/kvtool_fault"

static ino_t inode_of(const char *name)
{
    char path[300];
    struct stat st;
    snprintf(path, sizeof path, "/dev/shm%s", name);
    return stat(path, &st) == 0 ? st.st_ino : 0;
}

/* The geometry a fresh open of the name finds (a handle keeps its first mapping's). */
static kv_options geometry_of(const char *name)
{
    kv_store *s;
    kv_options g = {0, 0, 0, 0, 0, 0, 0};
    if (kv_open(name, 0, NULL, &s))
        return g;
    g = (kv_options){kv_max_entries(s), kv_key_max(s), kv_value_max(s), 0, kv_memory_bytes(s), 0, 0};
    kv_close(s);
    return g;
}
static int temp_exists(const char *name)
{
    char path[300];
    snprintf(path, sizeof path, "/dev/shm%s.resize", name);
    return access(path, F_OK) == 0;
}

/* Entries a..e, then b deleted (a hole in the slots) and a updated. */
static void fill(kv_store *s)
{
    CHECK_RC(check_set_str(s, "a", "1"), 0);
    CHECK_RC(check_set_str(s, "b", "2"), 0);
    CHECK_RC(check_set_str(s, "c", "3"), 0);
    CHECK_RC(check_set_str(s, "d", "4"), 0);
    CHECK_RC(kv_delete(s, "b", 1), 0);
    CHECK_RC(check_set_str(s, "a", "one"), 0);
}

typedef struct seen {
    char value[64];
    size_t len;
    int64_t ts;
    uint64_t rev;
} seen;

static seen get_full(kv_store *s, const char *key)
{
    seen e = {{0}, 0, 0, 0};
    CHECK_RC(kv_get_rev(s, key, strlen(key), e.value, sizeof e.value, &e.len, &e.ts, &e.rev), 0);
    return e;
}

static void growing_keeps_everything_and_every_handle_follows(void)
{
    const char *name;
    kv_options small = {4, 8, 16, 0, 0, 0, 0};
    kv_store *s = check_new_store(&small, &name);
    REQUIRE(s);
    fill(s);
    int rc;
    kv_store *other = check_open(name, 0, NULL, &rc);
    REQUIRE(other);
    seen a = get_full(s, "a"), d = get_full(s, "d");
    uint64_t version = kv_version(s);
    ino_t before = inode_of(name);
    CHECK_RC(check_set_str(s, "e", "5"), 0);
    CHECK_RC(check_set_str(s, "f", "6"), KV_EFULL);
    version++;

    kv_options big = {64, 32, 100, 0, 0, 0, 0};
    CHECK_RC(kv_resize(name, &big), 0);
    CHECK(inode_of(name) != before);
    CHECK(!temp_exists(name));
    /* Both handles follow on their next call: entries, version, ring. Their geometry accessors
     * stay on the mapping they opened (as kv_base does); a fresh open sees the new one. */
    CHECK_EQ(kv_max_entries(s), 4);
    CHECK_EQ(geometry_of(name).max_entries, 64);
    CHECK_EQ(kv_version(other), version);
    CHECK_EQ(kv_count(s), 4);
    seen a2 = get_full(other, "a"), d2 = get_full(s, "d");
    CHECK_MEM(a2.value, a2.len, "one", 3);
    CHECK_EQ(a2.rev, a.rev);
    CHECK_EQ(a2.ts, a.ts);
    CHECK_EQ(d2.rev, d.rev);
    CHECK_GET(s, "b", NULL);
    CHECK_CHANGE(other, version, KV_CHANGE_SET, "e", "5");
    CHECK_CHANGE(s, 5, KV_CHANGE_DELETE, "b", "");
    /* The new room is usable, from either handle, and writes continue the version. */
    CHECK_RC(check_set_str(s, "f", "a value longer than sixteen bytes"), 0);
    CHECK_EQ(kv_version(other), version + 1);
    CHECK_GET(other, "f", "a value longer than sixteen bytes");
    /* So does an increment, whichever handle makes it. */
    int64_t counted = 0;
    CHECK_RC(kv_incr(other, "n", 1, 41, &counted), 0);
    CHECK_RC(kv_incr(s, "n", 1, 1, &counted), 0);
    CHECK_EQ(counted, 42);
    CHECK_EQ(kv_version(s), version + 3);
    CHECK_RC(kv_check(other), 0);
    /* A fresh open finds the new segment. */
    kv_store *fresh = check_open(name, 0, NULL, &rc);
    REQUIRE(fresh);
    CHECK_EQ(kv_max_entries(fresh), 64);
    CHECK_EQ(kv_key_max(fresh), 32);
    CHECK_EQ(kv_value_max(fresh), 100);
    CHECK_GET(fresh, "f", "a value longer than sixteen bytes");
}

static void shrinking_to_just_fit_packs_the_slots(void)
{
    const char *name;
    kv_options opts = {16, 8, 16, 0, 0, 0, 0};
    kv_store *s = check_new_store(&opts, &name);
    REQUIRE(s);
    fill(s); /* a, c, d live; slot 1 free */
    uint64_t version = kv_version(s);
    kv_options fit = {3, 1, 3, 0, 0, 0, 0};
    CHECK_RC(kv_resize(name, &fit), 0);
    CHECK_EQ(geometry_of(name).max_entries, 3);
    CHECK_EQ(kv_count(s), 3);
    CHECK_EQ(kv_version(s), version);
    CHECK_GET(s, "a", "one");
    CHECK_GET(s, "c", "3");
    CHECK_GET(s, "d", "4");
    CHECK_RC(kv_check(s), 0);
    CHECK_RC(check_set_str(s, "e", "5"), KV_EFULL);
    CHECK_RC(kv_delete(s, "c", 1), 0);
    CHECK_RC(check_set_str(s, "e", "5"), 0);
    CHECK_RC(kv_check(s), 0);
    /* The ring keeps what the new limits hold: "one" fits in 3 bytes. */
    CHECK_CHANGE(s, version, KV_CHANGE_SET, "a", "one");
}

/* Too many entries, a key or a value too long: the code says which, and nothing changes. */
static void a_resize_that_cannot_fit_changes_nothing(void)
{
    const char *name;
    kv_store *s = check_new_store(NULL, &name);
    REQUIRE(s);
    CHECK_RC(check_set_str(s, "key-of-ten", "value"), 0);
    CHECK_RC(check_set_str(s, "k", "a longer value"), 0);
    CHECK_RC(check_set_str(s, "j", "v"), 0);
    ino_t before = inode_of(name);
    uint64_t version = kv_version(s);
    kv_options fewer = {2, 0, 0, 0, 0, 0, 0}, shorter_keys = {0, 9, 0, 0, 0, 0, 0};
    kv_options shorter_values = {0, 0, 13, 0, 0, 0, 0};
    kv_options bad = {KV_LIMIT_MAX_ENTRIES + 1, 0, 0, 0, 0, 0, 0};
    CHECK_RC(kv_resize(name, &fewer), KV_EFULL);
    CHECK_RC(kv_resize(name, &shorter_keys), KV_EKEYLEN);
    CHECK_RC(kv_resize(name, &shorter_values), KV_EVALLEN);
    CHECK_RC(kv_resize(name, &bad), KV_EINVAL);
    CHECK_RC(kv_resize("/shmkv-ctest-no-such-store", NULL), -ENOENT);
    CHECK_RC(kv_resize("bad", NULL), KV_EINVAL);
    CHECK_EQ(inode_of(name), before);
    CHECK(!temp_exists(name));
    CHECK_EQ(geometry_of(name).max_entries, KV_DEFAULT_MAX_ENTRIES);
    CHECK_EQ(kv_version(s), version);
    CHECK_RC(check_set_str(s, "more", "x"), 0);
    CHECK_RC(kv_check(s), 0);
    /* NULL options: the same geometry, a new segment (a compaction). */
    CHECK_RC(kv_resize(name, NULL), 0);
    CHECK(inode_of(name) != before);
    CHECK_EQ(geometry_of(name).max_entries, KV_DEFAULT_MAX_ENTRIES);
    CHECK_GET(s, "more", "x");
}

/* The read-only flag of a replica is kept; only kv_apply writes the resized segment. */
static void a_replica_stays_read_only(void)
{
    const char *name;
    kv_store *s = check_new_store(NULL, &name);
    REQUIRE(s);
    CHECK_RC(kv_set_readonly(s, 1), 0);
    CHECK_RC(kv_apply(s, KV_CHANGE_SET, "a", 1, "1", 1, 7, 100, 0), 0);
    kv_options grow = {20, 0, 0, 0, 0, 0, 0};
    CHECK_RC(kv_resize(name, &grow), 0);
    CHECK_EQ(kv_readonly(s), 1);
    CHECK_RC(check_set_str(s, "b", "2"), KV_EREADONLY);
    CHECK_RC(kv_apply(s, KV_CHANGE_SET, "b", 1, "2", 1, 8, 200, 0), 0);
    CHECK_EQ(kv_version(s), 8);
    CHECK_RC(kv_check(s), 0);
}

/* A resizer killed mid-copy (20) or with its copy ready but not renamed (21) leaves the old store,
 * whose next locker removes the copy; killed after the rename (22), the copy is the store and the
 * next locker of the old one marks it superseded, so every handle follows. Either way: no loss. */
static void resizer_killed_at(int point)
{
    const char *name;
    kv_options opts = {8, 8, 16, 0, 0, 0, 0};
    kv_store *s = check_new_store(&opts, &name);
    REQUIRE(s);
    fill(s);
    ino_t before = inode_of(name);
    uint64_t version = kv_version(s);
    char env[32];
    snprintf(env, sizeof env, "KV_FAULT_POINT=%d", point);
    char *argv[] = {FAULT_TOOL, (char *)name, "resize", "32", "0", "0", NULL};
    pid_t pid = check_spawn(argv, env, NULL);
    REQUIRE(pid > 0);
    int status = check_wait(pid);
    CHECK(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    /* The next write recovers (the dead resizer held the lock) and lands in the store in force. */
    CHECK_RC(check_set_str(s, "after", "x"), 0);
    CHECK(!temp_exists(name));
    CHECK_EQ(geometry_of(name).max_entries, point == 22 ? 32 : 8);
    CHECK(point == 22 ? inode_of(name) != before : inode_of(name) == before);
    CHECK_EQ(kv_version(s), version + 1);
    CHECK_GET(s, "a", "one");
    CHECK_GET(s, "d", "4");
    int rc;
    kv_store *fresh = check_open(name, 0, NULL, &rc);
    REQUIRE(fresh);
    CHECK_GET(fresh, "after", "x");
    CHECK_RC(kv_check(fresh), 0);
    CHECK_RC(kv_check(s), 0);
    /* And it can be resized again. */
    kv_options again = {40, 0, 0, 0, 0, 0, 0};
    CHECK_RC(kv_resize(name, &again), 0);
    CHECK_EQ(geometry_of(name).max_entries, 40);
    CHECK_GET(s, "after", "x");
}

/* Whether process `pid` is blocked in futex(2): waiting for the write lock. */
static int waiting_on_lock(pid_t pid)
{
    char path[64], text[64] = {0};
    snprintf(path, sizeof path, "/proc/%d/syscall", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t got = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    return got > 0 && atol(text) == SYS_futex;
}

/* A writer that checked the handle before the resize's mark, then waited for the lock the resizer
 * held, must not write into the old segment: it finds the mark under the lock and follows. */
static void a_writer_waiting_for_the_resizer_follows_it(void)
{
    const char *name;
    kv_store *s = check_new_store(NULL, &name);
    REQUIRE(s);
    CHECK_RC(check_set_str(s, "a", "1"), 0);
    char *rargv[] = {FAULT_TOOL, (char *)name, "resize", "20", "0", "0", NULL};
    pid_t resizer = check_spawn(rargv, "KV_FAULT_POINT=21:stop", NULL);
    REQUIRE(resizer > 0);
    int status;
    REQUIRE(waitpid(resizer, &status, WUNTRACED) == resizer && WIFSTOPPED(status));
    char *wargv[] = {TOOL, (char *)name, "set", "late", "write", NULL};
    pid_t writer = check_spawn(wargv, NULL, NULL);
    REQUIRE(writer > 0);
    double deadline = check_now() + 10;
    while (!waiting_on_lock(writer) && check_now() < deadline)
        sched_yield();
    CHECK(waiting_on_lock(writer));
    kill(resizer, SIGCONT);
    status = check_wait(resizer);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    status = check_wait(writer);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    int rc;
    kv_store *fresh = check_open(name, 0, NULL, &rc);
    REQUIRE(fresh);
    CHECK_EQ(kv_max_entries(fresh), 20);
    CHECK_GET(fresh, "late", "write");
    CHECK_EQ(kv_version(fresh), 2);
}

/* A superseded mark on a segment its name still leads to was not made by a resize: every call says
 * the store is damaged, and kv_check names it; with the mark gone, the store works again. */
static void a_damaged_superseded_mark_is_corruption(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    CHECK_RC(check_set_str(s, "a", "1"), 0);
    uint32_t *flags = (uint32_t *)((unsigned char *)kv_base(s) + 120);
    *flags |= 2;
    CHECK_RC(check_set_str(s, "b", "2"), KV_ECORRUPT);
    CHECK_RC(kv_check(s), KV_ECORRUPT);
    CHECK(strstr(kv_check_detail(s), "superseded") != NULL);
    *flags &= ~2u;
    CHECK_RC(check_set_str(s, "b", "2"), 0);
    CHECK_GET(s, "a", "1");
    CHECK_RC(kv_check(s), 0);
}

/* A store whose entries are damaged is refused before anything is copied out of its bounds. */
static void a_damaged_store_is_not_copied(void)
{
    const char *name;
    kv_store *s = check_new_store(NULL, &name);
    REQUIRE(s);
    CHECK_RC(check_set_str(s, "a", "1"), 0);
    unsigned char *base = kv_base(s);
    uint64_t entries_off;
    memcpy(&entries_off, base + 40, sizeof entries_off);
    uint32_t *key_len = (uint32_t *)(base + entries_off); /* slot 0's key length */
    *key_len = 4000;
    ino_t before = inode_of(name);
    kv_options longer_keys = {0, 4096, 0, 0, 0, 0, 0};
    CHECK_RC(kv_resize(name, &longer_keys), KV_ECORRUPT);
    CHECK_EQ(inode_of(name), before);
    CHECK(!temp_exists(name));
    *key_len = 1;
    CHECK_RC(kv_check(s), 0);
}

/* ---- writers and readers running through resizes ---------------------------------------------- */

#define WRITERS 2
#define NKEYS   300
#define WRITES  60000

typedef struct child {
    pid_t pid;
    int out;
    char text[128];
} child;

static int finish(child *c)
{
    check_read_all(c->out, c->text, sizeof c->text);
    int status = check_wait(c->pid);
    return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Wait (no sleep) until the store has at least `count` entries or `deadline` passes. */
static int wait_count(kv_store *s, uint32_t count, double deadline)
{
    while (kv_count(s) < count)
        if (check_now() > deadline)
            return 0;
    return 1;
}

static void writers_and_readers_run_through_grow_and_shrink(void)
{
    const char *name;
    uint32_t total = WRITERS * NKEYS;
    kv_options opts = {total, 16, 48, 0, 0, 0, 0};
    kv_store *s = check_new_store(&opts, &name);
    REQUIRE(s);
    ino_t first = inode_of(name);
    child w[WRITERS], r;
    char prefix[WRITERS][16], nkeys[16], writes[16];
    snprintf(nkeys, sizeof nkeys, "%d", NKEYS);
    snprintf(writes, sizeof writes, "%d", WRITES);
    for (int i = 0; i < WRITERS; i++) {
        snprintf(prefix[i], sizeof prefix[i], "w%d", i);
        char *argv[] = {TOOL, (char *)name, "sequence", prefix[i], nkeys, writes, NULL};
        REQUIRE((w[i].pid = check_spawn(argv, NULL, &w[i].out)) > 0);
    }
    char *rargv[] = {TOOL, (char *)name, "monotone", "w0", nkeys, "400000", NULL};
    REQUIRE((r.pid = check_spawn(rargv, NULL, &r.out)) > 0);
    double deadline = check_now() + 20;
    /* Grow once the writers are under way, then shrink to exactly what they will fill. */
    CHECK(wait_count(s, total / 4, deadline));
    kv_options grow = {4 * total, 0, 0, 0, 0, 0, 0}, fit = {total, 0, 0, 0, 0, 0, 0};
    CHECK_RC(kv_resize(name, &grow), 0);
    CHECK(wait_count(s, total / 2, deadline));
    CHECK_RC(kv_resize(name, &fit), 0);
    for (int i = 0; i < WRITERS; i++) {
        CHECK(finish(&w[i]));
        CHECK_EQ(atol(w[i].text), WRITES); /* every write acknowledged, none refused */
    }
    CHECK(finish(&r));
    long reads = 0, torn = -1, backwards = -1;
    sscanf(r.text, "%ld %ld %ld", &reads, &torn, &backwards);
    CHECK_EQ(torn, 0);
    CHECK_EQ(backwards, 0);
    CHECK(inode_of(name) != first);
    CHECK_EQ(geometry_of(name).max_entries, total);
    CHECK_EQ(kv_count(s), total);
    CHECK_EQ(kv_version(s), (uint64_t)WRITERS * WRITES);
    CHECK_RC(kv_check(s), 0);
    /* Every key holds its last write: no acknowledged write was lost to the old segment. */
    char key[32], want[64];
    for (int i = 0; i < WRITERS; i++)
        for (int k = 0; k < NKEYS; k++) {
            snprintf(key, sizeof key, "w%d-%d", i, k);
            long last = WRITES - NKEYS + k;
            char body[48];
            snprintf(body, sizeof body, "w%d:%ld", i, last);
            snprintf(want, sizeof want, "%s#%08x", body, kv_hash(body, strlen(body)));
            CHECK_GET(s, key, want);
        }
}

/* The chunk bytes an entry takes in a heap: 8 of head, key and value, rounded up to 16, 32 at least
 * (the header's kv_options.memory_bytes). */
static uint64_t chunk_of(size_t key_len, size_t value_len)
{
    uint64_t size = (8 + key_len + value_len + 15) / 16 * 16;
    return size < 32 ? 32 : size;
}


/* memory_bytes: a resize moves every value into the new heap. Grown, it takes a value the old heap
 * could not; shrunk to the entries' chunks exactly, it holds them and nothing more; one byte less
 * (16: the heap's unit) is KV_EFULL with nothing changed. A store made without memory_bytes gets a
 * heap when given one. */
static void memory_grows_shrinks_to_just_fit_and_refuses_what_does_not_fit(void)
{
    static const size_t sizes[] = {0, 9, 100, 1000, 3000, 777};
    const char *name;
    kv_options opts = {32, 8, 4000, 0, 8192, 0, 0};
    kv_store *s = check_new_store(&opts, &name);
    REQUIRE(s);
    uint64_t need = 0;
    char key[8];
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        snprintf(key, sizeof key, "v%zu", i);
        CHECK_RC(check_set_filled(s, key, sizes[i], (char)('a' + i)), 0);
        need += chunk_of(strlen(key), sizes[i]);
    }
    CHECK_RC(check_set_filled(s, "big", 20000, 'z'), KV_EVALLEN);
    kv_options grow = {0, 0, 25000, 0, 64 * 1024, 0, 0};
    CHECK_RC(kv_resize(name, &grow), 0);
    CHECK_EQ(geometry_of(name).memory_bytes, 64 * 1024);
    CHECK_RC(check_set_filled(s, "big", 20000, 'z'), 0); /* s follows, into a heap that holds it */
    CHECK_FILLED(s, "big", 20000, 'z');
    CHECK_RC(kv_delete(s, "big", 3), 0);
    CHECK_RC(kv_check(s), 0);
    ino_t before = inode_of(name);
    kv_options too_small = {0, 0, 0, 0, need - 16, 0, 0};
    CHECK_RC(kv_resize(name, &too_small), KV_EFULL);
    CHECK_EQ(inode_of(name), before);
    CHECK(!temp_exists(name));
    CHECK_EQ(geometry_of(name).memory_bytes, 64 * 1024);
    kv_options just_fit = {0, 0, 0, 0, need, 0, 0};
    CHECK_RC(kv_resize(name, &just_fit), 0);
    CHECK_EQ(geometry_of(name).memory_bytes, need);
    CHECK_RC(kv_check(s), 0);
    CHECK_EQ(kv_memory_used(s), need);
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        snprintf(key, sizeof key, "v%zu", i);
        CHECK_FILLED(s, key, sizes[i], (char)('a' + i));
    }
    CHECK_RC(check_set_str(s, "one", "more"), KV_EFULL);
    /* 16 bytes over: too few for a free chunk, they join the last entry's chunk. */
    kv_options snug = {0, 0, 0, 0, need + 16, 0, 0};
    CHECK_RC(kv_resize(name, &snug), 0);
    CHECK_RC(kv_check(s), 0);
    CHECK_EQ(kv_memory_used(s), need + 16);
    CHECK_FILLED(s, "v5", 777, 'f');
    /* A store without memory_bytes, given some: its values move from fixed-size chunks. */
    const char *plain;
    kv_store *p = check_new_store(NULL, &plain);
    REQUIRE(p);
    CHECK_RC(check_set_str(p, "k", "v"), 0);
    uint64_t fixed = geometry_of(plain).memory_bytes;
    kv_options heap = {0, 0, 5000, 0, 4096, 0, 0};
    CHECK_RC(kv_resize(plain, &heap), 0);
    CHECK_EQ(geometry_of(plain).memory_bytes, 4096);
    CHECK(fixed != 4096);
    CHECK_GET(p, "k", "v");
    CHECK_RC(check_set_filled(p, "long", 3000, 'l'), 0);
    CHECK_RC(kv_check(p), 0);
}

int main(void)
{
    if (access(FAULT_TOOL, X_OK) != 0 || access(TOOL, X_OK) != 0) {
        check_begin("tools_built");
        CHECK(access(FAULT_TOOL, X_OK) == 0); /* make tools; run from the repository root */
        check_end();
        return CHECK_FINISH();
    }
    RUN(growing_keeps_everything_and_every_handle_follows);
    RUN(shrinking_to_just_fit_packs_the_slots);
    RUN(a_resize_that_cannot_fit_changes_nothing);
    RUN(a_replica_stays_read_only);
    RUN(a_writer_waiting_for_the_resizer_follows_it);
    RUN(a_damaged_superseded_mark_is_corruption);
    RUN(a_damaged_store_is_not_copied);
    RUN(memory_grows_shrinks_to_just_fit_and_refuses_what_does_not_fit);
    char name[64];
    for (int point = 20; point <= 22; point++) {
        snprintf(name, sizeof name, "resizer_killed_at(point %d)", point);
        check_begin(name);
        resizer_killed_at(point);
        check_end();
    }
    RUN(writers_and_readers_run_through_grow_and_shrink);
    return CHECK_FINISH();
}
