/* test_replica: a replica's segment (kv_set_readonly) refuses direct writers with KV_EREADONLY, for
 * every process, while kv_apply writes changes with the revision and timestamp they were given. */
#include "check.h"

static int apply_str(kv_store *s, int op, const char *key, const char *value, uint64_t revision,
                     int64_t timestamp)
{
    return kv_apply(s, op, key, strlen(key), value, value ? strlen(value) : 0, revision, timestamp, 0);
}

static void direct_writes_to_a_replica_get_ereadonly(void)
{
    const char *name;
    kv_store *s = check_new_store(NULL, &name);
    REQUIRE(s);
    CHECK_RC(check_set_str(s, "kept", "before"), 0);
    CHECK_EQ(kv_readonly(s), 0);
    CHECK_RC(kv_set_readonly(s, 1), 0);
    CHECK_EQ(kv_readonly(s), 1);
    /* Another handle (as another process would) is refused too: the flag is in the segment. */
    int rc;
    kv_store *other = check_open(name, 0, NULL, &rc);
    REQUIRE(other);
    uint64_t found = 7;
    CHECK_RC(check_set_str(other, "k", "v"), KV_EREADONLY);
    CHECK_RC(kv_set_if(other, "kept", 4, "x", 1, 1, &found), KV_EREADONLY);
    CHECK_RC(kv_delete(other, "kept", 4), KV_EREADONLY);
    CHECK_RC(kv_delete_if(s, "kept", 4, 1, NULL), KV_EREADONLY);
    CHECK_GET(other, "kept", "before");
    CHECK_EQ(kv_version(s), 1);
    CHECK(strstr(kv_strerror(KV_EREADONLY), "write through its server") != NULL);
    /* Writable again once cleared. */
    CHECK_RC(kv_set_readonly(other, 0), 0);
    CHECK_EQ(kv_readonly(s), 0);
    CHECK_RC(check_set_str(s, "k", "v"), 0);
    CHECK_RC(kv_set_readonly(NULL, 1), KV_EINVAL);
}

static void apply_takes_the_given_revision_and_timestamp(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    CHECK_RC(kv_set_readonly(s, 1), 0);
    CHECK_RC(apply_str(s, KV_CHANGE_SET, "a", "1", 5, 1000), 0);
    CHECK_RC(apply_str(s, KV_CHANGE_SET, "b", "2", 9, 2000), 0);
    CHECK_RC(apply_str(s, KV_CHANGE_SET, "a", "3", 10, 3000), 0);
    char buf[16];
    size_t len;
    int64_t ts;
    uint64_t rev;
    CHECK_RC(kv_get_rev(s, "a", 1, buf, sizeof buf, &len, &ts, &rev), 0);
    CHECK_MEM(buf, len, "3", 1);
    CHECK_EQ(ts, 3000);
    CHECK_EQ(rev, 10);
    CHECK_RC(kv_get_rev(s, "b", 1, buf, sizeof buf, &len, &ts, &rev), 0);
    CHECK_EQ(rev, 9);
    CHECK_EQ(kv_version(s), 10);
    CHECK_CHANGE(s, 10, KV_CHANGE_SET, "a", "3");
    CHECK_CHANGE(s, 9, KV_CHANGE_SET, "b", "2");
    /* A revision skipped was never in this ring. */
    CHECK_RC(read_change(s, 8).rc, KV_EEXPIRED);
    CHECK_RC(apply_str(s, KV_CHANGE_DELETE, "b", NULL, 11, 4000), 0);
    CHECK_GET(s, "b", NULL);
    CHECK_EQ(kv_count(s), 1);
    CHECK_CHANGE(s, 11, KV_CHANGE_DELETE, "b", "");
    CHECK_RC(kv_check(s), 0);
}

static void apply_refuses_what_it_already_has(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    CHECK_RC(apply_str(s, KV_CHANGE_SET, "a", "1", 3, 1), 0);
    /* The same change again, or an older one: nothing written. */
    CHECK_RC(apply_str(s, KV_CHANGE_SET, "a", "other", 3, 1), KV_ECONFLICT);
    CHECK_RC(apply_str(s, KV_CHANGE_DELETE, "a", NULL, 2, 1), KV_ECONFLICT);
    CHECK_GET(s, "a", "1");
    CHECK_EQ(kv_version(s), 3);
    /* A delete of a key it does not hold moves the version only. */
    CHECK_RC(apply_str(s, KV_CHANGE_DELETE, "absent", NULL, 4, 1), 0);
    CHECK_EQ(kv_version(s), 4);
    CHECK_EQ(kv_count(s), 1);
    CHECK_CHANGE(s, 4, KV_CHANGE_DELETE, "absent", "");
    /* Only the version: nothing else moves, nothing is recorded. */
    CHECK_RC(kv_apply(s, KV_APPLY_VERSION, NULL, 0, NULL, 0, 9, 0, 0), 0);
    CHECK_EQ(kv_version(s), 9);
    CHECK_EQ(kv_count(s), 1);
    CHECK_GET(s, "a", "1");
    CHECK_RC(read_change(s, 9).rc, KV_EEXPIRED);
    CHECK_RC(kv_apply(s, KV_APPLY_VERSION, NULL, 0, NULL, 0, 9, 0, 0), KV_ECONFLICT);
    CHECK_RC(kv_check(s), 0);
}

static void apply_checks_its_arguments(void)
{
    kv_options o = {.max_entries = 1};
    kv_store *s = check_new_store(&o, NULL);
    REQUIRE(s);
    CHECK_RC(apply_str(s, KV_CHANGE_EVICTED + 1, "a", "1", 1, 1), KV_EINVAL);
    CHECK_RC(apply_str(s, KV_CHANGE_SET, "a", "1", 0, 1), KV_EINVAL);
    CHECK_RC(apply_str(s, KV_CHANGE_SET, "a", "1", UINT64_MAX, 1), KV_EINVAL);
    CHECK_RC(apply_str(s, KV_CHANGE_SET, "", "1", 1, 1), KV_EINVAL);
    char big[300];
    memset(big, 'v', sizeof big - 1);
    big[sizeof big - 1] = 0;
    CHECK_RC(apply_str(s, KV_CHANGE_SET, "a", big, 1, 1), KV_EVALLEN);
    CHECK_RC(apply_str(s, KV_CHANGE_SET, "a", "1", 1, 1), 0);
    CHECK_RC(apply_str(s, KV_CHANGE_SET, "b", "2", 2, 1), KV_EFULL);
    CHECK_EQ(kv_version(s), 1);
    CHECK_RC(kv_apply(NULL, KV_CHANGE_SET, "a", 1, "1", 1, 5, 1, 0), KV_EINVAL);
}

int main(void)
{
    RUN(direct_writes_to_a_replica_get_ereadonly);
    RUN(apply_takes_the_given_revision_and_timestamp);
    RUN(apply_refuses_what_it_already_has);
    RUN(apply_checks_its_arguments);
    return CHECK_FINISH();
}
