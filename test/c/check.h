/* check.h: the tiny test harness of the shmkv C suite.
 *
 * A test is a void function run with RUN(fn). Checks never abort the process: CHECK* records a failure
 * (one line, file:line, on stdout) and the test goes on; REQUIRE* also returns from the test, for the
 * cases where going on would only crash (a NULL handle). Whatever a test allocates that must not
 * outlive it (shm names, open handles) is registered with check_defer(); RUN undoes it after the test,
 * passed or failed, last registered first. check_shm_name() hands out a fresh name and registers its
 * unlink, so every test leaves /dev/shm as it found it.
 *
 * The binary ends with `return CHECK_FINISH();`, which prints, as the last line,
 * `NAME: N passed, N failed` (N counts tests) and returns the exit status. */
#ifndef SHMKV_CHECK_H
#define SHMKV_CHECK_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "shared_memory_kv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define CHECK_MAX_DEFER 64
#define CHECK_MAX_NAMES 64
#define CHECK_NAME_PREFIX "/shmkv-ctest-"

typedef struct check_deferred {
    void (*fn)(void *);
    void *arg;
} check_deferred;

static struct {
    const char *test;           /* the test running now */
    int failures;               /* failed checks in it */
    int passed, failed;         /* tests */
    unsigned names;             /* shm names handed out, for uniqueness */
    char name[CHECK_MAX_NAMES][64];
    int nname;
    check_deferred defer[CHECK_MAX_DEFER];
    int ndefer;
} check_state;

/* ---- checks ------------------------------------------------------------------------------------ */

static inline void check_fail_line(const char *file, int line)
{
    check_state.failures++;
    printf("%s:%d: in %s: ", file, line, check_state.test ? check_state.test : "(setup)");
}

static inline int check_true(int ok, const char *file, int line, const char *expr)
{
    if (ok)
        return 1;
    check_fail_line(file, line);
    printf("CHECK(%s) failed\n", expr);
    fflush(stdout);
    return 0;
}

static inline int check_eq(long long got, long long want, const char *file, int line,
                           const char *got_expr, const char *want_expr)
{
    if (got == want)
        return 1;
    check_fail_line(file, line);
    printf("%s == %s failed: got %lld (0x%llx), want %lld (0x%llx)\n", got_expr, want_expr, got,
           (unsigned long long)got, want, (unsigned long long)want);
    fflush(stdout);
    return 0;
}

/* A return code: failures name both codes. */
static inline int check_rc(int got, int want, const char *file, int line, const char *expr)
{
    if (got == want)
        return 1;
    check_fail_line(file, line);
    printf("%s: got %d (%s), want %d (%s)\n", expr, got, kv_strerror(got), want, kv_strerror(want));
    fflush(stdout);
    return 0;
}

static inline int check_mem(const void *got, size_t got_len, const void *want, size_t want_len,
                            const char *file, int line, const char *expr)
{
    if (got_len == want_len && (want_len == 0 || memcmp(got, want, want_len) == 0))
        return 1;
    check_fail_line(file, line);
    printf("%s: got %zu bytes \"%.*s\", want %zu bytes \"%.*s\"\n", expr, got_len,
           (int)(got_len > 80 ? 80 : got_len), (const char *)got, want_len,
           (int)(want_len > 80 ? 80 : want_len), (const char *)want);
    fflush(stdout);
    return 0;
}

#define CHECK(cond)       check_true(!!(cond), __FILE__, __LINE__, #cond)
#define CHECK_EQ(a, b)    check_eq((long long)(a), (long long)(b), __FILE__, __LINE__, #a, #b)
#define CHECK_RC(expr, w) check_rc((expr), (w), __FILE__, __LINE__, #expr)
#define CHECK_MEM(got, got_len, want, want_len) \
    check_mem((got), (got_len), (want), (want_len), __FILE__, __LINE__, #got)

#define REQUIRE(cond)                 \
    do {                              \
        if (!CHECK(cond))             \
            return;                   \
    } while (0)
#define REQUIRE_RC(expr, w)           \
    do {                              \
        if (!CHECK_RC(expr, w))       \
            return;                   \
    } while (0)

/* ---- cleanup ----------------------------------------------------------------------------------- */

static inline void check_defer(void (*fn)(void *), void *arg)
{
    if (check_state.ndefer == CHECK_MAX_DEFER) {
        fprintf(stderr, "check.h: too many deferred actions\n");
        abort();
    }
    check_state.defer[check_state.ndefer++] = (check_deferred){fn, arg};
}

/* Run the deferred action registered with arg now (e.g. close a handle early), not at the end. */
static inline void check_undefer(void *arg)
{
    for (int i = check_state.ndefer - 1; i >= 0; i--) {
        if (check_state.defer[i].arg != arg)
            continue;
        check_deferred d = check_state.defer[i];
        memmove(&check_state.defer[i], &check_state.defer[i + 1],
                (size_t)(check_state.ndefer - i - 1) * sizeof d);
        check_state.ndefer--;
        d.fn(d.arg);
        return;
    }
}

static inline void check_unlink_name(void *name) { shm_unlink((const char *)name); }

/* Sanitizer findings are failures, not noise. UndefinedBehaviorSanitizer reports go on (the program
 * stays usable) but fail the test that caused them, through the summary hook below. AddressSanitizer
 * errors end the process: its death callback, and a SIGABRT handler for abort(), still unlink this
 * test's segments, as a failed check would. */
static void check_unlink_all(void)
{
    for (int i = 0; i < check_state.ndefer; i++)
        if (check_state.defer[i].fn == check_unlink_name)
            check_unlink_name(check_state.defer[i].arg);
}

static void check_on_abort(int sig)
{
    check_unlink_all();
    signal(sig, SIG_DFL);
    raise(sig);
}

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>

const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void)
{
    return "halt_on_error=0:print_stacktrace=1:print_summary=1";
}

/* Called by the sanitizers with "SUMMARY: ...: <kind> <file>:<line>:<col> in <function>". */
void __sanitizer_report_error_summary(const char *summary)
{
    check_state.failures++;
    printf("%s (in %s)\n", summary, check_state.test ? check_state.test : "(setup)");
    fflush(stdout);
}
#endif

static inline void check_arm_cleanup(void)
{
    static int armed;
    if (armed++)
        return;
    signal(SIGABRT, check_on_abort);
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_set_death_callback(check_unlink_all);
#endif
}

/* A fresh shm name for this test, unlinked after it whatever happens. */
static inline const char *check_shm_name(void)
{
    if (check_state.nname == CHECK_MAX_NAMES) {
        fprintf(stderr, "check.h: too many shm names in one test\n");
        abort();
    }
    char *name = check_state.name[check_state.nname++];
    snprintf(name, sizeof check_state.name[0], CHECK_NAME_PREFIX "%ld-%u", (long)getpid(),
             check_state.names++);
    check_defer(check_unlink_name, name);
    return name;
}

static inline void check_close_store(void *s) { kv_close((kv_store *)s); }

/* kv_open whose handle is closed after the test. NULL on failure, with *rc set either way. */
static inline kv_store *check_open(const char *name, int flags, const kv_options *opts, int *rc)
{
    kv_store *s = NULL;
    *rc = kv_open(name, flags, opts, &s);
    if (*rc == 0)
        check_defer(check_close_store, s);
    return s;
}

/* A new store under a fresh name (*name_out, when not NULL); NULL, with a failed check, when it
 * cannot be made. */
#define check_new_store(...) check_new_store_at(__FILE__, __LINE__, __VA_ARGS__)
static inline kv_store *check_new_store_at(const char *file, int line, const kv_options *opts,
                                           const char **name_out)
{
    const char *name = check_shm_name();
    int rc;
    kv_store *s = check_open(name, KV_CREATE | KV_EXCL, opts, &rc);
    check_rc(rc, 0, file, line, "kv_open(fresh name, KV_CREATE | KV_EXCL)");
    if (name_out)
        *name_out = name;
    return s;
}

static inline int check_set_str(kv_store *s, const char *key, const char *value)
{
    return kv_set(s, key, strlen(key), value, strlen(value));
}

/* The store holds key = want exactly, or (want NULL) no such key. */
static inline int check_get_at(kv_store *s, const char *key, const char *want, const char *file,
                               int line)
{
    static char buf[KV_LIMIT_VALUE_MAX];
    size_t len = 0;
    int rc = kv_get(s, key, strlen(key), buf, sizeof buf, &len, NULL);
    char expr[160];
    snprintf(expr, sizeof expr, "kv_get(\"%.100s\")", key);
    if (!want)
        return check_rc(rc, KV_NOTFOUND, file, line, expr);
    return check_rc(rc, 0, file, line, expr) && check_mem(buf, len, want, strlen(want), file, line, expr);
}

#define CHECK_GET(s, key, want) check_get_at((s), (key), (want), __FILE__, __LINE__)

/* Values of a chosen size (a store with a heap holds each in a chunk of its own size): key = `len`
 * bytes of `fill`, set, or checked to be what the store holds. */
#define CHECK_FILLED_MAX 65536
static inline int check_set_filled(kv_store *s, const char *key, size_t len, char fill)
{
    static char value[CHECK_FILLED_MAX];
    memset(value, fill, len < sizeof value ? len : sizeof value);
    return len < sizeof value ? kv_set(s, key, strlen(key), value, len) : KV_EINVAL;
}

static inline int check_filled_at(kv_store *s, const char *key, size_t len, char fill,
                                  const char *file, int line)
{
    static char want[CHECK_FILLED_MAX];
    if (len >= sizeof want)
        return check_true(0, file, line, "len < CHECK_FILLED_MAX");
    memset(want, fill, len);
    want[len] = 0;
    return check_get_at(s, key, want, file, line);
}

#define CHECK_FILLED(s, key, len, fill) check_filled_at((s), (key), (len), (fill), __FILE__, __LINE__)

/* One change of the ring, as kv_change reports it. */
typedef struct change {
    int rc, op;
    char key[64], value[256];
    size_t key_len, value_len;
    int64_t timestamp;
} change;

static inline change read_change(kv_store *s, uint64_t revision)
{
    change c = {.op = -1, .key_len = 999, .value_len = 999};
    c.rc = kv_change(s, revision, &c.op, c.key, sizeof c.key, &c.key_len, c.value, sizeof c.value,
                     &c.value_len, &c.timestamp);
    return c;
}

/* The change that made `revision` was op on key (and value, for a set). */
#define CHECK_CHANGE(s, revision, op_, key_, value_)                          \
    do {                                                                      \
        change c_ = read_change((s), (revision));                             \
        if (CHECK_RC(c_.rc, 0)) {                                             \
            CHECK_EQ(c_.op, op_);                                             \
            CHECK_MEM(c_.key, c_.key_len, key_, strlen(key_));                \
            CHECK_MEM(c_.value, c_.value_len, value_, strlen(value_));        \
        }                                                                     \
    } while (0)

/* ---- running ----------------------------------------------------------------------------------- */

/* A test is everything between check_begin and check_end; RUN(fn) wraps a whole function, a loop
 * over cases calls the pair itself (name must stay valid until check_end). */
static inline void check_begin(const char *name)
{
    check_arm_cleanup();
    check_state.test = name;
    check_state.failures = 0;
}

static inline void check_end(void)
{
    while (check_state.ndefer > 0) {
        check_deferred d = check_state.defer[--check_state.ndefer];
        d.fn(d.arg);
    }
    check_state.nname = 0;
    if (check_state.failures)
        check_state.failed++;
    else
        check_state.passed++;
    check_state.test = NULL;
}

#define RUN(fn)             \
    do {                    \
        check_begin(#fn);   \
        fn();               \
        check_end();        \
    } while (0)

/* Every name this process handed out must be gone again. */
static inline void check_dev_shm_clean(void)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s%ld-", CHECK_NAME_PREFIX + 1, (long)getpid());
    DIR *d = opendir("/dev/shm");
    int left = 0;
    if (d) {
        for (struct dirent *e; (e = readdir(d));)
            left += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
        closedir(d);
    }
    check_begin("dev_shm_left_as_found");
    CHECK_EQ(left, 0);
    check_end();
}

/* The summary line; `file` is __FILE__, whose base name without ".c" names the binary. */
static inline int check_finish(const char *file)
{
    check_dev_shm_clean();
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    size_t len = strlen(base);
    if (len > 2 && strcmp(base + len - 2, ".c") == 0)
        len -= 2;
    printf("%.*s: %d passed, %d failed\n", (int)len, base, check_state.passed, check_state.failed);
    fflush(stdout);
    return check_state.failed ? 1 : 0;
}

#define CHECK_FINISH() check_finish(__FILE__)

/* ---- utilities --------------------------------------------------------------------------------- */

static inline double check_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Start argv[0] (a path) with `extra_env` ("NAME=value" or NULL) added to the environment. With
 * out_fd non-NULL its stdout goes to a pipe whose read end is returned there. -1 on failure. */
static inline pid_t check_spawn(char *const argv[], const char *extra_env, int *out_fd)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **envp = calloc(n + 2, sizeof *envp);
    if (!envp)
        return -1;
    memcpy(envp, environ, n * sizeof *envp);
    envp[n] = (char *)extra_env;
    int pipe_fd[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (out_fd) {
        if (pipe2(pipe_fd, O_CLOEXEC) < 0) {
            free(envp);
            posix_spawn_file_actions_destroy(&fa);
            return -1;
        }
        posix_spawn_file_actions_adddup2(&fa, pipe_fd[1], STDOUT_FILENO);
    }
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    free(envp);
    if (out_fd) {
        close(pipe_fd[1]);
        if (rc)
            close(pipe_fd[0]);
        else
            *out_fd = pipe_fd[0];
    }
    return rc ? -1 : pid;
}

/* waitpid, retried on EINTR: the raw status, or -1. */
static inline int check_wait(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return status;
}

/* Read fd to EOF into buf (NUL-terminated, truncated to cap - 1) and close it. */
static inline size_t check_read_all(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == cap - 1)
            break;
    }
    buf[len] = 0;
    close(fd);
    return len;
}

/* Run argv (a kvtool_fault command line) with KV_FAULT_POINT=point, its output discarded: its wait
 * status, or -1 when it cannot start. */
static inline int check_run_at_fault(char *const argv[], int point)
{
    char env[32];
    snprintf(env, sizeof env, "KV_FAULT_POINT=%d", point);
    int out = -1;
    char text[256];
    pid_t pid = check_spawn(argv, env, &out);
    if (pid < 0)
        return -1;
    check_read_all(out, text, sizeof text);
    return check_wait(pid);
}

#endif
