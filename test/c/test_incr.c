/* test_incr: kv_incr, the atomic increment: the decimal format it reads and writes, its refusals
 * (each of which writes nothing), its record in the change ring, crash-atomicity (a kvtool_fault
 * incrementer killed at each fault point) and exact sums when processes increment together. */
#include "check.h"

#define FAULT_TOOL "build/kvtool_fault"
#define TOOL       "build/kvtool"

static int incr_str(kv_store *s, const char *key, int64_t delta, int64_t *result)
{
    return kv_incr(s, key, strlen(key), delta, result);
}

static void a_missing_key_counts_as_zero_and_the_value_reads_as_digits(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    int64_t v = 99;
    CHECK_RC(incr_str(s, "n", 1, &v), 0);
    CHECK_EQ(v, 1);
    CHECK_GET(s, "n", "1");
    CHECK_RC(incr_str(s, "n", 41, &v), 0);
    CHECK_EQ(v, 42);
    CHECK_GET(s, "n", "42");
    CHECK_RC(incr_str(s, "n", -50, &v), 0);
    CHECK_EQ(v, -8);
    CHECK_GET(s, "n", "-8");
    uint64_t revision = 0;
    CHECK_RC(kv_incr_rev(s, "n", 1, 8, NULL, &revision), 0);
    CHECK_GET(s, "n", "0");
    CHECK_EQ(revision, 4);
    /* Each increment is one write: a revision, and a set of the new digits in the ring. */
    CHECK_EQ(kv_version(s), 4);
    CHECK_CHANGE(s, 3, KV_CHANGE_SET, "n", "-8");
    CHECK_CHANGE(s, 4, KV_CHANGE_SET, "n", "0");
    /* A value set by kv_set in the same spelling counts on from there. */
    CHECK_RC(check_set_str(s, "m", "-9223372036854775807"), 0);
    CHECK_RC(incr_str(s, "m", -1, &v), 0);
    CHECK_EQ(v, INT64_MIN);
    CHECK_GET(s, "m", "-9223372036854775808");
    CHECK_RC(check_set_str(s, "m", "9223372036854775806"), 0);
    CHECK_RC(incr_str(s, "m", 1, &v), 0);
    CHECK_GET(s, "m", "9223372036854775807");
    CHECK_RC(kv_check(s), 0);
}

static void a_value_that_is_not_a_decimal_integer_is_refused_untouched(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    const char *bad[] = {"", "abc", "+1", " 1", "1 ", "01", "-0", "-", "1.5", "1e3", "0x10",
                         "9223372036854775808", "-9223372036854775809", "123456789012345678901234"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_RC(check_set_str(s, "k", bad[i]), 0);
        uint64_t version = kv_version(s);
        int64_t v = 7;
        if (!CHECK_RC(incr_str(s, "k", 1, &v), KV_ENOTNUM))
            printf("  value: \"%s\"\n", bad[i]);
        CHECK_EQ(v, 7);
        CHECK_GET(s, "k", bad[i]);
        CHECK_EQ(kv_version(s), version);
    }
    CHECK(strstr(kv_strerror(KV_ENOTNUM), "not a decimal integer") != NULL);
}

static void an_overflow_is_erange_and_changes_nothing(void)
{
    kv_store *s = check_new_store(NULL, NULL);
    REQUIRE(s);
    CHECK_RC(check_set_str(s, "k", "9223372036854775807"), 0);
    CHECK_RC(incr_str(s, "k", 1, NULL), -ERANGE);
    CHECK_RC(check_set_str(s, "k", "-2"), 0);
    CHECK_RC(incr_str(s, "k", INT64_MIN, NULL), -ERANGE);
    CHECK_GET(s, "k", "-2");
    CHECK_EQ(kv_version(s), 2);
}

static void the_usual_refusals_apply(void)
{
    kv_options small = {.max_entries = 1, .key_max = 4, .value_max = 3};
    kv_store *s = check_new_store(&small, NULL);
    REQUIRE(s);
    CHECK_RC(incr_str(s, "", 1, NULL), KV_EINVAL);
    CHECK_RC(kv_incr(NULL, "k", 1, 1, NULL), KV_EINVAL);
    CHECK_RC(incr_str(s, "toolong", 1, NULL), KV_EKEYLEN);
    CHECK_RC(incr_str(s, "a", 999, NULL), 0);
    /* 1000 needs four digits; this store holds three. */
    CHECK_RC(incr_str(s, "a", 1, NULL), KV_EVALLEN);
    CHECK_GET(s, "a", "999");
    CHECK_RC(incr_str(s, "b", 1, NULL), KV_EFULL);
    CHECK_RC(kv_set_readonly(s, 1), 0);
    CHECK_RC(incr_str(s, "a", 1, NULL), KV_EREADONLY);
    CHECK_GET(s, "a", "999");
    CHECK_RC(kv_check(s), 0);
}

/* A kvtool_fault incrementer killed at each fault point leaves the old value or the new one, never
 * anything else, and a sound store that the next writer uses at once. */
static void an_increment_killed_mid_write_is_all_or_nothing(void)
{
    for (int point = 1; point <= 8; point++) {
        const char *name;
        kv_store *s = check_new_store(NULL, &name);
        REQUIRE(s);
        CHECK_RC(check_set_str(s, "n", "41"), 0);
        char *argv[] = {FAULT_TOOL, (char *)name, "incr", "n", "1000", NULL};
        int status = check_run_at_fault(argv, point);
        /* Point 5 is an index change: an update of an existing key never reaches it. */
        if (point != 5)
            CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        CHECK_RC(incr_str(s, "other", 1, NULL), 0);
        CHECK_RC(kv_check(s), 0);
        CHECK_GET(s, "n", point <= 6 && point != 5 ? "41" : "1041");
    }
}

/* Three kvtool processes and this one increment one counter together: nothing is lost. */
static void processes_incrementing_together_sum_exactly(void)
{
    const char *name;
    kv_store *s = check_new_store(NULL, &name);
    REQUIRE(s);
    enum { TOOLS = 3, EACH = 2000 };
    pid_t pids[TOOLS];
    int outs[TOOLS];
    for (int i = 0; i < TOOLS; i++) {
        char *argv[] = {TOOL, (char *)name, "incr", "hits", i == 0 ? "-1" : "2", "2000", NULL};
        pids[i] = check_spawn(argv, NULL, &outs[i]);
        REQUIRE(pids[i] > 0);
    }
    for (int i = 0; i < EACH; i++)
        CHECK_RC(incr_str(s, "hits", 3, NULL), 0);
    for (int i = 0; i < TOOLS; i++) {
        char text[64];
        check_read_all(outs[i], text, sizeof text);
        int status = check_wait(pids[i]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    CHECK_GET(s, "hits", "12000"); /* 2000 * (-1 + 2 + 2 + 3) */
    CHECK_EQ(kv_version(s), 4 * EACH);
}


/* Layout 2: counters live in heap chunks among values of other sizes; each increment takes a new
 * chunk and frees the old. When the heap has no room for the new chunk, KV_EFULL, and the counter
 * keeps its value. */
static void counters_among_values_of_mixed_sizes_in_a_heap(void)
{
    kv_options opts = {.max_entries = 32, .key_max = 16, .value_max = 8000, .memory_bytes = 8192};
    kv_store *s = check_new_store(&opts, NULL);
    REQUIRE(s);
    CHECK_RC(check_set_filled(s, "big", 3000, 'b'), 0);
    CHECK_RC(check_set_str(s, "n", "98"), 0);
    CHECK_RC(check_set_filled(s, "mid", 500, 'm'), 0);
    int64_t v = 0;
    for (int i = 0; i < 5; i++) /* 98 -> 103: the digits grow, the chunk moves each time */
        CHECK_RC(incr_str(s, "n", 1, &v), 0);
    CHECK_EQ(v, 103);
    CHECK_GET(s, "n", "103");
    CHECK_RC(incr_str(s, "fresh", -7, &v), 0); /* a new key: a chunk of its own */
    CHECK_EQ(v, -7);
    CHECK_RC(incr_str(s, "big", 1, &v), KV_ENOTNUM); /* longer than any int64 */
    CHECK_FILLED(s, "big", 3000, 'b');
    CHECK_FILLED(s, "mid", 500, 'm');
    CHECK_RC(kv_check(s), 0);
    /* Fill the heap to its last byte, in values of falling sizes. */
    char key[16];
    int made = 0;
    for (size_t len = 2048; len >= 1; len /= 2)
        for (int rc = 0; rc == 0; made++) {
            snprintf(key, sizeof key, "f%d", made);
            rc = check_set_filled(s, key, len, 'f');
            if (rc)
                CHECK_RC(rc, KV_EFULL);
        }
    uint64_t used = kv_memory_used(s), version = kv_version(s);
    CHECK_RC(incr_str(s, "n", 1, &v), KV_EFULL);
    CHECK_RC(incr_str(s, "another", 1, &v), KV_EFULL);
    CHECK_GET(s, "n", "103");
    CHECK_EQ(kv_memory_used(s), used);
    CHECK_EQ(kv_version(s), version);
    /* Room again (a value deleted): the counter counts on. */
    CHECK_RC(kv_delete(s, "mid", 3), 0);
    CHECK_RC(incr_str(s, "n", 1, &v), 0);
    CHECK_EQ(v, 104);
    CHECK_FILLED(s, "big", 3000, 'b');
    CHECK_RC(kv_check(s), 0);
}

int main(void)
{
    RUN(a_missing_key_counts_as_zero_and_the_value_reads_as_digits);
    RUN(a_value_that_is_not_a_decimal_integer_is_refused_untouched);
    RUN(an_overflow_is_erange_and_changes_nothing);
    RUN(the_usual_refusals_apply);
    RUN(an_increment_killed_mid_write_is_all_or_nothing);
    RUN(processes_incrementing_together_sum_exactly);
    RUN(counters_among_values_of_mixed_sizes_in_a_heap);
    return CHECK_FINISH();
}
