/* test_store: the public API of one process's view of a store: defaults, limits, arguments, names,
 * flags, options, error strings, the hash and the documented segment layout. */
#include "check.h"

#include <pthread.h>

static char big[KV_LIMIT_VALUE_MAX + 16]; /* scratch for long keys and values */

static const char *repeat(char c, size_t n)
{
    memset(big, c, n);
    big[n] = 0;
    return big;
}

static uint32_t rd32(const kv_store *s, size_t off)
{
    uint32_t v;
    memcpy(&v, (const unsigned char *)kv_base(s) + off, sizeof v);
    return v;
}

static uint64_t rd64(const kv_store *s, size_t off)
{
    uint64_t v;
    memcpy(&v, (const unsigned char *)kv_base(s) + off, sizeof v);
    return v;
}

/* The slot holding key, found through the index as the header documents it (linear probing from
 * the home cell kv_hash & (cells - 1)); UINT32_MAX when absent. */
/* The key bytes of the entry at byte offset e: in its chunk in the heap, after the chunk's head. */
static const char *entry_key(const kv_store *s, uint64_t e)
{
    return (const char *)kv_base(s) + rd64(s, 224) + rd64(s, e + 32) + 8;
}

static uint32_t find_slot(const kv_store *s, const char *key)
{
    uint32_t hs = rd32(s, 12), es = rd32(s, 32), cells = rd32(s, 36);
    uint64_t eo = rd64(s, 40);
    size_t len = strlen(key);
    uint32_t pos = kv_hash(key, len) & (cells - 1);
    for (uint32_t n = 0; n < cells; n++, pos = (pos + 1) & (cells - 1)) {
        uint32_t cell = rd32(s, hs + 4ull * pos);
        if (cell == 0)
            break;
        uint64_t e = eo + (uint64_t)(cell - 1) * es;
        if (rd32(s, e) == len && memcmp(entry_key(s, e), key, len) == 0)
            return cell - 1;
    }
    return UINT32_MAX;
}

static mode_t file_mode(const char *name)
{
    char path[300];
    struct stat st;
    snprintf(path, sizeof path, "/dev/shm%s", name);
    return stat(path, &st) == 0 ? st.st_mode & 07777 : (mode_t)-1;
}

static int segment_exists(const char *name)
{
    int fd = shm_open(name, O_RDONLY, 0);
    if (fd >= 0)
        close(fd);
    return fd >= 0;
}

/* ---- 1. defaults ------------------------------------------------------------------------------- */

static void defaults_from_null_options(void)
{
    /* umask 0 would let a plain shm_open(0666) through: the default must still be 0600. */
    mode_t old = umask(0);
    const char *name;
    kv_store *s = check_new_store(NULL, &name);
    umask(old);
    REQUIRE(s);
    CHECK_EQ(kv_max_entries(s), KV_DEFAULT_MAX_ENTRIES);
    CHECK_EQ(kv_max_entries(s), 10);
    CHECK_EQ(kv_key_max(s), 63);
    CHECK_EQ(kv_value_max(s), 255);
    CHECK_EQ(kv_count(s), 0);
    CHECK_EQ(kv_version(s), 0);
    CHECK_EQ(kv_lock_recoveries(s), 0);
    CHECK_EQ(file_mode(name), 0600);
}

static void set_get_round_trip(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    int64_t before = time(NULL);
    REQUIRE_RC(kv_set(s, "greeting", 8, "hello", 5), 0);
    int64_t after = time(NULL);
    char buf[64];
    size_t len = 0;
    int64_t ts = 0;
    uint64_t rev = 0;
    CHECK_RC(kv_get_rev(s, "greeting", 8, buf, sizeof buf, &len, &ts, &rev), 0);
    CHECK_MEM(buf, len, "hello", 5);
    CHECK(ts >= before - 2 && ts <= after + 2);
    CHECK_EQ(rev, kv_version(s));
    CHECK_EQ(rev, 1);
    /* An update replaces the value (shorter here, so stale bytes would show) and takes a new revision. */
    CHECK_RC(kv_set(s, "greeting", 8, "bye", 3), 0);
    CHECK_RC(kv_get_rev(s, "greeting", 8, buf, sizeof buf, &len, &ts, &rev), 0);
    CHECK_MEM(buf, len, "bye", 3);
    CHECK_EQ(rev, kv_version(s));
    CHECK_EQ(rev, 2);
    /* kv_get is kv_get_rev without the revision. */
    ts = 0;
    CHECK_RC(kv_get(s, "greeting", 8, buf, sizeof buf, &len, &ts), 0);
    CHECK_MEM(buf, len, "bye", 3);
    CHECK(ts >= before - 2 && ts <= time(NULL) + 2);
    /* The out parameters are optional. */
    CHECK_RC(kv_get(s, "greeting", 8, buf, sizeof buf, NULL, NULL), 0);
}

/* A failed call must not move the version: it is how other processes notice writes. */
#define FAILS_WITHOUT_WRITE(call, code)    \
    do {                                   \
        CHECK_RC(call, code);              \
        CHECK_EQ(kv_version(s), v);        \
    } while (0)

static void version_counts_successful_writes_only(void)
{
    kv_store *s = check_new_store(&(kv_options){2, 4, 4, 0, 0, 0, 0}, NULL);
    REQUIRE(s);
    uint64_t v = 0;
    CHECK_EQ(kv_version(s), v);
    CHECK_RC(kv_set(s, "a", 1, "1", 1), 0);
    CHECK_EQ(kv_version(s), ++v);
    CHECK_RC(kv_set(s, "a", 1, "2", 1), 0); /* updates count too */
    CHECK_EQ(kv_version(s), ++v);
    CHECK_RC(kv_set(s, "b", 1, "", 0), 0);
    CHECK_EQ(kv_version(s), ++v);
    CHECK_RC(kv_delete(s, "b", 1), 0);
    CHECK_EQ(kv_version(s), ++v);
    FAILS_WITHOUT_WRITE(kv_set(s, "toolong", 7, "1", 1), KV_EKEYLEN);
    FAILS_WITHOUT_WRITE(kv_set(s, "a", 1, "12345", 5), KV_EVALLEN);
    FAILS_WITHOUT_WRITE(kv_set(s, "", 0, "1", 1), KV_EINVAL);
    FAILS_WITHOUT_WRITE(kv_set(s, "a\0", 2, "1", 1), KV_EINVAL);
    FAILS_WITHOUT_WRITE(kv_delete(s, "b", 1), KV_NOTFOUND);
    FAILS_WITHOUT_WRITE(kv_delete(s, "toolong", 7), KV_EKEYLEN);
    FAILS_WITHOUT_WRITE(kv_delete(s, "", 0), KV_EINVAL);
    CHECK_RC(kv_set(s, "b", 1, "1", 1), 0);
    CHECK_EQ(kv_version(s), ++v);
    FAILS_WITHOUT_WRITE(kv_set(s, "c", 1, "1", 1), KV_EFULL);
    FAILS_WITHOUT_WRITE(kv_set_if(s, "a", 1, "3", 1, 999, NULL), KV_ECONFLICT);
    FAILS_WITHOUT_WRITE(kv_delete_if(s, "a", 1, 999, NULL), KV_ECONFLICT);
    FAILS_WITHOUT_WRITE(kv_check(s), 0); /* a check is not a write either */
}

static void count_tracks_live_entries(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    CHECK_EQ(kv_count(s), 0);
    CHECK_RC(check_set_str(s, "a", "1"), 0);
    CHECK_RC(check_set_str(s, "b", "2"), 0);
    CHECK_EQ(kv_count(s), 2);
    CHECK_RC(check_set_str(s, "a", "3"), 0); /* an update adds nothing */
    CHECK_EQ(kv_count(s), 2);
    CHECK_RC(kv_delete(s, "a", 1), 0);
    CHECK_EQ(kv_count(s), 1);
    CHECK_RC(kv_delete(s, "a", 1), KV_NOTFOUND);
    CHECK_EQ(kv_count(s), 1);
}

/* ---- 2. limits and arguments ------------------------------------------------------------------ */

static void key_length_limit(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    char key[64];
    memcpy(key, repeat('k', 64), 64);
    CHECK_RC(kv_set(s, key, 63, "v", 1), 0);
    CHECK_RC(kv_set(s, key, 64, "v", 1), KV_EKEYLEN);
    char buf[8];
    size_t len = 0;
    CHECK_RC(kv_get(s, key, 63, buf, sizeof buf, &len, NULL), 0);
    CHECK_MEM(buf, len, "v", 1);
    CHECK_RC(kv_get(s, key, 64, buf, sizeof buf, &len, NULL), KV_EKEYLEN);
    CHECK_RC(kv_delete(s, key, 64), KV_EKEYLEN);
    CHECK_RC(kv_delete(s, key, 63), 0);
}

static void value_length_limit(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    static char value[256], buf[300];
    for (size_t i = 0; i < sizeof value; i++)
        value[i] = (char)('a' + i % 26);
    CHECK_RC(kv_set(s, "k", 1, value, 255), 0);
    CHECK_RC(kv_set(s, "k", 1, value, 256), KV_EVALLEN);
    size_t len = 0;
    CHECK_RC(kv_get(s, "k", 1, buf, sizeof buf, &len, NULL), 0);
    CHECK_MEM(buf, len, value, 255); /* the refused write left the old value */
    CHECK_RC(kv_set(s, "new", 3, value, 256), KV_EVALLEN);
    CHECK_RC(kv_get(s, "new", 3, buf, sizeof buf, &len, NULL), KV_NOTFOUND);
}

static void empty_key_and_nul_in_key_rejected(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    char buf[8];
    size_t len;
    CHECK_RC(kv_set(s, "", 0, "v", 1), KV_EINVAL);
    CHECK_RC(kv_get(s, "", 0, buf, sizeof buf, &len, NULL), KV_EINVAL);
    CHECK_RC(kv_delete(s, "", 0), KV_EINVAL);
    CHECK_RC(kv_set(s, "a\0b", 3, "v", 1), KV_EINVAL);
    CHECK_RC(kv_set(s, "\0", 1, "v", 1), KV_EINVAL);
    CHECK_RC(kv_get(s, "a\0b", 3, buf, sizeof buf, &len, NULL), KV_EINVAL);
    CHECK_RC(kv_delete(s, "a\0b", 3), KV_EINVAL);
    CHECK_EQ(kv_count(s), 0);
}

static void null_handle_rejected(void)
{
    char buf[8];
    size_t len;
    CHECK_RC(kv_set(NULL, "k", 1, "v", 1), KV_EINVAL);
    CHECK_RC(kv_set_if(NULL, "k", 1, "v", 1, 0, NULL), KV_EINVAL);
    CHECK_RC(kv_get(NULL, "k", 1, buf, sizeof buf, &len, NULL), KV_EINVAL);
    CHECK_RC(kv_delete(NULL, "k", 1), KV_EINVAL);
    CHECK_RC(kv_check(NULL), KV_EINVAL);
    kv_close(NULL); /* documented no-op */
}

/* A default store (10 entries) holding key0..key9, all set to "v"; NULL when that fails. */
static kv_store *full_default_store(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    char key[16];
    for (int i = 0; s && i < 10; i++) {
        snprintf(key, sizeof key, "key%d", i);
        CHECK_RC(check_set_str(s, key, "v"), 0);
    }
    return s;
}

static void full_store_refuses_new_key_but_updates(void)
{
    kv_store *s = full_default_store();
    REQUIRE(s);
    CHECK_RC(check_set_str(s, "key10", "v"), KV_EFULL);
    CHECK_GET(s, "key10", NULL);
    CHECK_RC(check_set_str(s, "key3", "updated while full"), 0);
    CHECK_GET(s, "key3", "updated while full");
    CHECK_EQ(kv_count(s), 10);
    CHECK_RC(kv_check(s), 0);
}

static void empty_value_round_trips(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    CHECK_RC(kv_set(s, "empty", 5, NULL, 0), 0);
    size_t len = 99;
    CHECK_RC(kv_get(s, "empty", 5, NULL, 0, &len, NULL), 0);
    CHECK_EQ(len, 0);
    char buf[8];
    len = 99;
    CHECK_RC(kv_get(s, "empty", 5, buf, sizeof buf, &len, NULL), 0);
    CHECK_EQ(len, 0);
    /* An empty value replacing a long one must not keep the old length. */
    CHECK_RC(check_set_str(s, "k", "long old value"), 0);
    CHECK_RC(kv_set(s, "k", 1, "", 0), 0);
    CHECK_GET(s, "k", "");
}

static void binary_value_round_trips(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    static const char value[] = {0, 'a', 0, 0, 'b', (char)0xff, 0};
    CHECK_RC(kv_set(s, "bin", 3, value, sizeof value), 0);
    char buf[32];
    size_t len = 0;
    CHECK_RC(kv_get(s, "bin", 3, buf, sizeof buf, &len, NULL), 0);
    CHECK_MEM(buf, len, value, sizeof value);
    /* Every byte value survives. */
    char all[255];
    for (int i = 0; i < 255; i++)
        all[i] = (char)(255 - i);
    CHECK_RC(kv_set(s, "all", 3, all, sizeof all), 0);
    char back[255];
    CHECK_RC(kv_get(s, "all", 3, back, sizeof back, &len, NULL), 0);
    CHECK_MEM(back, len, all, sizeof all);
}

static void small_buffer_reports_needed_size(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    CHECK_RC(check_set_str(s, "k", "hello world"), 0);
    char buf[16];
    memset(buf, 'x', sizeof buf);
    size_t len = 0;
    CHECK_RC(kv_get(s, "k", 1, buf, 5, &len, NULL), KV_EBUFSIZE);
    CHECK_EQ(len, 11);
    CHECK_MEM(buf, 5, "xxxxx", 5); /* nothing copied */
    len = 0;
    CHECK_RC(kv_get(s, "k", 1, NULL, 0, &len, NULL), KV_EBUFSIZE);
    CHECK_EQ(len, 11);
    len = 0;
    CHECK_RC(kv_get(s, "k", 1, buf, 10, &len, NULL), KV_EBUFSIZE);
    CHECK_EQ(len, 11);
    CHECK_RC(kv_get(s, "k", 1, buf, 11, &len, NULL), 0); /* exactly enough */
    CHECK_MEM(buf, len, "hello world", 11);
}

static void delete_of_missing_key_is_notfound(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    CHECK_RC(kv_delete(s, "nope", 4), KV_NOTFOUND);
    CHECK_RC(check_set_str(s, "k", "v"), 0);
    CHECK_RC(kv_delete(s, "k", 1), 0);
    CHECK_RC(kv_delete(s, "k", 1), KV_NOTFOUND);
    CHECK_GET(s, "k", NULL);
}

/* In a full store the only free slot is the one just freed, so a successful insert proves reuse; the
 * documented layout says where to look for it. */
static void delete_then_insert_reuses_the_slot(void)
{
    kv_store *s = full_default_store();
    REQUIRE(s);
    uint32_t es = rd32(s, 32);
    uint64_t eo = rd64(s, 40);
    uint32_t slot = find_slot(s, "key3");
    REQUIRE(slot < 10);
    CHECK_RC(kv_delete(s, "key3", 4), 0);
    CHECK_RC(check_set_str(s, "fresh", "new value"), 0);
    CHECK_EQ(kv_count(s), 10);
    CHECK_EQ(find_slot(s, "fresh"), slot);
    CHECK_EQ(rd32(s, eo + (uint64_t)slot * es), 5);
    CHECK_MEM(entry_key(s, eo + (uint64_t)slot * es), 5, "fresh", 5);
    CHECK_GET(s, "fresh", "new value");
    CHECK_GET(s, "key3", NULL);
    CHECK_RC(kv_check(s), 0);
}

static void conditional_writes(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    uint64_t cur = 99;
    /* expected 0 = create only; on success current_rev is the new revision. */
    CHECK_RC(kv_set_if(s, "k", 1, "one", 3, 0, &cur), 0);
    CHECK_EQ(cur, 1);
    cur = 99;
    CHECK_RC(kv_set_if(s, "k", 1, "two", 3, 0, &cur), KV_ECONFLICT);
    CHECK_EQ(cur, 1); /* on conflict, the revision found */
    CHECK_GET(s, "k", "one");
    /* Matching revision writes; the old one then conflicts. */
    cur = 99;
    CHECK_RC(kv_set_if(s, "k", 1, "two", 3, 1, &cur), 0);
    CHECK_EQ(cur, 2);
    CHECK_GET(s, "k", "two");
    cur = 99;
    CHECK_RC(kv_set_if(s, "k", 1, "three", 5, 1, &cur), KV_ECONFLICT);
    CHECK_EQ(cur, 2);
    CHECK_GET(s, "k", "two");
    /* A non-zero expected revision needs the entry to exist. */
    cur = 99;
    CHECK_RC(kv_set_if(s, "absent", 6, "x", 1, 5, &cur), KV_ECONFLICT);
    CHECK_EQ(cur, 0);
    CHECK_GET(s, "absent", NULL);
    /* KV_ANY_REVISION: unconditional, on a present and on an absent key; reports the new revision. */
    cur = 99;
    CHECK_RC(kv_set_if(s, "k", 1, "any", 3, KV_ANY_REVISION, &cur), 0);
    CHECK_EQ(cur, 3);
    CHECK_GET(s, "k", "any");
    cur = 99;
    CHECK_RC(kv_set_if(s, "k2", 2, "any", 3, KV_ANY_REVISION, &cur), 0);
    CHECK_EQ(cur, 4);
    /* Conditional delete: current_rev is the revision found, also on success. */
    cur = 99;
    CHECK_RC(kv_delete_if(s, "k", 1, 2, &cur), KV_ECONFLICT);
    CHECK_EQ(cur, 3);
    CHECK_GET(s, "k", "any");
    cur = 99;
    CHECK_RC(kv_delete_if(s, "k", 1, 3, &cur), 0);
    CHECK_EQ(cur, 3);
    CHECK_GET(s, "k", NULL);
    cur = 99;
    CHECK_RC(kv_delete_if(s, "k", 1, 3, &cur), KV_NOTFOUND);
    CHECK_EQ(cur, 0);
    cur = 99;
    CHECK_RC(kv_delete_if(s, "k2", 2, KV_ANY_REVISION, &cur), 0);
    CHECK_EQ(cur, 4);
    CHECK_GET(s, "k2", NULL);
    CHECK_EQ(kv_version(s), 6);
}

static void strerror_names_every_code(void)
{
    static const int codes[] = {KV_NOTFOUND, KV_EKEYLEN,   KV_EVALLEN,  KV_EFULL,    KV_EINVAL,
                                KV_EINCOMPAT, KV_EBUFSIZE, KV_ENOTREADY, KV_ECORRUPT, KV_ECONFLICT,
                                KV_EEXPIRED, KV_EUNTRUSTED};
    const size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        const char *msg = kv_strerror(codes[i]);
        CHECK(msg && *msg);
        CHECK(msg && strcmp(msg, "unknown error") != 0);
        CHECK(codes[i] >= KV_ERR_FIRST && codes[i] <= KV_ERR_LAST);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(msg, kv_strerror(codes[j])) != 0);
    }
    CHECK(strcmp(kv_strerror(-ENOENT), strerror(ENOENT)) == 0);
    CHECK(strcmp(kv_strerror(-EACCES), strerror(EACCES)) == 0);
}

/* ---- 3. names and flags ------------------------------------------------------------------------ */

static void bad_names_rejected(void)
{
    char long_name[257];
    long_name[0] = '/';
    memset(long_name + 1, 'n', 255);
    long_name[256] = 0;
    /* Control characters too: a newline or an escape sequence in a file name misleads listings. */
    const char *bad[] = {"noslash", "/", "/a/b", "//", "", long_name, "/a\nb", "/\x1b[31mred",
                         "/tab\t", "/del\x7f", "/\x01"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kv_store *s = (kv_store *)&s; /* must be overwritten with NULL */
        CHECK_RC(kv_open(bad[i], KV_CREATE, NULL, &s), KV_EINVAL);
        CHECK(s == NULL);
        CHECK_RC(kv_unlink(bad[i]), KV_EINVAL);
    }
    CHECK_RC(kv_open(NULL, KV_CREATE, NULL, &(kv_store *){NULL}), KV_EINVAL);
}

/* The longest legal name ("/" and 254 bytes) works: the limit is not off by one. */
static char longest_name[256];

static void longest_name_accepted(void)
{
    int n = snprintf(longest_name, sizeof longest_name, CHECK_NAME_PREFIX "%ld-", (long)getpid());
    memset(longest_name + n, 'x', 255 - (size_t)n);
    longest_name[255] = 0;
    check_defer(check_unlink_name, longest_name);
    int rc;
    kv_store *s = check_open(longest_name, KV_CREATE | KV_EXCL, NULL, &rc);
    CHECK_RC(rc, 0);
    CHECK(s != NULL);
    CHECK_RC(kv_unlink(longest_name), 0);
}

static void open_flags(void)
{
    const char *name = check_shm_name();
    kv_store *s = (kv_store *)&s;
    CHECK_RC(kv_open(name, 0, NULL, &s), -ENOENT);
    CHECK(s == NULL);
    CHECK(!segment_exists(name));
    CHECK_RC(kv_open(name, KV_EXCL, NULL, &s), KV_EINVAL);
    CHECK(!segment_exists(name)); /* KV_EXCL alone must not create */
    CHECK_RC(kv_open(name, 8, NULL, &s), KV_EINVAL); /* unknown flag */
    CHECK_RC(kv_open(name, KV_EXCL | KV_CHECK_OWNER, NULL, &s), KV_EINVAL);
    int rc;
    kv_store *a = check_open(name, KV_CREATE | KV_EXCL, NULL, &rc);
    REQUIRE_RC(rc, 0);
    CHECK_RC(check_set_str(a, "k", "v"), 0);
    s = (kv_store *)&s;
    CHECK_RC(kv_open(name, KV_CREATE | KV_EXCL, NULL, &s), -EEXIST);
    CHECK(s == NULL);
    CHECK_RC(kv_open(name, KV_EXCL, NULL, &s), KV_EINVAL);
    /* Without KV_EXCL an existing store is opened, contents and all. */
    kv_store *b = check_open(name, KV_CREATE, NULL, &rc);
    CHECK_RC(rc, 0);
    kv_store *c = check_open(name, 0, NULL, &rc);
    CHECK_RC(rc, 0);
    if (b)
        CHECK_GET(b, "k", "v");
    if (c)
        CHECK_GET(c, "k", "v");
}

static void unlink_of_missing_is_enoent(void)
{
    const char *name = check_shm_name();
    CHECK_RC(kv_unlink(name), -ENOENT);
    int rc;
    check_open(name, KV_CREATE, NULL, &rc);
    CHECK_RC(rc, 0);
    CHECK_RC(kv_unlink(name), 0);
    CHECK(!segment_exists(name));
    CHECK_RC(kv_unlink(name), -ENOENT);
}

/* Caveat in the header: unlink removes the name only; a later create makes a new, separate store. */
static void unlink_keeps_existing_mappings(void)
{
    const char *name;
    kv_store *a = check_new_store(NULL, &name);
    REQUIRE(a);
    CHECK_RC(check_set_str(a, "k", "old"), 0);
    CHECK_RC(kv_unlink(name), 0);
    CHECK_GET(a, "k", "old");
    CHECK_RC(check_set_str(a, "k2", "still writable"), 0);
    CHECK_GET(a, "k2", "still writable");
    kv_store *s = (kv_store *)&s;
    CHECK_RC(kv_open(name, 0, NULL, &s), -ENOENT);
    int rc;
    kv_store *b = check_open(name, KV_CREATE, NULL, &rc);
    REQUIRE_RC(rc, 0);
    CHECK_EQ(kv_count(b), 0);
    CHECK_GET(b, "k", NULL);
    CHECK_RC(check_set_str(b, "k", "new"), 0);
    CHECK_GET(a, "k", "old");
}

/* ---- 4. options -------------------------------------------------------------------------------- */

static void existing_geometry_wins(void)
{
    const char *name;
    kv_store *a = check_new_store(&(kv_options){20, 8, 8, 0, 0, 0, 0}, &name);
    REQUIRE(a);
    int rc;
    kv_store *b = check_open(name, KV_CREATE, &(kv_options){5, 100, 100, 0644, 0, 0, 0}, &rc);
    REQUIRE_RC(rc, 0);
    CHECK_EQ(kv_max_entries(b), 20);
    CHECK_EQ(kv_key_max(b), 8);
    CHECK_EQ(kv_value_max(b), 8);
    CHECK_EQ(file_mode(name), 0600); /* the mode of an existing segment is not touched either */
    kv_store *c = check_open(name, 0, NULL, &rc);
    REQUIRE_RC(rc, 0);
    CHECK_EQ(kv_max_entries(c), 20);
    CHECK_EQ(kv_key_max(c), 8);
    CHECK_EQ(kv_value_max(c), 8);
    /* All three see one table. */
    CHECK_RC(check_set_str(a, "12345678", "abcdefgh"), 0);
    CHECK_GET(b, "12345678", "abcdefgh");
    CHECK_RC(check_set_str(b, "123456789", "x"), KV_EKEYLEN);
    CHECK_RC(check_set_str(c, "k", "123456789"), KV_EVALLEN);
}

static void invalid_options_rejected_and_nothing_left(void)
{
    const kv_options bad[] = {
        {KV_LIMIT_MAX_ENTRIES + 1, 0, 0, 0, 0, 0, 0},
        {0, KV_LIMIT_KEY_MAX + 1, 0, 0, 0, 0, 0},
        {0, 0, KV_LIMIT_VALUE_MAX + 1, 0, 0, 0, 0},
        {0, 0, 0, 01000, 0, 0, 0},
        {0, 0, 0, 04600, 0, 0, 0}, /* setuid bit */
        {0, 0, KV_LIMIT_VALUE_MAX_MEMORY + 1, 0, 1 << 20, 0, 0},
        {0, 0, 0, 0, KV_LIMIT_MEMORY_MIN - 1, 0, 0},
        {0, 0, 0, 0, KV_LIMIT_MEMORY + 1, 0, 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *name = check_shm_name();
        kv_store *s = (kv_store *)&s;
        if (!CHECK_RC(kv_open(name, KV_CREATE, &bad[i], &s), KV_EINVAL))
            printf("  (bad options #%zu)\n", i);
        CHECK(s == NULL);
        CHECK(!segment_exists(name));
    }
}

/* The limits themselves are accepted (one entry keeps the segment small). */
static void options_at_the_limits_accepted(void)
{
    kv_store *s = check_new_store(&(kv_options){1, KV_LIMIT_KEY_MAX, KV_LIMIT_VALUE_MAX, 0777, 0, 0, 0}, NULL);
    REQUIRE(s);
    CHECK_EQ(kv_key_max(s), KV_LIMIT_KEY_MAX);
    CHECK_EQ(kv_value_max(s), KV_LIMIT_VALUE_MAX);
    static char key[KV_LIMIT_KEY_MAX];
    memset(key, 'k', sizeof key);
    const char *value = repeat('v', KV_LIMIT_VALUE_MAX);
    CHECK_RC(kv_set(s, key, sizeof key, value, KV_LIMIT_VALUE_MAX), 0);
    static char back[KV_LIMIT_VALUE_MAX];
    size_t len = 0;
    CHECK_RC(kv_get(s, key, sizeof key, back, sizeof back, &len, NULL), 0);
    CHECK_MEM(back, len, value, KV_LIMIT_VALUE_MAX);
    CHECK_RC(kv_check(s), 0);
}

static void mode_applied_whatever_the_umask(void)
{
    mode_t old = umask(077);
    const char *name;
    kv_store *s = check_new_store(&(kv_options){0, 0, 0, 0640, 0, 0, 0}, &name);
    const char *name2;
    kv_store *s2 = check_new_store(&(kv_options){0, 0, 0, 0604, 0, 0, 0}, &name2);
    umask(old);
    CHECK(s && s2);
    CHECK_EQ(file_mode(name), 0640);
    CHECK_EQ(file_mode(name2), 0604);
}

/* ---- 6. hash ----------------------------------------------------------------------------------- */

/* Derived independently with a python3 one-off implementing the header's description: 32-bit FNV-1a
 * (basis 2166136261, prime 16777619; it reproduces the published FNV-1a vectors 0x811c9dc5 for "",
 * 0xe40c292c for "a", 0xbf9cf968 for "foobar"), then the murmur3 fmix32 finaliser. The TypeScript
 * tests share these four values. */
static void hash_vectors(void)
{
    CHECK_EQ(kv_hash("", 0), 0xab3e7c0bu);
    CHECK_EQ(kv_hash("a", 1), 0x1a80b1b3u);
    CHECK_EQ(kv_hash("foobar", 6), 0x0c0da6dcu);
    CHECK_EQ(kv_hash("shmkv", 5), 0x15eddf7eu);
    /* Only key_len bytes count. */
    CHECK_EQ(kv_hash("foobarXYZ", 6), 0x0c0da6dcu);
}

/* ---- layout ------------------------------------------------------------------------------------ */

static uint64_t align(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/* Other languages read the segment by the header's table: hold the library to it. */
static void layout_matches_the_documentation(void)
{
    kv_store *s = check_new_store(&(kv_options){10, 63, 255, 0, 0, 0, 0}, NULL);
    REQUIRE(s);
    int64_t now = time(NULL);
    REQUIRE_RC(check_set_str(s, "alpha", "one"), 0);
    CHECK_MEM(kv_base(s), 4, "SMKV", 4);
    CHECK_EQ(rd32(s, 0), 0x564B4D53u);
    CHECK_EQ(rd32(s, 4), 2);
    CHECK_EQ(rd32(s, 8), 0x52454459u);
    uint32_t hs = rd32(s, 12), es = rd32(s, 32), cells = rd32(s, 36);
    CHECK_EQ(rd32(s, 16), sizeof(pthread_mutex_t));
    CHECK_EQ(rd32(s, 20), 10);
    CHECK_EQ(rd32(s, 24), 63);
    CHECK_EQ(rd32(s, 28), 255);
    CHECK_EQ(es, 64);
    CHECK_EQ(cells, 32);
    CHECK_EQ(hs, 640);
    uint64_t eo = rd64(s, 40);
    CHECK_EQ(eo, align(hs + 4ull * cells, 64));
    uint64_t ring = rd64(s, 96);
    CHECK_EQ(ring, eo + 10ull * es);
    CHECK_EQ(rd32(s, 104), KV_RING_CELLS);
    /* No memory_bytes: 11 chunks of the largest entry, every chunk that size; whole changes. */
    uint32_t chunk = (uint32_t)align(8 + 63 + 255, 16), cell = rd32(s, 260);
    uint64_t heap = rd64(s, 224);
    CHECK_EQ(rd32(s, 256), chunk);
    CHECK_EQ(rd32(s, 264), 63 + 255);
    CHECK_EQ(cell, align(32 + 63 + 255, 8));
    CHECK_EQ(rd32(s, 268), 32);
    CHECK_EQ(heap, align(ring + (uint64_t)KV_RING_CELLS * cell, 64));
    CHECK_EQ(rd64(s, 232), 11ull * chunk);
    CHECK_EQ(rd64(s, 232), kv_memory_bytes(s));
    CHECK_EQ(rd64(s, 240), chunk);
    CHECK_EQ(rd64(s, 240), kv_memory_used(s));
    CHECK_EQ(rd64(s, 248), 10ull * chunk);
    CHECK_EQ(rd64(s, 48), heap + 11ull * chunk);
    CHECK_EQ(rd64(s, 48), kv_map_size(s));
    CHECK_EQ(rd32(s, 56) % 2, 0);
    CHECK_EQ(rd32(s, 60), 1);
    CHECK_EQ(rd64(s, 64), 1);
    CHECK_EQ(rd64(s, 64), kv_version(s));
    CHECK_EQ(rd32(s, 72), 0);
    CHECK_EQ(rd32(s, 76), 1);
    CHECK_EQ(rd64(s, 80), 0);
    CHECK((int64_t)rd64(s, 88) >= now - 2 && (int64_t)rd64(s, 88) <= now + 2);
    CHECK_EQ(rd32(s, 192), 0); /* undo disarmed between writes */
    CHECK_EQ(rd32(s, 536), KV_EVICT_NONE);
    CHECK_EQ(rd32(s, 536), kv_evict_policy(s));
    CHECK_EQ(rd64(s, 544), 0); /* nothing expired, nothing evicted */
    CHECK_EQ(rd64(s, 552), 0);
    /* The entry, found by probing from its home cell; the first insert takes slot 0 and the
     * heap's first chunk. */
    CHECK_EQ(find_slot(s, "alpha"), 0);
    uint32_t h = kv_hash("alpha", 5);
    uint64_t e = eo;
    CHECK_EQ(rd32(s, e + 0), 5);
    CHECK_EQ(rd32(s, e + 4), 3);
    CHECK_EQ(rd32(s, e + 8), h);
    CHECK((int64_t)rd64(s, e + 16) >= now - 2 && (int64_t)rd64(s, e + 16) <= now + 2);
    CHECK_EQ(rd64(s, e + 24), 1);
    CHECK_EQ(rd64(s, e + 32), 0);
    CHECK_EQ(rd32(s, e + 40), chunk);
    /* Last access: the write's 16 ms tick of the wall clock; expires at: never. */
    uint32_t tick = (uint32_t)((uint64_t)now * 1000 >> 4);
    CHECK(rd32(s, e + 44) - tick + 200 <= 400); /* within 3 s of now, modulo 2^32 */
    CHECK_EQ(rd64(s, e + 48), 0);
    /* The chunk: units of 16 bytes, then used | owner (slot + 1), then key and value. */
    CHECK_EQ(rd32(s, heap + 0), chunk / 16);
    CHECK_EQ(rd32(s, heap + 4), 0x80000000u | 1);
    CHECK_MEM((const char *)kv_base(s) + heap + 8, 8, "alphaone", 8);
    /* The rest of the heap: one free chunk, with its footer, in the list of its size class. */
    uint64_t rest = 10ull * chunk;
    CHECK_EQ(rd32(s, heap + chunk), rest / 16);
    CHECK_EQ(rd32(s, heap + chunk + 4), 0);
    CHECK_EQ(rd64(s, heap + chunk + rest - 8), rest);
    int k = 63 - __builtin_clzll(rest) - 5;
    CHECK_EQ(rd64(s, 280 + 8ull * k), chunk + 1);
    /* The change ring: version 1 is in cell 0, the value right after the key. */
    CHECK_EQ(rd64(s, ring + 0), 1);
    CHECK((int64_t)rd64(s, ring + 8) >= now - 2 && (int64_t)rd64(s, ring + 8) <= now + 2);
    CHECK_EQ(rd32(s, ring + 16), KV_CHANGE_SET);
    CHECK_EQ(rd32(s, ring + 20), 5);
    CHECK_EQ(rd32(s, ring + 24), 3);
    CHECK_EQ(rd32(s, ring + 28), 0);
    CHECK_MEM((const char *)kv_base(s) + ring + 32, 8, "alphaone", 8);
    REQUIRE_RC(kv_delete(s, "alpha", 5), 0);
    CHECK_EQ(rd64(s, ring + cell), 2);
    CHECK_EQ(rd32(s, ring + cell + 16), KV_CHANGE_DELETE);
    CHECK_EQ(rd32(s, ring + cell + 20), 5);
    CHECK_EQ(rd32(s, ring + cell + 24), 0);
    CHECK_MEM((const char *)kv_base(s) + ring + cell + 32, 5, "alpha", 5);
    /* The delete gave the chunk back: the heap is one free chunk again. */
    CHECK_EQ(rd64(s, 240), 0);
    CHECK_EQ(rd64(s, 248), 11ull * chunk);
}

int main(void)
{
    RUN(defaults_from_null_options);
    RUN(set_get_round_trip);
    RUN(version_counts_successful_writes_only);
    RUN(count_tracks_live_entries);
    RUN(key_length_limit);
    RUN(value_length_limit);
    RUN(empty_key_and_nul_in_key_rejected);
    RUN(null_handle_rejected);
    RUN(full_store_refuses_new_key_but_updates);
    RUN(empty_value_round_trips);
    RUN(binary_value_round_trips);
    RUN(small_buffer_reports_needed_size);
    RUN(delete_of_missing_key_is_notfound);
    RUN(delete_then_insert_reuses_the_slot);
    RUN(conditional_writes);
    RUN(strerror_names_every_code);
    RUN(bad_names_rejected);
    RUN(longest_name_accepted);
    RUN(open_flags);
    RUN(unlink_of_missing_is_enoent);
    RUN(unlink_keeps_existing_mappings);
    RUN(existing_geometry_wins);
    RUN(invalid_options_rejected_and_nothing_left);
    RUN(options_at_the_limits_accepted);
    RUN(mode_applied_whatever_the_umask);
    RUN(hash_vectors);
    RUN(layout_matches_the_documentation);
    return CHECK_FINISH();
}
