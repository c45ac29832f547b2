/* test_segment: segments that are not (yet, or any more) stores of this layout. Opening each must
 * give the documented error and never crash; kv_check must report damage to an open store. The
 * files are made by hand with shm_open/ftruncate/pwrite at the offsets the header documents. */
#include "check.h"

#include <pthread.h>
#include <stdint.h>

/* Header offsets, from the layout table in shared_memory_kv.h. */
enum {
    OFF_MAGIC = 0,
    OFF_LAYOUT = 4,
    OFF_READY = 8,
    OFF_HEADER_SIZE = 12,
    OFF_MUTEX_SIZE = 16,
    OFF_MAX_ENTRIES = 20,
    OFF_KEY_MAX = 24,
    OFF_VALUE_MAX = 28,
    OFF_ENTRY_SIZE = 32,
    OFF_INDEX_CELLS = 36,
    OFF_ENTRIES = 40,
    OFF_TOTAL = 48,
    OFF_SEQ = 56,
    OFF_COUNT = 60,
    OFF_FREE_HEAD = 72,
    OFF_HIGH_WATER = 76,
    OFF_RING = 96,
    OFF_RING_CELLS = 104,
    OFF_UNDO_STATE = 192,
};

#define MAGIC 0x564B4D53u

static uint64_t read_field(const char *name, off_t off, size_t width)
{
    uint64_t v = 0;
    int fd = shm_open(name, O_RDONLY, 0);
    if (fd >= 0) {
        if (pread(fd, &v, width, off) != (ssize_t)width)
            v = 0;
        close(fd);
    }
    return v;
}

static int write_field(const char *name, off_t off, size_t width, uint64_t value)
{
    int fd = shm_open(name, O_RDWR, 0);
    if (fd < 0)
        return -1;
    int ok = pwrite(fd, &value, width, off) == (ssize_t)width; /* little-endian: the low bytes */
    close(fd);
    return ok ? 0 : -1;
}

static int resize(const char *name, off_t size)
{
    int fd = shm_open(name, O_RDWR, 0);
    if (fd < 0)
        return -1;
    int rc = ftruncate(fd, size);
    close(fd);
    return rc;
}

/* A valid default store with an entry in it, closed again: only the file is left to tamper with. */
static const char *valid_segment(void)
{
    const char *name = check_shm_name();
    kv_store *s = NULL;
    if (!CHECK_RC(kv_open(name, KV_CREATE | KV_EXCL, NULL, &s), 0))
        return NULL;
    CHECK_RC(check_set_str(s, "key", "value"), 0);
    kv_close(s);
    return name;
}

/* kv_open must fail with want and hand back no handle. */
#define EXPECT_OPEN_FAILS(name, want) expect_open_fails((name), (want), __FILE__, __LINE__)
static int expect_open_fails(const char *name, int want, const char *file, int line)
{
    kv_store *s = (kv_store *)&s;
    int rc = kv_open(name, 0, NULL, &s);
    int ok = check_rc(rc, want, file, line, "kv_open(tampered segment)");
    ok &= check_true(s == NULL, file, line, "no handle on failure");
    if (rc == 0)
        kv_close(s);
    return ok;
}

/* ---- sizes ------------------------------------------------------------------------------------- */

static void truncated_to_half_is_incompatible(void)
{
    const char *name = valid_segment();
    REQUIRE(name);
    off_t total = (off_t)read_field(name, OFF_TOTAL, 8);
    REQUIRE(total > 0);
    REQUIRE(resize(name, total / 2) == 0);
    EXPECT_OPEN_FAILS(name, KV_EINCOMPAT);
}

static void truncated_to_10_bytes_is_incompatible(void)
{
    const char *name = valid_segment();
    REQUIRE(name);
    REQUIRE(resize(name, 10) == 0);
    EXPECT_OPEN_FAILS(name, KV_EINCOMPAT);
}

static void grown_file_is_incompatible(void)
{
    const char *name = valid_segment();
    REQUIRE(name);
    off_t total = (off_t)read_field(name, OFF_TOTAL, 8);
    REQUIRE(resize(name, total + 4096) == 0);
    EXPECT_OPEN_FAILS(name, KV_EINCOMPAT);
}

/* ---- contents ---------------------------------------------------------------------------------- */

static uint64_t prng_state = 0x9e3779b97f4a7c15ull;

static uint64_t next_random(void)
{
    uint64_t z = (prng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A new segment of `size` pseudo-random bytes (fixed seed, so a failure reproduces). */
static const char *garbage_segment(size_t size)
{
    const char *name = check_shm_name();
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (!CHECK(fd >= 0))
        return NULL;
    static unsigned char bytes[65536];
    for (size_t i = 0; i < size; i += 8) {
        uint64_t r = next_random();
        memcpy(bytes + i, &r, size - i < 8 ? size - i : 8);
    }
    int ok = CHECK(pwrite(fd, bytes, size, 0) == (ssize_t)size);
    close(fd);
    return ok ? name : NULL;
}

static void random_garbage_is_incompatible(void)
{
    const char *name = garbage_segment(4096);
    REQUIRE(name);
    /* A zero magic would read as "creator still writing"; the fixed seed gives neither 0 nor MAGIC. */
    uint32_t magic = (uint32_t)read_field(name, OFF_MAGIC, 4);
    REQUIRE(magic != 0 && magic != MAGIC);
    EXPECT_OPEN_FAILS(name, KV_EINCOMPAT);
}

/* Harder: garbage behind a correct magic, layout, ready marker and mutex size, so every geometry
 * field is followed as if it were true. */
static void garbage_behind_a_valid_preamble_is_incompatible(void)
{
    for (int round = 0; round < 20; round++) {
        const char *name = garbage_segment(65536);
        REQUIRE(name);
        CHECK(write_field(name, OFF_MAGIC, 4, MAGIC) == 0);
        CHECK(write_field(name, OFF_LAYOUT, 4, 1) == 0);
        CHECK(write_field(name, OFF_READY, 4, 0x52454459u) == 0);
        CHECK(write_field(name, OFF_MUTEX_SIZE, 4, sizeof(pthread_mutex_t)) == 0);
        EXPECT_OPEN_FAILS(name, KV_EINCOMPAT);
        check_undefer((void *)name); /* one segment at a time */
    }
}

typedef struct tamper {
    const char *field;
    off_t off;
    size_t width;
    int64_t delta; /* added to the field */
} tamper;

/* Each field changed alone must be noticed. The geometry changes are chosen so that the derived sizes
 * no longer agree: key_max 63 -> 64 would still give entry size 352, and a header consistent with
 * itself is indistinguishable from a store really made with those options. */
static const tamper tampers[] = {
    {"magic", OFF_MAGIC, 4, 1},
    {"layout version", OFF_LAYOUT, 4, 1},
    {"mutex size", OFF_MUTEX_SIZE, 4, 8},
    {"header size", OFF_HEADER_SIZE, 4, 64},
    {"max_entries", OFF_MAX_ENTRIES, 4, 1},
    {"key_max", OFF_KEY_MAX, 4, 100},
    {"value_max", OFF_VALUE_MAX, 4, 100},
    {"entry size", OFF_ENTRY_SIZE, 4, 8},
    {"index cells", OFF_INDEX_CELLS, 4, 32},
    {"entries offset", OFF_ENTRIES, 8, 64},
    {"total size", OFF_TOTAL, 8, 64},
    {"total size (smaller)", OFF_TOTAL, 8, -64},
    {"ring offset", OFF_RING, 8, 64},
    {"ring cells", OFF_RING_CELLS, 4, 1},
};

static void changed_header_field_is_incompatible(const tamper *t)
{
    const char *name = valid_segment();
    REQUIRE(name);
    uint64_t v = read_field(name, t->off, t->width);
    REQUIRE(write_field(name, t->off, t->width, v + (uint64_t)t->delta) == 0);
    EXPECT_OPEN_FAILS(name, KV_EINCOMPAT);
}

/* The untouched control: the helpers above do not break a store by themselves. */
static void untampered_segment_opens(void)
{
    const char *name = valid_segment();
    REQUIRE(name);
    uint64_t v = read_field(name, OFF_KEY_MAX, 4);
    CHECK(write_field(name, OFF_KEY_MAX, 4, v) == 0);
    int rc;
    kv_store *s = check_open(name, 0, NULL, &rc);
    REQUIRE_RC(rc, 0);
    CHECK_GET(s, "key", "value");
    CHECK_RC(kv_check(s), 0);
}

/* ---- not ready --------------------------------------------------------------------------------- */

/* The documented wait is "about a second". */
#define EXPECT_NOT_READY_AFTER_A_WAIT(name)                     \
    do {                                                        \
        double t0 = check_now();                                \
        EXPECT_OPEN_FAILS(name, KV_ENOTREADY);                  \
        double waited = check_now() - t0;                       \
        if (!CHECK(waited >= 0.5 && waited <= 3.0))             \
            printf("  (waited %.3f s)\n", waited);              \
    } while (0)

static void zero_length_segment_is_not_ready(void)
{
    const char *name = check_shm_name();
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    REQUIRE(fd >= 0);
    close(fd);
    EXPECT_NOT_READY_AFTER_A_WAIT(name);
}

static void ready_marker_zero_is_not_ready(void)
{
    const char *name = valid_segment();
    REQUIRE(name);
    REQUIRE(write_field(name, OFF_READY, 4, 0) == 0);
    EXPECT_NOT_READY_AFTER_A_WAIT(name);
}

/* ---- KV_CHECK_OWNER ---------------------------------------------------------------------------- */

/* A valid store whose file is then given another owner or mode, as another user could make it. */
static const char *segment_with(uid_t owner, mode_t mode)
{
    const char *name = valid_segment();
    if (!name)
        return NULL;
    int fd = shm_open(name, O_RDWR, 0);
    if (fd < 0)
        return NULL;
    int ok = fchown(fd, owner, (gid_t)-1) == 0 && fchmod(fd, mode) == 0;
    close(fd);
    return ok ? name : NULL;
}

static void expect_check_owner_refuses(const char *name)
{
    kv_store *s = (kv_store *)&s;
    CHECK_RC(kv_open(name, KV_CHECK_OWNER, NULL, &s), KV_EUNTRUSTED);
    CHECK(s == NULL);
    CHECK_RC(kv_open(name, KV_CREATE | KV_CHECK_OWNER, NULL, &s), KV_EUNTRUSTED);
    CHECK(s == NULL);
    /* Without the flag the caller trusts it deliberately, and it opens. */
    int rc;
    s = check_open(name, 0, NULL, &rc);
    CHECK_RC(rc, 0);
    if (s)
        CHECK_GET(s, "key", "value");
}

/* As root (which CI is): a segment made by someone else, here handed to nobody. */
static void foreign_owner_is_untrusted(void)
{
    if (geteuid() != 0) {
        printf("  (skipped: only root can give a segment to another user)\n");
        return;
    }
    const char *name = segment_with(65534, 0600);
    REQUIRE(name);
    expect_check_owner_refuses(name);
}

static void others_writable_is_untrusted(void)
{
    const char *name = segment_with(geteuid(), 0602);
    REQUIRE(name);
    expect_check_owner_refuses(name);
}

/* The caller's own segment passes, group-writable included; so does one the flag creates. */
static void own_segment_is_trusted(void)
{
    const char *name = segment_with(geteuid(), 0660);
    REQUIRE(name);
    int rc;
    kv_store *s = check_open(name, KV_CHECK_OWNER, NULL, &rc);
    CHECK_RC(rc, 0);
    if (s)
        CHECK_GET(s, "key", "value");
    const char *fresh = check_shm_name();
    check_open(fresh, KV_CREATE | KV_EXCL | KV_CHECK_OWNER, NULL, &rc);
    CHECK_RC(rc, 0);
}

/* Asking to create a segment others may write, with the check, is refused before anything exists. */
static void check_owner_refuses_to_create_others_writable(void)
{
    const char *name = check_shm_name();
    kv_options opts = {.mode = 0666};
    kv_store *s = (kv_store *)&s;
    CHECK_RC(kv_open(name, KV_CREATE | KV_CHECK_OWNER, &opts, &s), KV_EINVAL);
    CHECK(s == NULL);
    CHECK_RC(kv_unlink(name), -ENOENT);
}

/* ---- kv_check ---------------------------------------------------------------------------------- */

static uint32_t *field32(kv_store *s, size_t off)
{
    return (uint32_t *)((unsigned char *)kv_base(s) + off);
}

/* kv_check is what the crash tests rely on to see damage: it must see it. Each case breaks one
 * invariant of a healthy store through the mapping. */
static const char *const damages[] = {"entry_hash",  "entry_count", "index_cell",  "odd_seq",
                                      "armed_undo", "free_list",   "value_length"};

static void check_reports_damage(size_t which)
{
    kv_store *s = check_new_store(&(kv_options){8, 8, 8, 0, 0, 0, 0}, NULL);
    REQUIRE(s);
    CHECK_RC(check_set_str(s, "a", "1"), 0);
    CHECK_RC(check_set_str(s, "b", "2"), 0);
    CHECK_RC(check_set_str(s, "c", "3"), 0);
    CHECK_RC(kv_delete(s, "b", 1), 0); /* slot 1 on the free list */
    REQUIRE_RC(kv_check(s), 0);
    CHECK(strcmp(kv_check_detail(s), "") == 0);
    uint32_t hs = *field32(s, OFF_HEADER_SIZE);
    size_t eo = *(uint64_t *)((unsigned char *)kv_base(s) + OFF_ENTRIES);
    switch (which) {
    case 0: *field32(s, eo + 8) ^= 1; break; /* slot 0's stored hash */
    case 1: *field32(s, OFF_COUNT) += 1; break;
    case 2:                                  /* drop a live cell from the index */
        for (uint32_t pos = 0;; pos++)
            if (*field32(s, hs + 4 * pos)) {
                *field32(s, hs + 4 * pos) = 0;
                break;
            }
        break;
    case 3: *field32(s, OFF_SEQ) += 1; break;
    case 4: *field32(s, OFF_UNDO_STATE) = 1; break;
    case 5: *field32(s, OFF_FREE_HEAD) = 0; break; /* slot 1 free but on no list */
    case 6: *field32(s, eo + 4) = 9; break;        /* slot 0's value longer than value_max */
    }
    CHECK_RC(kv_check(s), KV_ECORRUPT);
    CHECK(strlen(kv_check_detail(s)) > 0);
}

/* ---- writers on a damaged segment --------------------------------------------------------------- */

/* A writer follows the free list, the high water mark and the index's probe runs. Where those are
 * damaged it must refuse with KV_ECORRUPT and write nothing, not run out of the mapping or round
 * the index forever (each case was a crash or a hang found by fuzz_open). */
static const char *const writer_damages[] = {"free_head_past_capacity", "free_slot_next_past_capacity",
                                             "high_water_past_capacity", "index_without_empty_cell",
                                             "index_cell_past_capacity"};

static void writers_refuse_damage(size_t which)
{
    kv_store *s = check_new_store(&(kv_options){4, 8, 8, 0, 0, 0, 0}, NULL);
    REQUIRE(s);
    CHECK_RC(check_set_str(s, "a", "1"), 0);
    CHECK_RC(check_set_str(s, "b", "2"), 0);
    CHECK_RC(kv_delete(s, "b", 1), 0); /* slot 1 on the free list */
    uint32_t hs = *field32(s, OFF_HEADER_SIZE), cells = *field32(s, OFF_INDEX_CELLS);
    size_t eo = *(uint64_t *)((unsigned char *)kv_base(s) + OFF_ENTRIES);
    size_t es = *field32(s, OFF_ENTRY_SIZE);
    const char *op = "set";
    switch (which) {
    case 0: *field32(s, OFF_FREE_HEAD) = 1000; break;
    case 1: *field32(s, eo + es + 12) = 1000; break; /* slot 1's next_free */
    case 2: *field32(s, OFF_FREE_HEAD) = 0, *field32(s, OFF_HIGH_WATER) = 1000; break;
    case 3: /* every cell taken: a lookup of a new key finds no empty cell to end on */
        for (uint32_t pos = 0; pos < cells; pos++)
            *field32(s, hs + 4 * pos) = 1;
        break;
    case 4: /* a cell after "a"'s, in its probe run, that points past the entries */
        for (uint32_t pos = 0; pos < cells; pos++)
            if (*field32(s, hs + 4 * pos) == 1) {
                *field32(s, hs + 4 * ((pos + 1) % cells)) = 1000;
                break;
            }
        op = "delete";
        break;
    }
    uint64_t version = kv_version(s);
    int rc = !strcmp(op, "set") ? check_set_str(s, "new", "v") : kv_delete(s, "a", 1);
    CHECK_RC(rc, KV_ECORRUPT);
    CHECK(kv_version(s) == version);
    CHECK_RC(kv_check(s), KV_ECORRUPT);
}

/* A case of a table runs as a test of its own, named after the case. */
static void begin_case(char *buf, size_t cap, const char *test, const char *what)
{
    snprintf(buf, cap, "%s(%s)", test, what);
    check_begin(buf);
}

int main(void)
{
    char name[128];
    RUN(truncated_to_half_is_incompatible);
    RUN(truncated_to_10_bytes_is_incompatible);
    RUN(grown_file_is_incompatible);
    RUN(random_garbage_is_incompatible);
    RUN(garbage_behind_a_valid_preamble_is_incompatible);
    for (size_t i = 0; i < sizeof tampers / sizeof tampers[0]; i++) {
        begin_case(name, sizeof name, "changed_header_field_is_incompatible", tampers[i].field);
        changed_header_field_is_incompatible(&tampers[i]);
        check_end();
    }
    RUN(untampered_segment_opens);
    RUN(zero_length_segment_is_not_ready);
    RUN(ready_marker_zero_is_not_ready);
    RUN(foreign_owner_is_untrusted);
    RUN(others_writable_is_untrusted);
    RUN(own_segment_is_trusted);
    RUN(check_owner_refuses_to_create_others_writable);
    for (size_t i = 0; i < sizeof damages / sizeof damages[0]; i++) {
        begin_case(name, sizeof name, "check_reports_damage", damages[i]);
        check_reports_damage(i);
        check_end();
    }
    for (size_t i = 0; i < sizeof writer_damages / sizeof writer_damages[0]; i++) {
        begin_case(name, sizeof name, "writers_refuse_damage", writer_damages[i]);
        writers_refuse_damage(i);
        check_end();
    }
    return CHECK_FINISH();
}
