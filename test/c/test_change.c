/* test_change: the change ring (kv_change), whole-segment snapshots (kv_snapshot) and copies of
 * single cells (kv_copy_cell). */
#include "check.h"

static void every_write_is_recorded(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    int64_t before = time(NULL);
    CHECK_RC(check_set_str(s, "a", "1"), 0);
    CHECK_RC(check_set_str(s, "b", "22"), 0);
    CHECK_RC(check_set_str(s, "a", "333"), 0);
    CHECK_RC(kv_delete(s, "b", 1), 0);
    CHECK_RC(kv_set(s, "empty", 5, NULL, 0), 0);
    CHECK_CHANGE(s, 1, KV_CHANGE_SET, "a", "1");
    CHECK_CHANGE(s, 2, KV_CHANGE_SET, "b", "22");
    CHECK_CHANGE(s, 3, KV_CHANGE_SET, "a", "333");
    CHECK_CHANGE(s, 4, KV_CHANGE_DELETE, "b", "");
    CHECK_CHANGE(s, 5, KV_CHANGE_SET, "empty", "");
    change c = read_change(s, 3);
    CHECK(c.timestamp >= before - 2 && c.timestamp <= time(NULL) + 2);
    /* Failed writes are not changes. */
    CHECK_RC(kv_delete(s, "b", 1), KV_NOTFOUND);
    CHECK_RC(kv_set_if(s, "a", 1, "x", 1, 1, NULL), KV_ECONFLICT);
    CHECK_RC(read_change(s, 6).rc, KV_NOTFOUND);
    /* Out parameters are optional. */
    char key[8];
    CHECK_RC(kv_change(s, 1, NULL, key, sizeof key, NULL, NULL, 0, NULL, NULL), KV_EBUFSIZE);
    CHECK_RC(kv_change(s, 4, NULL, key, sizeof key, NULL, NULL, 0, NULL, NULL), 0);
}

static void revisions_out_of_range(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    CHECK_RC(read_change(s, 0).rc, KV_NOTFOUND);
    CHECK_RC(read_change(s, 1).rc, KV_NOTFOUND); /* not written yet */
    CHECK_RC(check_set_str(s, "k", "v"), 0);
    CHECK_RC(read_change(s, 0).rc, KV_NOTFOUND);
    CHECK_RC(read_change(s, 1).rc, 0);
    CHECK_RC(read_change(s, 2).rc, KV_NOTFOUND);
    CHECK_RC(read_change(s, UINT64_MAX).rc, KV_NOTFOUND);
}

/* The ring holds the last KV_RING_CELLS writes exactly: one more and the oldest is gone. */
static void old_changes_expire(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    char value[16];
    for (unsigned i = 1; i <= KV_RING_CELLS + 10; i++) {
        snprintf(value, sizeof value, "%u", i);
        CHECK_RC(check_set_str(s, "k", value), 0);
    }
    uint64_t v = kv_version(s);
    CHECK_EQ(v, KV_RING_CELLS + 10);
    CHECK_RC(read_change(s, v - KV_RING_CELLS).rc, KV_EEXPIRED);
    CHECK_RC(read_change(s, 1).rc, KV_EEXPIRED);
    snprintf(value, sizeof value, "%llu", (unsigned long long)(v - KV_RING_CELLS + 1));
    CHECK_CHANGE(s, v - KV_RING_CELLS + 1, KV_CHANGE_SET, "k", value);
    snprintf(value, sizeof value, "%llu", (unsigned long long)v);
    CHECK_CHANGE(s, v, KV_CHANGE_SET, "k", value);
}

static void small_buffers_report_lengths(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    CHECK_RC(check_set_str(s, "a-longer-key", "a longer value"), 0);
    char key[4], value[4];
    size_t key_len = 0, value_len = 0;
    int op = 0;
    CHECK_RC(kv_change(s, 1, &op, key, sizeof key, &key_len, value, sizeof value, &value_len, NULL),
             KV_EBUFSIZE);
    CHECK_EQ(key_len, 12);
    CHECK_EQ(value_len, 14);
    CHECK_EQ(op, KV_CHANGE_SET);
    CHECK_RC(kv_change(s, 1, &op, NULL, 0, &key_len, NULL, 0, &value_len, NULL), KV_EBUFSIZE);
    CHECK_EQ(key_len, 12);
    CHECK_RC(kv_change(s, 1, &op, NULL, 4, &key_len, NULL, 0, &value_len, NULL), KV_EINVAL);
    CHECK_RC(kv_change(s, 1, &op, key, sizeof key, &key_len, NULL, 4, &value_len, NULL), KV_EINVAL);
    CHECK_RC(kv_change(NULL, 1, &op, key, sizeof key, &key_len, value, sizeof value, &value_len, NULL),
             KV_EINVAL);
}

/* Another process's writes are in this process's view of the ring. */
static void changes_by_another_handle_are_seen(void)
{
    const char *name;
    kv_store *a = check_new_store(NULL, &name);
    REQUIRE(a);
    int rc;
    kv_store *b = check_open(name, 0, NULL, &rc);
    REQUIRE_RC(rc, 0);
    CHECK_RC(check_set_str(b, "from-b", "hello"), 0);
    CHECK_CHANGE(a, 1, KV_CHANGE_SET, "from-b", "hello");
}

static void snapshot_copies_the_segment(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    CHECK_RC(check_set_str(s, "k", "v"), 0);
    CHECK_RC(kv_delete(s, "k", 1), 0);
    CHECK_RC(check_set_str(s, "k2", "v2"), 0);
    size_t size = kv_map_size(s);
    unsigned char *buf = malloc(size + 1);
    REQUIRE(buf);
    CHECK_RC(kv_snapshot(s, buf, size - 1), KV_EBUFSIZE);
    CHECK_RC(kv_snapshot(s, NULL, size), KV_EINVAL);
    CHECK_RC(kv_snapshot(NULL, buf, size), KV_EINVAL);
    CHECK_RC(kv_snapshot(s, buf, size + 1), 0);
    /* Byte for byte the segment, but for the lock's own bookkeeping: the time it was taken (offsets
     * 112..119 of the header) and the mutex (128..191). */
    const unsigned char *base = kv_base(s);
    CHECK(memcmp(buf, base, 112) == 0);
    CHECK(memcmp(buf + 120, base + 120, 8) == 0);
    CHECK(memcmp(buf + 192, base + 192, size - 192) == 0);
    free(buf);
}

static void copy_cell_copies_slots_and_ring_cells(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    CHECK_RC(check_set_str(s, "k", "v"), 0);
    unsigned char *base = kv_base(s);
    uint32_t entry_size, ring_cell, max = kv_max_entries(s);
    uint64_t entries_off, ring_off;
    memcpy(&entry_size, base + 32, 4);
    memcpy(&entries_off, base + 40, 8);
    memcpy(&ring_off, base + 96, 8);
    memcpy(&ring_cell, base + 260, 4);
    unsigned char buf[1024];
    REQUIRE(entry_size + kv_key_max(s) + kv_value_max(s) <= sizeof buf);
    /* A live slot: its entry, then its key and value from its chunk, and its counter, even. */
    uint32_t counter = kv_copy_cell(s, 0, buf);
    CHECK_EQ(counter & 1, 0);
    CHECK(memcmp(buf, base + entries_off, entry_size) == 0);
    CHECK(memcmp(buf + entry_size, "kv", 2) == 0);
    /* The ring's cells follow the slots: cell max holds the record of revision 1. */
    kv_copy_cell(s, max, buf);
    CHECK(memcmp(buf, base + ring_off, ring_cell) == 0);
    /* One past the ring: the undo record's copy of an entry (a free slot, here). */
    memset(buf, 0xAA, sizeof buf);
    kv_copy_cell(s, max + KV_RING_CELLS, buf);
    CHECK(memcmp(buf, base + 576, entry_size) == 0);
    /* A slot whose counter is odd is being written: the copy is not a state to trust. */
    uint32_t *seq = (uint32_t *)(base + entries_off + 12);
    *seq += 1;
    CHECK_EQ(kv_copy_cell(s, 0, buf) & 1, 1);
    *seq -= 1;
    /* No such cell, no handle, no buffer: odd, and nothing copied. */
    memset(buf, 0xAA, sizeof buf);
    CHECK_EQ(kv_copy_cell(s, max + KV_RING_CELLS + 1, buf) & 1, 1);
    CHECK_EQ(kv_copy_cell(NULL, 0, buf) & 1, 1);
    CHECK_EQ(kv_copy_cell(s, 0, NULL) & 1, 1);
    CHECK_EQ(buf[0], 0xAA);
    CHECK_EQ(buf[entry_size - 1], 0xAA);
}

int main(void)
{
    RUN(every_write_is_recorded);
    RUN(revisions_out_of_range);
    RUN(old_changes_expire);
    RUN(small_buffers_report_lengths);
    RUN(changes_by_another_handle_are_seen);
    RUN(snapshot_copies_the_segment);
    RUN(copy_cell_copies_slots_and_ring_cells);
    return CHECK_FINISH();
}
