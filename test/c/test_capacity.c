/* test_capacity: a table of a million entries, filled, read back, overfilled, emptied. The index
 * must stay correct (and fast) at that size, and the store must end as sound as it began. */
#include "check.h"

#define ENTRIES 1000000u

static size_t key_of(unsigned i, char *key) { return (size_t)snprintf(key, 17, "key%u", i); }

/* Values vary in length (1..16 bytes) so a mixed-up slot shows. */
static size_t value_of(unsigned i, char *value)
{
    size_t len = (size_t)snprintf(value, 17, "%x.%u", i, i * 2654435761u);
    return len > 16 ? 16 : len;
}

static void million_entries(void)
{
    kv_store *s = check_new_store(&(kv_options){ENTRIES, 16, 16, 0, 0, 0, 0}, NULL);
    REQUIRE(s);
    char key[32], value[32], buf[16];
    unsigned bad = 0;
    for (unsigned i = 0; i < ENTRIES; i++)
        bad += kv_set(s, key, key_of(i, key), value, value_of(i, value)) != 0;
    CHECK_EQ(bad, 0);
    CHECK_EQ(kv_count(s), ENTRIES);
    CHECK_RC(check_set_str(s, "one-more", "x"), KV_EFULL);
    bad = 0;
    for (unsigned i = 0; i < ENTRIES; i++) {
        size_t len = 0, want = value_of(i, value);
        bad += kv_get(s, key, key_of(i, key), buf, sizeof buf, &len, NULL) != 0 || len != want ||
               memcmp(buf, value, want) != 0;
    }
    CHECK_EQ(bad, 0);
    int rc = kv_check(s);
    if (!CHECK_RC(rc, 0))
        printf("  (full: %s)\n", kv_check_detail(s));
    bad = 0;
    for (unsigned i = 0; i < ENTRIES; i++)
        bad += kv_delete(s, key, key_of(i, key)) != 0;
    CHECK_EQ(bad, 0);
    CHECK_EQ(kv_count(s), 0);
    CHECK_EQ(kv_version(s), 2ull * ENTRIES);
    CHECK_GET(s, "key0", NULL);
    CHECK_GET(s, "key999999", NULL);
    rc = kv_check(s);
    if (!CHECK_RC(rc, 0))
        printf("  (empty: %s)\n", kv_check_detail(s));
}

int main(void)
{
    RUN(million_entries);
    return CHECK_FINISH();
}
