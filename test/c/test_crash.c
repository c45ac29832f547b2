/* test_crash: a writer killed (SIGKILL) while it holds the lock, at each fault point of the library,
 * for each kind of write. The writer is build/kvtool_fault, another process, which dies where
 * KV_FAULT_POINT says. Afterwards this process must be able to write at once, and find the store
 * sound and holding exactly the old state (the write rolled back: points 1..6) or exactly the new one
 * (the write complete: points 7 and 8), the lock recovered once. */
#include "check.h"

#define FAULT_TOOL "build/kvtool_fault"

enum op { OP_INSERT, OP_UPDATE, OP_DELETE };
static const char *const op_names[] = {"insert", "update", "delete"};

/* The store before the crashing write: a and b live, c deleted so that an insert takes a slot from
 * the free list (recovery must put the list back as it was). */
#define A_OLD    "alpha"
#define A_NEW    "ALPHA (updated): a value much longer than the old one"
#define B_OLD    "bravo"
#define NEW_KEY  "newkey"
#define NEW_VAL  "inserted value"

static int prepare(kv_store *s)
{
    int ok = CHECK_RC(check_set_str(s, "a", A_OLD), 0);
    ok &= CHECK_RC(check_set_str(s, "b", B_OLD), 0);
    ok &= CHECK_RC(check_set_str(s, "c", "charlie"), 0);
    ok &= CHECK_RC(kv_delete(s, "c", 1), 0);
    return ok;
}

/* Fault points an operation passes. An update touches no index cell, so it never reaches point 5
 * ("after index update"); a delete copies no value, so it never reaches point 4 ("mid value copy")
 * nor 9 (in the allocator, splitting a free chunk); an insert frees no chunk, so it never reaches 10
 * (in the allocator, merging a freed chunk). There the tool must simply finish its write. */
static int passes(enum op op, int point)
{
    return !(op == OP_UPDATE && point == 5) && !(op == OP_DELETE && (point == 4 || point == 9)) &&
           !(op == OP_INSERT && point == 10);
}

/* Whether a write killed at `point` is complete: from the disarm (7) on, and while it frees the
 * old chunk (10, after it); the allocation (9) comes before the write touches the entry. */
static int complete_at(int point) { return point == 7 || point == 8 || point == 10; }

/* Run kvtool_fault NAME set|del ... with KV_FAULT_POINT=point; its wait status, or -1. */
static int run_faulty_writer(const char *name, enum op op, int point)
{
    char *set_new[] = {FAULT_TOOL, (char *)name, "set", NEW_KEY, NEW_VAL, NULL};
    char *update[] = {FAULT_TOOL, (char *)name, "set", "a", A_NEW, NULL};
    char *del[] = {FAULT_TOOL, (char *)name, "del", "b", NULL};
    return check_run_at_fault(op == OP_INSERT ? set_new : op == OP_UPDATE ? update : del, point);
}

/* The keys hold exactly the old or exactly the new state of op; `others` more keys are live. */
static void expect_state(kv_store *s, enum op op, int is_new, int others)
{
    CHECK_GET(s, "a", op == OP_UPDATE && is_new ? A_NEW : A_OLD);
    CHECK_GET(s, "b", op == OP_DELETE && is_new ? NULL : B_OLD);
    CHECK_GET(s, NEW_KEY, op == OP_INSERT && is_new ? NEW_VAL : NULL);
    CHECK_GET(s, "c", NULL);
    CHECK_EQ(kv_count(s), 2 + others + (is_new && op == OP_INSERT) - (is_new && op == OP_DELETE));
}

/* The ring holds op's change under revision. */
static void expect_change(kv_store *s, enum op op, uint64_t revision)
{
    if (op == OP_INSERT)
        CHECK_CHANGE(s, revision, KV_CHANGE_SET, NEW_KEY, NEW_VAL);
    else if (op == OP_UPDATE)
        CHECK_CHANGE(s, revision, KV_CHANGE_SET, "a", A_NEW);
    else
        CHECK_CHANGE(s, revision, KV_CHANGE_DELETE, "b", "");
}

static void crash_at(enum op op, int point)
{
    const char *name;
    kv_store *s = check_new_store(NULL, &name);
    REQUIRE(s);
    REQUIRE(prepare(s));
    uint64_t version = kv_version(s), recoveries = kv_lock_recoveries(s);

    int status = run_faulty_writer(name, op, point);
    int died = passes(op, point);
    if (died)
        CHECK(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    else
        CHECK(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    int complete = !died || complete_at(point);

    /* The next writer recovers at once: no waiting on a dead owner. */
    double t0 = check_now();
    CHECK_RC(check_set_str(s, "after", "x"), 0);
    double took = check_now() - t0;
    if (!CHECK(took < 1.0))
        printf("  (kv_set after the crash took %.3f s)\n", took);
    int rc = kv_check(s);
    if (!CHECK_RC(rc, 0))
        printf("  (kv_check: %s)\n", kv_check_detail(s));
    CHECK_EQ(kv_lock_recoveries(s), recoveries + (died ? 1 : 0));
    /* The crashed write counts once if it completed, not at all if rolled back; then ours. */
    CHECK_EQ(kv_version(s), version + complete + 1);
    char buf[8];
    size_t len = 0;
    uint64_t rev = 0;
    CHECK_RC(kv_get_rev(s, "after", 5, buf, sizeof buf, &len, NULL, &rev), 0);
    CHECK_MEM(buf, len, "x", 1);
    CHECK_EQ(rev, kv_version(s));
    expect_state(s, op, complete, 1);
    /* The ring: our write under its revision, never the dead writer's record of a rolled-back
     * write; a completed one under the revision before ours. */
    CHECK_CHANGE(s, version + complete + 1, KV_CHANGE_SET, "after", "x");
    if (complete)
        expect_change(s, op, version + 1);
    /* And the store goes on working. */
    CHECK_RC(check_set_str(s, "after", "y"), 0);
    CHECK_RC(kv_check(s), 0);
}

/* A ring reader is the first to come along after a crash: a rolled-back write must not be
 * reported (at point 6 its record and the version are already written), a completed one must. */
static void change_reader_after_crash(int point)
{
    const char *name;
    kv_store *s = check_new_store(NULL, &name);
    REQUIRE(s);
    REQUIRE(prepare(s));
    uint64_t version = kv_version(s), recoveries = kv_lock_recoveries(s);
    int status = run_faulty_writer(name, OP_INSERT, point);
    REQUIRE(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    if (point >= 7)
        expect_change(s, OP_INSERT, version + 1);
    else
        CHECK_RC(read_change(s, version + 1).rc, KV_NOTFOUND);
    CHECK_CHANGE(s, version, KV_CHANGE_DELETE, "c", ""); /* the last write before the crash */
    CHECK_RC(kv_check(s), 0);
    CHECK_EQ(kv_lock_recoveries(s), recoveries + 1);
}

/* A reader, not a writer, is the first to come along after a crash in mid value copy: it must not
 * return the half-written value, and must not hang. The value is copied into a new chunk before
 * the entry is touched, so the reader reads the old value lock-free; the next locker repairs. */
static void reader_after_crash_mid_copy_sees_old_value(void)
{
    const char *name;
    kv_store *s = check_new_store(NULL, &name);
    REQUIRE(s);
    REQUIRE(prepare(s));
    uint64_t recoveries = kv_lock_recoveries(s);
    int status = run_faulty_writer(name, OP_UPDATE, 4);
    REQUIRE(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    double t0 = check_now();
    CHECK_GET(s, "a", A_OLD);
    CHECK(check_now() - t0 < 1.0);
    CHECK_RC(kv_repair(s), 0);
    CHECK_EQ(kv_lock_recoveries(s), recoveries + 1);
    CHECK_GET(s, "a", A_OLD);
    CHECK_RC(kv_check(s), 0);
}

/* A writer stopped (SIGSTOP) inside the lock, half-way through a value: a handle with a lock timeout
 * gets KV_EBUSY within it instead of waiting, and so does a kv_resize given one; kv_lock_held_ms
 * tells how long the lock has been held, and once the writer goes on, its write completes and the
 * lock is free again. */
static void stopped_writer_makes_lockers_busy(void)
{
    const char *name;
    kv_store *s = check_new_store(NULL, &name);
    REQUIRE(s);
    REQUIRE(prepare(s));
    char *argv[] = {FAULT_TOOL, (char *)name, "set", "a", A_NEW, NULL};
    pid_t pid = check_spawn(argv, "KV_FAULT_POINT=4:stop", NULL);
    REQUIRE(pid > 0);
    int status;
    REQUIRE(waitpid(pid, &status, WUNTRACED) == pid && WIFSTOPPED(status));
    kv_set_lock_timeout(s, 0);
    double t0 = check_now();
    CHECK_RC(check_set_str(s, "b", "x"), KV_EBUSY);
    CHECK_RC(kv_repair(s), KV_EBUSY);
    CHECK(check_now() - t0 < 0.5);
    kv_set_lock_timeout(s, 50);
    t0 = check_now();
    CHECK_RC(kv_delete(s, "b", 1), KV_EBUSY);
    double waited = check_now() - t0;
    CHECK(waited >= 0.045 && waited < 1.0);
    CHECK(kv_lock_held_ms(s) >= 45);
    CHECK_GET(s, "b", B_OLD);
    /* A resize gives up as a write does, within its own timeout, and changes nothing. */
    uint32_t capacity = kv_max_entries(s);
    kv_options grow = {.max_entries = capacity + 10, .lock_timeout_ms = 50};
    t0 = check_now();
    CHECK_RC(kv_resize(name, &grow), KV_EBUSY);
    waited = check_now() - t0;
    CHECK(waited >= 0.045 && waited < 1.0);
    CHECK_EQ(kv_max_entries(s), capacity);
    kill(pid, SIGCONT);
    status = check_wait(pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_EQ(kv_lock_held_ms(s), 0);
    kv_set_lock_timeout(s, -1);
    CHECK_GET(s, "a", A_NEW);
    CHECK_RC(check_set_str(s, "b", "x"), 0);
    CHECK_RC(kv_check(s), 0);
}

/* A crash, then a second writer that recovers and itself dies holding the lock (point 1 comes after
 * the lock, so after its recovery): the third comer recovers again and still sees the old state. */
static void crash_during_recovery_aftermath(void)
{
    const char *name;
    kv_store *s = check_new_store(NULL, &name);
    REQUIRE(s);
    REQUIRE(prepare(s));
    uint64_t version = kv_version(s), recoveries = kv_lock_recoveries(s);
    int status = run_faulty_writer(name, OP_UPDATE, 4);
    CHECK(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    status = run_faulty_writer(name, OP_INSERT, 1);
    CHECK(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CHECK_RC(kv_check(s), 0);
    CHECK_EQ(kv_lock_recoveries(s), recoveries + 2);
    CHECK_EQ(kv_version(s), version);
    expect_state(s, OP_UPDATE, 0, 0);
    expect_state(s, OP_INSERT, 0, 0);
}

int main(void)
{
    if (access(FAULT_TOOL, X_OK) != 0) {
        check_begin("fault_tool_built");
        CHECK(access(FAULT_TOOL, X_OK) == 0); /* make tools; run from the repository root */
        check_end();
        return CHECK_FINISH();
    }
    char name[64];
    for (int op = OP_INSERT; op <= OP_DELETE; op++)
        for (int point = 1; point <= 10; point++) {
            snprintf(name, sizeof name, "crash_at(%s, point %d)", op_names[op], point);
            check_begin(name);
            crash_at((enum op)op, point);
            check_end();
        }
    for (int point = 1; point <= 8; point++) {
        snprintf(name, sizeof name, "change_reader_after_crash(point %d)", point);
        check_begin(name);
        change_reader_after_crash(point);
        check_end();
    }
    RUN(reader_after_crash_mid_copy_sees_old_value);
    RUN(crash_during_recovery_aftermath);
    RUN(stopped_writer_makes_lockers_busy);
    return CHECK_FINISH();
}
