/* test_expire: expiry (kv_set_ttl and kin) and eviction (KV_EVICT_LRU). An expired entry is absent
 * for every reader and writer at once and its end is recorded; kv_expire reclaims in bounded steps;
 * a full lru store makes room by evicting what was used least recently, crash-atomically. Expiry is
 * tested with short ttls and a bounded wait for the clock, never a fixed sleep. */
#include "check.h"

#include <time.h>

#define FAULT_TOOL "build/kvtool_fault"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Wait (1 ms at a time, 5 s at most) until the wall clock reaches `ms`. */
static int wait_until(uint64_t ms)
{
    for (int i = 0; i < 5000 && now_ms() < ms; i++)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    return now_ms() >= ms;
}

/* Wait until the 16 ms access tick moves on, so that what happens next is more recent. */
static void next_tick(void)
{
    uint64_t tick = now_ms() >> 4;
    REQUIRE(wait_until((tick + 1) << 4));
}

static int set_ttl(kv_store *s, const char *key, const char *value, uint64_t ttl_ms)
{
    return kv_set_ttl(s, key, strlen(key), value, strlen(value), ttl_ms);
}

static kv_meta meta_of(kv_store *s, const char *key, int want_rc)
{
    kv_meta m = {99, 99, 99, 99};
    char buf[256];
    CHECK_RC(kv_get_meta(s, key, strlen(key), buf, sizeof buf, &m), want_rc);
    return m;
}

static void an_entry_is_absent_once_its_ttl_has_passed(void)
{
    const char *name;
    kv_store *s = check_new_store(NULL, &name), *other;
    REQUIRE(s);
    REQUIRE_RC(kv_open(name, 0, NULL, &other), 0);
    uint64_t before = now_ms();
    CHECK_RC(set_ttl(s, "session", "alice", 60), 0);
    CHECK_RC(check_set_str(s, "forever", "1"), 0);
    kv_meta m = meta_of(other, "session", 0);
    CHECK(m.expires_at_ms >= before + 60 && m.expires_at_ms <= now_ms() + 60);
    CHECK_EQ(m.value_len, 5);
    CHECK_EQ(m.revision, 1);
    CHECK_EQ(meta_of(s, "forever", 0).expires_at_ms, 0);
    CHECK_GET(other, "session", "alice");
    REQUIRE(wait_until(m.expires_at_ms));
    /* Absent for both handles at once, though nothing has reclaimed it yet. */
    CHECK_GET(s, "session", NULL);
    CHECK_GET(other, "session", NULL);
    meta_of(s, "session", KV_NOTFOUND);
    CHECK_EQ(kv_count(s), 2);
    CHECK_GET(s, "forever", "1");
    CHECK_RC(kv_check(s), 0);
    kv_close(other);
}

static void a_plain_set_clears_the_expiry_and_a_ttl_set_gives_one(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    CHECK_RC(set_ttl(s, "k", "v1", 100000), 0);
    CHECK(meta_of(s, "k", 0).expires_at_ms > now_ms());
    CHECK_RC(check_set_str(s, "k", "v2"), 0);
    CHECK_EQ(meta_of(s, "k", 0).expires_at_ms, 0);
    uint64_t rev = 0;
    CHECK_RC(kv_set_if_ttl(s, "k", 1, "v3", 2, 2, 100000, &rev), 0);
    CHECK_EQ(rev, 3);
    CHECK(meta_of(s, "k", 0).expires_at_ms > now_ms());
    CHECK_RC(kv_set_if_ttl(s, "k", 1, "v4", 2, 2, 100000, &rev), KV_ECONFLICT);
    CHECK_EQ(rev, 3);
    /* A ttl that would overflow the clock is refused, and writes nothing. */
    CHECK_RC(set_ttl(s, "k", "v5", UINT64_MAX - 5), KV_EINVAL);
    CHECK_GET(s, "k", "v3");
    CHECK_EQ(kv_version(s), 3);
}

/* An expired entry is absent for writers too: each reclaims it, recording its end (op 3) with a
 * revision of its own, and then does what it would do with no entry at all. */
static void writers_meeting_an_expired_entry_reclaim_it_first(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    CHECK_RC(set_ttl(s, "a", "1", 30), 0);
    CHECK_RC(set_ttl(s, "b", "2", 30), 0);
    REQUIRE(wait_until(now_ms() + 31));
    uint64_t rev = 99;
    CHECK_RC(kv_set_if(s, "a", 1, "new", 3, 0, &rev), 0); /* create-only: absent now */
    CHECK_EQ(rev, 4);
    CHECK_CHANGE(s, 3, KV_CHANGE_EXPIRED, "a", "");
    CHECK_CHANGE(s, 4, KV_CHANGE_SET, "a", "new");
    CHECK_RC(kv_delete_if(s, "b", 1, 2, &rev), KV_NOTFOUND);
    CHECK_EQ(rev, 0);
    CHECK_CHANGE(s, 5, KV_CHANGE_EXPIRED, "b", "");
    CHECK_EQ(kv_count(s), 1);
    CHECK_EQ(kv_expired_total(s), 2);
    CHECK_RC(kv_check(s), 0);
}

static void a_counter_keeps_its_expiry_and_starts_over_when_it_expires(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    int64_t v = 0;
    uint64_t start = now_ms();
    CHECK_RC(kv_incr_ttl(s, "hits", 4, 1, 80, &v, NULL), 0);
    uint64_t expires = meta_of(s, "hits", 0).expires_at_ms;
    CHECK(expires >= start + 80);
    /* Later hits neither prolong the window nor end it. */
    CHECK_RC(kv_incr_ttl(s, "hits", 4, 1, 100000, &v, NULL), 0);
    CHECK_RC(kv_incr(s, "hits", 4, 1, &v), 0);
    CHECK_EQ(v, 3);
    CHECK_EQ(meta_of(s, "hits", 0).expires_at_ms, expires);
    REQUIRE(wait_until(expires));
    CHECK_RC(kv_incr_ttl(s, "hits", 4, 1, 100000, &v, NULL), 0);
    CHECK_EQ(v, 1);
    CHECK(meta_of(s, "hits", 0).expires_at_ms >= expires + 100000 - 1000);
    CHECK_EQ(kv_expired_total(s), 1);
}

/* The ring keeps a set's expiry after its value (flags bit 1), as the layout says. */
static void the_change_ring_keeps_a_sets_expiry(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    CHECK_RC(set_ttl(s, "key", "val", 50000), 0);
    const unsigned char *base = kv_base(s);
    uint64_t ring, expires;
    memcpy(&ring, base + 96, 8);
    const unsigned char *c = base + ring;
    uint32_t flags;
    memcpy(&flags, c + 28, 4);
    CHECK_EQ(flags, 2);
    CHECK_MEM(c + 32, 6, "keyval", 6);
    memcpy(&expires, c + 38, 8);
    CHECK_EQ(expires, meta_of(s, "key", 0).expires_at_ms);
    CHECK_CHANGE(s, 1, KV_CHANGE_SET, "key", "val");
}

static void kv_expire_reclaims_in_bounded_steps_that_cover_every_slot(void)
{
    kv_store *s = check_new_store(&(kv_options){.max_entries = 100}, NULL);
    REQUIRE(s);
    char key[16];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "k%d", i);
        CHECK_RC(i % 2 ? check_set_str(s, key, "live") : set_ttl(s, key, "brief", 30), 0);
    }
    REQUIRE(wait_until(now_ms() + 31));
    uint64_t version = kv_version(s);
    int total = 0, rc;
    for (int call = 0; call < 10; call++) {
        CHECK((rc = kv_expire(s, 10)) >= 0 && rc <= 10);
        total += rc;
    }
    CHECK_EQ(total, 50);
    CHECK_RC(kv_expire(s, 1000), 0);
    CHECK_EQ(kv_count(s), 50);
    CHECK_EQ(kv_expired_total(s), 50);
    CHECK_EQ(kv_version(s), version + 50);
    CHECK_GET(s, "k1", "live");
    /* Any count comes back as it is (2 is also an internal code of the library's). */
    CHECK_RC(set_ttl(s, "x", "1", 1), 0);
    CHECK_RC(set_ttl(s, "y", "1", 1), 0);
    REQUIRE(wait_until(now_ms() + 2));
    CHECK_RC(kv_expire(s, 1000), 2);
    CHECK_RC(kv_check(s), 0);
}

/* Without eviction a full store still makes room from expired entries before it says full. */
static void a_full_store_reclaims_expired_entries_before_refusing(void)
{
    kv_store *s = check_new_store(&(kv_options){.max_entries = 4}, NULL);
    REQUIRE(s);
    CHECK_RC(set_ttl(s, "a", "1", 30), 0);
    CHECK_RC(check_set_str(s, "b", "2"), 0);
    CHECK_RC(check_set_str(s, "c", "3"), 0);
    CHECK_RC(check_set_str(s, "d", "4"), 0);
    CHECK_RC(check_set_str(s, "e", "5"), KV_EFULL);
    REQUIRE(wait_until(now_ms() + 31));
    CHECK_RC(check_set_str(s, "e", "5"), 0);
    CHECK_RC(check_set_str(s, "f", "6"), KV_EFULL);
    CHECK_EQ(kv_evictions_total(s), 0);
    CHECK_EQ(kv_expired_total(s), 1);
    CHECK_EQ(kv_evict_policy(s), KV_EVICT_NONE);
}

static void fill(kv_store *s, const char *prefix, int from, int to)
{
    char key[32];
    for (int i = from; i < to; i++) {
        snprintf(key, sizeof key, "%s%d", prefix, i);
        if (!CHECK_RC(check_set_str(s, key, key), 0))
            return;
    }
}

static int present(kv_store *s, const char *prefix, int from, int to)
{
    char key[32], buf[64];
    int n = 0;
    for (int i = from; i < to; i++) {
        snprintf(key, sizeof key, "%s%d", prefix, i);
        n += kv_get(s, key, strlen(key), buf, sizeof buf, NULL, NULL) == 0;
    }
    return n;
}

static void lru_keeps_a_key_read_just_before_a_burst(void)
{
    kv_store *s = check_new_store(&(kv_options){.max_entries = 100, .evict = KV_EVICT_LRU}, NULL);
    REQUIRE(s);
    CHECK_EQ(kv_evict_policy(s), KV_EVICT_LRU);
    fill(s, "old", 0, 100);
    next_tick();
    CHECK_GET(s, "old0", "old0"); /* the oldest write, now the most recent read */
    fill(s, "new", 0, 60);
    CHECK_GET(s, "old0", "old0");
    CHECK_EQ(present(s, "new", 0, 60), 60);
    CHECK_EQ(present(s, "old", 0, 100), 40);
    CHECK_EQ(kv_count(s), 100);
    CHECK_EQ(kv_evictions_total(s), 60);
    /* Each eviction is a delete recorded with its reason, before the set that needed the room. */
    CHECK_CHANGE(s, 101, KV_CHANGE_EVICTED, "old1", "");
    CHECK_CHANGE(s, 102, KV_CHANGE_SET, "new0", "new0");
    CHECK_RC(kv_check(s), 0);
}

static void lru_evicts_expired_entries_first(void)
{
    kv_store *s = check_new_store(&(kv_options){.max_entries = 8, .evict = KV_EVICT_LRU}, NULL);
    REQUIRE(s);
    fill(s, "k", 0, 7);
    CHECK_RC(set_ttl(s, "brief", "x", 30), 0);
    REQUIRE(wait_until(now_ms() + 31));
    CHECK_RC(check_set_str(s, "more", "y"), 0);
    CHECK_EQ(present(s, "k", 0, 7), 7);
    CHECK_EQ(kv_expired_total(s), 1);
    CHECK_EQ(kv_evictions_total(s), 0);
}

/* A heap store far past its memory: every set fits by evicting, whatever the sizes. A value that
 * cannot fit even in an empty heap evicts nothing. */
static void lru_makes_heap_room_for_values_of_any_size(void)
{
    kv_store *s = check_new_store(&(kv_options){.max_entries = 1000, .key_max = 16, .value_max = 8000,
                                                .memory_bytes = 32768, .evict = KV_EVICT_LRU},
                                  NULL);
    REQUIRE(s);
    char key[16];
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof key, "v%d", i);
        size_t len = 1 + (size_t)(i * 7919) % 6000;
        if (!CHECK_RC(check_set_filled(s, key, len, (char)('a' + i % 26)), 0))
            break;
        CHECK_FILLED(s, key, len, (char)('a' + i % 26));
    }
    CHECK(kv_evictions_total(s) > 1900);
    CHECK(kv_memory_used(s) <= kv_memory_bytes(s));
    CHECK_RC(kv_check(s), 0);
    kv_store *tiny = check_new_store(&(kv_options){.max_entries = 10, .value_max = 8000,
                                                   .memory_bytes = 4096, .evict = KV_EVICT_LRU},
                                     NULL);
    REQUIRE(tiny);
    fill(tiny, "t", 0, 5);
    CHECK_RC(check_set_filled(tiny, "huge", 5000, 'h'), KV_EFULL);
    CHECK_EQ(kv_count(tiny), 5);
    CHECK_EQ(kv_evictions_total(tiny), 0);
}

/* A writer killed at each point of an eviction (the first fault point a set into a full lru store
 * reaches is its eviction's) leaves a store that repairs to sound, the evicted entry either back
 * or gone, and the new key either written or not. */
static void a_writer_killed_mid_eviction_leaves_a_sound_store(void)
{
    for (int point = 1; point <= 8; point++) {
        const char *name;
        kv_store *s = check_new_store(&(kv_options){.max_entries = 8, .evict = KV_EVICT_LRU}, &name);
        REQUIRE(s);
        fill(s, "k", 0, 8);
        char *argv[] = {FAULT_TOOL, (char *)name, "set", "fresh", "value", NULL};
        int status = check_run_at_fault(argv, point);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        CHECK_RC(kv_repair(s), 0);
        CHECK_RC(kv_check(s), 0);
        /* Killed before its own write began: the new key is never there. */
        CHECK_GET(s, "fresh", NULL);
        CHECK_EQ(present(s, "k", 0, 8), kv_count(s));
        CHECK(kv_count(s) == 8 || kv_count(s) == 7);
        CHECK_RC(check_set_str(s, "after", "1"), 0);
        CHECK_GET(s, "after", "1");
        CHECK_RC(kv_check(s), 0);
    }
}

static void a_resize_keeps_expiries_policy_and_counts(void)
{
    const char *name;
    kv_store *s = check_new_store(&(kv_options){.max_entries = 4, .evict = KV_EVICT_LRU}, &name);
    REQUIRE(s);
    fill(s, "k", 0, 5); /* one eviction */
    CHECK_RC(set_ttl(s, "t", "x", 100000), 0);
    uint64_t expires = meta_of(s, "t", 0).expires_at_ms;
    CHECK_RC(kv_resize(name, &(kv_options){.max_entries = 16}), 0);
    CHECK_EQ(kv_evict_policy(s), KV_EVICT_LRU);
    CHECK_EQ(meta_of(s, "t", 0).expires_at_ms, expires);
    CHECK_EQ(kv_evictions_total(s), 2);
    CHECK_RC(kv_resize(name, &(kv_options){.evict = KV_EVICT_NONE}), 0);
    CHECK_EQ(kv_evict_policy(s), KV_EVICT_NONE);
    CHECK_RC(kv_resize(name, &(kv_options){.evict = 3}), KV_EINVAL);
    kv_store *bad;
    CHECK_RC(kv_open(check_shm_name(), KV_CREATE, &(kv_options){.evict = 3}, &bad), KV_EINVAL);
}

/* A replica's entries expire for its readers as the source's do; the replica reclaims nothing
 * itself (its source sends the deletes), so its revisions stay the source's. */
static void a_replica_expires_for_readers_but_reclaims_nothing(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    CHECK_RC(kv_set_readonly(s, 1), 0);
    uint64_t expires = now_ms() + 30;
    CHECK_RC(kv_apply(s, KV_CHANGE_SET, "a", 1, "1", 1, 5, 100, expires), 0);
    CHECK_EQ(meta_of(s, "a", 0).expires_at_ms, expires);
    REQUIRE(wait_until(expires));
    CHECK_GET(s, "a", NULL);
    CHECK_RC(kv_expire(s, 100), KV_EREADONLY);
    CHECK_RC(kv_apply(s, KV_CHANGE_SET, "a", 1, "2", 1, 6, 100, 0), 0);
    CHECK_EQ(kv_version(s), 6);
    CHECK_GET(s, "a", "2");
    CHECK_EQ(kv_expired_total(s), 0);
    /* The source's reclaim arrives as a delete with its reason, recorded and counted as such. */
    CHECK_RC(kv_apply(s, KV_CHANGE_EXPIRED, "a", 1, NULL, 0, 7, 100, 0), 0);
    CHECK_CHANGE(s, 7, KV_CHANGE_EXPIRED, "a", "");
    CHECK_EQ(kv_expired_total(s), 1);
    CHECK_RC(kv_apply(s, KV_CHANGE_EVICTED + 1, "a", 1, NULL, 0, 8, 100, 0), KV_EINVAL);
}

int main(void)
{
    if (access(FAULT_TOOL, X_OK) != 0) {
        fprintf(stderr, "test_expire: %s is missing (make tools)\n", FAULT_TOOL);
        return 1;
    }
    RUN(an_entry_is_absent_once_its_ttl_has_passed);
    RUN(a_plain_set_clears_the_expiry_and_a_ttl_set_gives_one);
    RUN(writers_meeting_an_expired_entry_reclaim_it_first);
    RUN(a_counter_keeps_its_expiry_and_starts_over_when_it_expires);
    RUN(the_change_ring_keeps_a_sets_expiry);
    RUN(kv_expire_reclaims_in_bounded_steps_that_cover_every_slot);
    RUN(a_full_store_reclaims_expired_entries_before_refusing);
    RUN(lru_keeps_a_key_read_just_before_a_burst);
    RUN(lru_evicts_expired_entries_first);
    RUN(lru_makes_heap_room_for_values_of_any_size);
    RUN(a_writer_killed_mid_eviction_leaves_a_sound_store);
    RUN(a_resize_keeps_expiries_policy_and_counts);
    RUN(a_replica_expires_for_readers_but_reclaims_nothing);
    return CHECK_FINISH();
}
