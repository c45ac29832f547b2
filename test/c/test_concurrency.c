/* test_concurrency: several processes at once. Three kvtool writers hammer eight keys of a 16-entry
 * store with checksummed values while two kvtool readers, and this process (gets, the change ring,
 * snapshots), read them: no read may ever see a torn value, and no write may be lost.
 *
 * The counts are ten times those first planned (20,000 writes, 200,000 reads each): at the lower
 * counts the processes barely overlap, and a library whose readers ignore the seqlock passed. */
#include "check.h"
#include "checksum.h"

#define TOOL     "build/kvtool"
#define NKEYS    8
#define WRITERS  3
#define READERS  2
#define WRITES   200000
#define READS    2000000


/* Every key starts with a valid value, so every read finds one: a reader's count of successful reads
 * must then equal its count of attempts (kvtool skips failed gets silently). */
static int seed_keys(kv_store *s)
{
    char key[16], body[32], value[64];
    for (int k = 0; k < NKEYS; k++) {
        snprintf(key, sizeof key, "k%d", k);
        snprintf(body, sizeof body, "seed-%d", k);
        size_t len = checksummed(value, sizeof value, body);
        if (!CHECK_RC(kv_set(s, key, strlen(key), value, len), 0))
            return 0;
    }
    return 1;
}

typedef struct child {
    pid_t pid;
    int out;
    int status; /* -1 until reaped */
    char text[256];
} child;

static int start(child *c, char **argv)
{
    c->status = -1;
    c->text[0] = 0;
    c->pid = check_spawn(argv, NULL, &c->out);
    return c->pid > 0;
}

/* Reap the child if it has exited; 1 while it is still running. */
static int running(child *c)
{
    if (c->pid <= 0 || c->status != -1)
        return 0;
    int status;
    pid_t r = waitpid(c->pid, &status, WNOHANG);
    if (r == c->pid || (r < 0 && errno != EINTR))
        c->status = r == c->pid ? status : 0x7f00; /* lost: counts as a failed exit */
    return c->status == -1;
}

/* Collect the child's output and exit status; 1 when it exited 0. */
static int finish(child *c)
{
    if (c->pid <= 0)
        return 0;
    check_read_all(c->out, c->text, sizeof c->text);
    if (c->status == -1)
        c->status = check_wait(c->pid);
    return c->status != -1 && WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0;
}

/* What this process saw while the children ran: every copy must be whole. */
typedef struct observed {
    long gets, torn_gets;
    long changes, torn_changes, expired;
    long snapshots, bad_snapshots;
    uint64_t next_change;
} observed;

static void read_keys(kv_store *s, observed *o)
{
    char key[16], value[300];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "k%d", i % NKEYS);
        size_t len;
        if (kv_get(s, key, strlen(key), value, sizeof value, &len, NULL) != 0)
            continue;
        o->gets++;
        o->torn_gets += !checksum_ok(value, len);
    }
}

/* Follow the change ring from where we left off up to the version now. */
static void follow_changes(kv_store *s, observed *o)
{
    uint64_t v = kv_version(s);
    while (o->next_change <= v) {
        change c = read_change(s, o->next_change);
        if (c.rc == KV_NOTFOUND) /* the newest write is still in progress */
            break;
        if (c.rc == KV_EEXPIRED) { /* fell behind: skip to what the ring holds now */
            o->expired++;
            v = kv_version(s);
            o->next_change = v > KV_RING_CELLS / 2 ? v - KV_RING_CELLS / 2 : 1;
            continue;
        }
        o->changes++;
        o->torn_changes += c.rc != 0 || c.op != KV_CHANGE_SET || c.key_len < 2 || c.key[0] != 'k' ||
                           !checksum_ok(c.value, c.value_len);
        o->next_change++;
    }
}

/* A snapshot is one consistent state: no write half-done in it, every value whole. Read with the
 * header's documented layout. */
static void take_snapshot(kv_store *s, observed *o)
{
    size_t size = kv_map_size(s);
    unsigned char *buf = malloc(size);
    if (!buf || kv_snapshot(s, buf, size) != 0) {
        o->bad_snapshots++;
        free(buf);
        return;
    }
    uint32_t seq, count, undo, max_entries, entry_size, live = 0;
    uint64_t entries, heap_off, heap_size;
    memcpy(&seq, buf + 56, 4);
    memcpy(&count, buf + 60, 4);
    memcpy(&undo, buf + 192, 4);
    memcpy(&max_entries, buf + 20, 4);
    memcpy(&entry_size, buf + 32, 4);
    memcpy(&entries, buf + 40, 8);
    memcpy(&heap_off, buf + 224, 8);
    memcpy(&heap_size, buf + 232, 8);
    int bad = (seq & 1) || undo != 0 || count != NKEYS;
    for (uint32_t slot = 0; slot < max_entries && !bad; slot++) {
        const unsigned char *e = buf + entries + (uint64_t)slot * entry_size;
        uint32_t key_len, value_len;
        uint64_t chunk;
        memcpy(&key_len, e, 4);
        memcpy(&value_len, e + 4, 4);
        memcpy(&chunk, e + 32, 8);
        if (!key_len)
            continue;
        live++;
        /* Key and value follow the chunk's 8-byte head in the heap. */
        bad = chunk + 8 + key_len + value_len > heap_size ||
              !checksum_ok((const char *)buf + heap_off + chunk + 8 + key_len, value_len);
    }
    o->snapshots++;
    o->bad_snapshots += bad || live != NKEYS;
    free(buf);
}

static void writers_and_readers_agree(void)
{
    const char *name;
    kv_store *s = check_new_store(&(kv_options){16, 0, 0, 0, 0, 0, 0}, &name);
    REQUIRE(s);
    REQUIRE(seed_keys(s));
    uint64_t version = kv_version(s);

    child kids[WRITERS + READERS];
    child *writers = kids, *readers = kids + WRITERS;
    char id[WRITERS][16], nkeys[16], writes[16], reads[16];
    snprintf(nkeys, sizeof nkeys, "%d", NKEYS);
    snprintf(writes, sizeof writes, "%d", WRITES);
    snprintf(reads, sizeof reads, "%d", READS);
    for (int w = 0; w < WRITERS; w++) {
        snprintf(id[w], sizeof id[w], "%d", w);
        char *argv[] = {TOOL, (char *)name, "writer", id[w], nkeys, writes, NULL};
        CHECK(start(&writers[w], argv));
    }
    for (int r = 0; r < READERS; r++) {
        char *argv[] = {TOOL, (char *)name, "reader", nkeys, reads, NULL};
        CHECK(start(&readers[r], argv));
    }

    /* Read along (gets, the change ring, snapshots) for as long as any child runs. */
    observed o = {.next_change = version + 1};
    for (int any = 1, round = 0; any; round++) {
        read_keys(s, &o);
        follow_changes(s, &o);
        if (round % 8 == 0)
            take_snapshot(s, &o);
        any = 0;
        for (int k = 0; k < WRITERS + READERS; k++)
            any |= running(&kids[k]);
    }
    follow_changes(s, &o); /* once more, on the final state: the tail of the ring is readable */
    CHECK(o.gets > 0);
    CHECK_EQ(o.torn_gets, 0);
    CHECK(o.changes > 0);
    CHECK_EQ(o.torn_changes, 0);
    CHECK(o.snapshots > 0);
    CHECK_EQ(o.bad_snapshots, 0);

    long succeeded = 0;
    for (int w = 0; w < WRITERS; w++) {
        CHECK(finish(&writers[w]));
        long n = -1;
        CHECK(sscanf(writers[w].text, "%ld", &n) == 1);
        CHECK_EQ(n, WRITES); /* eight keys fit: no set may fail */
        succeeded += n;
    }
    for (int r = 0; r < READERS; r++) {
        int ok = finish(&readers[r]);
        long n = -1, torn = -1;
        CHECK(sscanf(readers[r].text, "%ld %ld", &n, &torn) == 2);
        CHECK_EQ(torn, 0);
        CHECK_EQ(n, READS);
        CHECK(ok);
    }
    CHECK_EQ(kv_version(s), version + (uint64_t)succeeded);
    CHECK_EQ(kv_count(s), NKEYS);
    int rc = kv_check(s);
    if (!CHECK_RC(rc, 0))
        printf("  (kv_check: %s)\n", kv_check_detail(s));
    /* The last value of each key is one a writer wrote, whole. */
    for (int k = 0; k < NKEYS; k++) {
        char key[16], value[300];
        size_t len = 0;
        snprintf(key, sizeof key, "k%d", k);
        CHECK_RC(kv_get(s, key, strlen(key), value, sizeof value, &len, NULL), 0);
        CHECK(checksum_ok(value, len) && value[0] == 'w');
    }
}

int main(void)
{
    if (access(TOOL, X_OK) != 0) {
        check_begin("tool_built");
        CHECK(access(TOOL, X_OK) == 0); /* make tools; run from the repository root */
        check_end();
        return CHECK_FINISH();
    }
    RUN(writers_and_readers_agree);
    return CHECK_FINISH();
}
