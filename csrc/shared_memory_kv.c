/* shmkv: the store. See shared_memory_kv.h for the contract and the layout.
 *
 * Concurrency in one paragraph: writers serialise on the robust mutex. Before touching anything a
 * writer arms an undo record (a copy of the one entry it will change plus the header counters), then
 * makes seq odd, mutates, makes seq even and disarms. A writer that dies anywhere in there leaves the
 * mutex EOWNERDEAD; the next locker restores the entry and counters from the armed record and rebuilds
 * the index from the entries (the only structure a write may have left half-shifted). Readers take no
 * lock: they copy under the seqlock and retry when seq moved. */
#define _GNU_SOURCE
#include "shared_memory_kv.h"
#include "layout.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KV_READY_WAIT_MS 1000  /* how long an opener waits for a creator to finish */
#define KV_RETRY         1     /* internal: a lock-free read saw a torn state */
#define KV_MOVED         2     /* internal: a resize superseded the segment; follow it and retry */

struct kv_store {
    int            fd;
    unsigned char *base;
    size_t         size;
    kv_header     *h;
    uint32_t      *index;
    unsigned char *entries;
    unsigned char *ring;
    /* Geometry as validated at open. Never re-read from the segment: another process could change
     * those bytes, and every bound below must hold whatever the segment says. */
    uint32_t       max_entries, key_max, value_max, entry_size, index_mask;
    int32_t        lock_timeout_ms; /* how long this handle waits for the lock; < 0: for ever */
    const char    *check_detail;
    /* Following a resize (see "following a resize" below): the name to open again, the flags to open
     * it with, and the mapping that replaced this one. A replaced mapping stays mapped until
     * kv_close, so a thread still reading it never faults. */
    char           name[KV_NAME_MAX + 1];
    int            open_flags;
    kv_store      *successor;
};

/* Sizes derived from a geometry; the header must agree with them exactly. */
typedef struct kv_geometry {
    uint32_t max_entries, key_max, value_max;
    uint32_t header_size, entry_size, index_cells;
    uint64_t entries_off, ring_off, total_size;
} kv_geometry;

/* ---- fault injection (test builds only) ------------------------------------------------------ */

#ifdef KV_FAULT_INJECTION
/* KV_FAULT_POINT=n in the environment makes a writer SIGKILL itself at point n, lock held;
 * KV_FAULT_POINT=n:stop makes it stop (SIGSTOP) there instead, as a hung writer would. */
static void kv_fault(int point)
{
    static int armed = -1, sig = SIGKILL;
    if (armed < 0) {
        const char *env = getenv("KV_FAULT_POINT");
        armed = env ? atoi(env) : 0;
        if (env && strstr(env, ":stop"))
            sig = SIGSTOP;
    }
    if (armed == point)
        raise(sig);
}
#define KV_FAULT(n) kv_fault(n)
#else
#define KV_FAULT(n) ((void)0)
#endif

/* Following a resize: defined with kv_resize, used by recovery, the lock and every entry point. */
static int superseded(const kv_store *s);
static void settle_resize(kv_store *s);
static kv_store *current(kv_store *s, int *rc);
static void unlock_store(kv_store *s);

/* Run `call` on the handle's current mapping (s is moved on to it), and again on the next one while
 * the call answers KV_MOVED: a resize superseded the mapping between the check and the lock. */
#define KV_ON_CURRENT(s, call)                                                                     \
    do {                                                                                           \
        for (;;) {                                                                                 \
            int rc_;                                                                               \
            if (!((s) = current((s), &rc_)))                                                       \
                return rc_;                                                                        \
            if ((rc_ = (call)) != KV_MOVED)                                                        \
                return rc_;                                                                        \
        }                                                                                          \
    } while (0)

/* ---- small helpers --------------------------------------------------------------------------- */

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int64_t now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

uint32_t kv_hash(const char *key, size_t key_len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < key_len; i++) {
        h ^= (unsigned char)key[i];
        h *= 16777619u;
    }
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

/* "/" and 1..254 bytes with no other "/" and no control character: a name with a newline or an
 * escape sequence would make a file that listings and logs show as something else. */
static int valid_name(const char *name)
{
    if (!name || name[0] != '/')
        return 0;
    size_t len = strnlen(name, KV_NAME_MAX + 1);
    if (len < 2 || len > KV_NAME_MAX)
        return 0;
    for (size_t i = 1; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '/' || c < 0x20 || c == 0x7f)
            return 0;
    }
    return 1;
}

static int compute_geometry(uint32_t max_entries, uint32_t key_max, uint32_t value_max,
                            kv_geometry *g)
{
    if (max_entries < 1 || max_entries > KV_LIMIT_MAX_ENTRIES || key_max < 1 ||
        key_max > KV_LIMIT_KEY_MAX || value_max < 1 || value_max > KV_LIMIT_VALUE_MAX)
        return KV_EINVAL;
    g->max_entries = max_entries;
    g->key_max = key_max;
    g->value_max = value_max;
    g->entry_size = (uint32_t)align_up(KV_ENTRY_HEAD + (uint64_t)key_max + value_max, 8);
    g->header_size = (uint32_t)align_up(KV_UNDO_ENTRY_OFF + (uint64_t)g->entry_size, 64);
    g->index_cells = 1;
    while (g->index_cells < 2 * max_entries)
        g->index_cells <<= 1;
    g->entries_off = align_up(g->header_size + 4ull * g->index_cells, 64);
    g->ring_off = g->entries_off + (uint64_t)max_entries * g->entry_size;
    g->total_size = g->ring_off + (uint64_t)KV_RING_CELLS * g->entry_size;
    return 0;
}

static kv_entry *entry_at(const kv_store *s, uint32_t slot)
{
    return (kv_entry *)(s->entries + (size_t)slot * s->entry_size);
}

static kv_entry *undo_entry(const kv_store *s)
{
    return (kv_entry *)(s->base + KV_UNDO_ENTRY_OFF);
}

/* Bytes of an entry worth saving. Clamped: the lengths are segment bytes, which anyone who can
 * write the segment can set to anything. */
static size_t entry_used_bytes(const kv_store *s, const kv_entry *e)
{
    uint32_t value_len = e->value_len <= s->value_max ? e->value_len : s->value_max;
    return e->key_len ? KV_ENTRY_HEAD + s->key_max + (size_t)value_len : KV_ENTRY_HEAD;
}

static int check_key(const kv_store *s, const char *key, size_t key_len)
{
    if (!s || !key || key_len == 0 || memchr(key, 0, key_len))
        return KV_EINVAL;
    return key_len > s->key_max ? KV_EKEYLEN : 0;
}

/* ---- the index -------------------------------------------------------------------------------- */

/* Where key lives, or would be inserted. Works on a torn view too: every slot is bounds-checked and
 * the probe is bounded. *slot is the entry's slot, or UINT32_MAX when absent. Returns the cell:
 * the key's, else the empty cell that ends its probe run, else (a corrupt, full index) UINT32_MAX. */
static uint32_t index_find(const kv_store *s, const char *key, uint32_t key_len, uint32_t hash,
                           uint32_t *slot)
{
    uint32_t pos = hash & s->index_mask;
    for (uint32_t n = 0; n <= s->index_mask; n++, pos = (pos + 1) & s->index_mask) {
        uint32_t cell = __atomic_load_n(&s->index[pos], __ATOMIC_RELAXED);
        if (cell == 0)
            break;
        if (cell - 1 >= s->max_entries)
            continue;
        const kv_entry *e = entry_at(s, cell - 1);
        if (__atomic_load_n(&e->hash, __ATOMIC_RELAXED) == hash &&
            __atomic_load_n(&e->key_len, __ATOMIC_RELAXED) == key_len &&
            memcmp(e->data, key, key_len) == 0) {
            *slot = cell - 1;
            return pos;
        }
    }
    *slot = UINT32_MAX;
    return __atomic_load_n(&s->index[pos], __ATOMIC_RELAXED) == 0 ? pos : UINT32_MAX;
}

/* Whether the probe run after `hole` (up to its empty cell) holds only cells index_remove can
 * follow. Checked before a delete arms its undo record, so a corrupt index fails the delete
 * cleanly instead of sending it out of bounds or round the table forever. */
static int index_run_sound(const kv_store *s, uint32_t hole)
{
    uint32_t pos = hole;
    for (uint32_t n = 0; n < s->index_mask; n++) {
        pos = (pos + 1) & s->index_mask;
        uint32_t cell = s->index[pos];
        if (cell == 0)
            return 1;
        if (cell - 1 >= s->max_entries)
            return 0;
    }
    return 0;
}

/* Backward-shift deletion: pull later cells of the same probe run into the hole so lookups never
 * need tombstones. The run was checked by index_run_sound. */
static void index_remove(kv_store *s, uint32_t hole)
{
    uint32_t pos = hole;
    for (;;) {
        pos = (pos + 1) & s->index_mask;
        uint32_t cell = s->index[pos];
        if (cell == 0)
            break;
        uint32_t home = entry_at(s, cell - 1)->hash & s->index_mask;
        /* The cell may move into the hole only if the hole lies on its probe path home..pos. */
        if (((pos - home) & s->index_mask) >= ((pos - hole) & s->index_mask)) {
            s->index[hole] = cell;
            hole = pos;
        }
    }
    s->index[hole] = 0;
}

static void index_rebuild(kv_store *s)
{
    uint32_t high = s->h->high_water;
    memset(s->index, 0, 4ull * (s->index_mask + 1));
    for (uint32_t slot = 0; slot < high && slot < s->max_entries; slot++) {
        const kv_entry *e = entry_at(s, slot);
        if (e->key_len == 0 || e->key_len > s->key_max)
            continue;
        uint32_t pos = e->hash & s->index_mask;
        while (s->index[pos])
            pos = (pos + 1) & s->index_mask;
        s->index[pos] = slot + 1;
    }
}

/* ---- the write lock and crash recovery -------------------------------------------------------- */

/* A seqlock counter (the store's, the index's or an entry's): odd from begin to end of a write. The
 * odd value is published with release order: a reader that sees it also sees the undo record armed
 * before it, and so knows which slot the write in progress touches (see the header, "Reading"). */
static void counter_begin(uint32_t *counter)
{
    __atomic_store_n(counter, *counter + 1, __ATOMIC_RELEASE);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

static void counter_end(uint32_t *counter)
{
    __atomic_store_n(counter, *counter + 1, __ATOMIC_RELEASE);
}

static void seq_begin(kv_header *h) { counter_begin(&h->seq); }
static void seq_end(kv_header *h) { counter_end(&h->seq); }

/* Save everything the coming write may change, then arm the record. */
static void undo_arm(kv_store *s, uint32_t slot)
{
    kv_header *h = s->h;
    kv_entry *e = entry_at(s, slot);
    h->undo.slot = slot;
    h->undo.entry_count = h->entry_count;
    h->undo.free_head = h->free_head;
    h->undo.high_water = h->high_water;
    h->undo.version = h->version;
    memcpy(undo_entry(s), e, entry_used_bytes(s, e));
    __atomic_store_n(&h->undo.state, KV_UNDO_ARMED, __ATOMIC_RELEASE);
}

static void undo_disarm(kv_store *s)
{
    __atomic_store_n(&s->h->undo.state, 0, __ATOMIC_RELEASE);
}

static kv_change_rec *change_at(const kv_store *s, uint64_t revision)
{
    return (kv_change_rec *)(s->ring + ((revision - 1) % KV_RING_CELLS) * s->entry_size);
}

/* Record a write in the change ring (lock held). A writer that dies half-way leaves a record whose
 * revision is 0 or one the rollback took back; the next write of that revision overwrites it, and
 * no reader asks for a revision above the version. */
static void ring_append(kv_store *s, uint64_t revision, uint32_t op, const char *key,
                        uint32_t key_len, const char *value, size_t value_len, int64_t timestamp)
{
    kv_change_rec *c = change_at(s, revision);
    __atomic_store_n(&c->revision, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    c->timestamp = timestamp;
    c->op = op;
    c->key_len = key_len;
    c->value_len = (uint32_t)value_len;
    memcpy(c->data, key, key_len);
    if (value_len)
        memcpy(c->data + s->key_max, value, value_len);
    __atomic_store_n(&c->revision, revision, __ATOMIC_RELEASE);
}

/* Called with the mutex in EOWNERDEAD state: put the store back as it was before the dead writer's
 * write. Idempotent, so a recoverer that dies too is recovered by the next locker. */
static void recover(kv_store *s)
{
    kv_header *h = s->h;
    if (!(h->seq & 1))
        seq_begin(h);
    /* Always a step of the index counter: a reader that read the entry being rolled back must see
     * a change even where the restored entry counter equals the one it saw before the write. */
    if (!(h->index_seq & 1))
        counter_begin(&h->index_seq);
    if (h->undo.state == KV_UNDO_ARMED && h->undo.slot < s->max_entries) {
        const kv_entry *saved = undo_entry(s);
        size_t used = saved->key_len && saved->key_len <= s->key_max &&
                              saved->value_len <= s->value_max
                          ? entry_used_bytes(s, saved)
                          : KV_ENTRY_HEAD;
        memcpy(entry_at(s, h->undo.slot), saved, used);
        h->entry_count = h->undo.entry_count;
        h->free_head = h->undo.free_head;
        h->high_water = h->undo.high_water;
        h->version = h->undo.version;
    }
    /* A writer that died after its disarm, before ending its entry's counter, left it odd: the write
     * stays, and the counter must be even again. */
    if (h->undo.slot < s->max_entries) {
        kv_entry *e = entry_at(s, h->undo.slot);
        if (e->key_len && (e->seq & 1))
            e->seq++;
    }
    index_rebuild(s);
    settle_resize(s);
    h->lock_recoveries++;
    counter_end(&h->index_seq);
    seq_end(h);
    undo_disarm(s);
}

/* Take the mutex as long as the handle's lock timeout allows: for ever, once, or until a deadline on
 * the monotonic clock. */
static int acquire_mutex(kv_store *s)
{
    pthread_mutex_t *m = &s->h->lock.mutex;
    if (s->lock_timeout_ms < 0)
        return pthread_mutex_lock(m);
    if (s->lock_timeout_ms == 0)
        return pthread_mutex_trylock(m);
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += s->lock_timeout_ms / 1000;
    deadline.tv_nsec += (long)(s->lock_timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    return pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &deadline);
}

/* Take the lock of this mapping, whether or not a resize has superseded it (copies of it stay true). */
static int lock_mapping(kv_store *s)
{
    int rc = acquire_mutex(s);
    if (rc == EBUSY || rc == ETIMEDOUT)
        return KV_EBUSY;
    if (rc == EOWNERDEAD) {
        recover(s);
        rc = pthread_mutex_consistent(&s->h->lock.mutex);
    }
    if (!rc) /* never 0: 0 means "free" */
        __atomic_store_n(&s->h->lock_since_ms, monotonic_ms() | 1, __ATOMIC_RELAXED);
    return -rc;
}

/* Take the lock to use the store: KV_MOVED, unlocked, when a resize has superseded this mapping.
 * Checked under the lock, so no write lands in a segment a resize has copied and replaced. */
static int lock_store(kv_store *s)
{
    int rc = lock_mapping(s);
    if (!rc && superseded(s)) {
        unlock_store(s);
        return KV_MOVED;
    }
    return rc;
}

static void unlock_store(kv_store *s)
{
    __atomic_store_n(&s->h->lock_since_ms, 0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&s->h->lock.mutex);
}

/* ---- open and close --------------------------------------------------------------------------- */

static int init_mutex(pthread_mutex_t *m)
{
    pthread_mutexattr_t attr;
    int rc = pthread_mutexattr_init(&attr);
    if (!rc)
        rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (!rc)
        rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (!rc)
        rc = pthread_mutex_init(m, &attr);
    pthread_mutexattr_destroy(&attr);
    return -rc;
}

static int map_store(kv_store *s, int fd, const kv_geometry *g)
{
    void *base = mmap(NULL, g->total_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED)
        return -errno;
    s->fd = fd;
    s->base = base;
    s->size = g->total_size;
    s->h = base;
    s->index = (uint32_t *)(s->base + g->header_size);
    s->entries = s->base + g->entries_off;
    s->ring = s->base + g->ring_off;
    s->max_entries = g->max_entries;
    s->key_max = g->key_max;
    s->value_max = g->value_max;
    s->entry_size = g->entry_size;
    s->index_mask = g->index_cells - 1;
    return 0;
}

/* Create and map a segment of geometry g with everything but the ready marker: kv_open publishes it
 * at once, kv_resize once it has copied the store into it. On failure nothing is left behind. */
static int make_segment(const char *name, const kv_geometry *gp, uint32_t mode, kv_store *s)
{
    kv_geometry g = *gp;
    int rc;
    if (mode > 0777)
        return KV_EINVAL;
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    /* fchmod, not the open mode: the umask must not narrow what the caller asked for. */
    if (fchmod(fd, mode) < 0)
        rc = -errno;
    else
        rc = -posix_fallocate(fd, 0, (off_t)g.total_size);
    if (!rc)
        rc = map_store(s, fd, &g);
    if (!rc) {
        kv_header *h = s->h;
        h->magic = KV_MAGIC;
        h->layout_version = KV_LAYOUT_VERSION;
        h->header_size = g.header_size;
        h->mutex_size = sizeof(pthread_mutex_t);
        h->max_entries = g.max_entries;
        h->key_max = g.key_max;
        h->value_max = g.value_max;
        h->entry_size = g.entry_size;
        h->index_cells = g.index_cells;
        h->entries_off = g.entries_off;
        h->total_size = g.total_size;
        h->ring_off = g.ring_off;
        h->ring_cells = KV_RING_CELLS;
        h->created = now_seconds();
        rc = init_mutex(&h->lock.mutex);
        if (rc)
            munmap(s->base, s->size);
    }
    if (rc) {
        shm_unlink(name);
        close(fd);
    }
    return rc;
}

static int create_segment(const char *name, const kv_options *o, kv_store *s)
{
    kv_geometry g;
    int rc = compute_geometry(o && o->max_entries ? o->max_entries : KV_DEFAULT_MAX_ENTRIES,
                              o && o->key_max ? o->key_max : KV_DEFAULT_KEY_MAX,
                              o && o->value_max ? o->value_max : KV_DEFAULT_VALUE_MAX, &g);
    if (!rc)
        rc = make_segment(name, &g, o && o->mode ? o->mode : KV_DEFAULT_MODE, s);
    if (!rc)
        __atomic_store_n(&s->h->ready, KV_READY, __ATOMIC_RELEASE);
    return rc;
}

/* Validate a header copy read with pread (never through the mapping, so a short file cannot
 * SIGBUS us) and derive the geometry it claims. */
static int validate_header(const kv_header *h, off_t file_size, kv_geometry *g)
{
    if (h->magic != KV_MAGIC || h->layout_version != KV_LAYOUT_VERSION ||
        h->mutex_size != sizeof(pthread_mutex_t))
        return KV_EINCOMPAT;
    if (compute_geometry(h->max_entries, h->key_max, h->value_max, g))
        return KV_EINCOMPAT;
    if (h->header_size != g->header_size || h->entry_size != g->entry_size ||
        h->index_cells != g->index_cells || h->entries_off != g->entries_off ||
        h->total_size != g->total_size || h->ring_off != g->ring_off ||
        h->ring_cells != KV_RING_CELLS || (uint64_t)file_size != g->total_size)
        return KV_EINCOMPAT;
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* KV_CHECK_OWNER: a segment this process may trust is its effective user's, and no one else may
 * write it. Checked on the open descriptor (the name could be replaced after a stat of it), before
 * a byte of it is read. */
static int check_owner(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    return st.st_uid != geteuid() || (st.st_mode & S_IWOTH) ? KV_EUNTRUSTED : 0;
}

static int open_segment(const char *name, int flags, kv_store *s)
{
    int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = flags & KV_CHECK_OWNER ? check_owner(fd) : 0;
    if (rc) {
        close(fd);
        return rc;
    }
    rc = KV_ENOTREADY;
    for (int waited = 0; waited <= KV_READY_WAIT_MS; waited += 10) {
        struct stat st;
        kv_header h;
        if (fstat(fd, &st) < 0) {
            rc = -errno;
            break;
        }
        /* A creator reserves the whole size at once, so size 0 means "still being made". */
        if (st.st_size != 0) {
            if ((size_t)st.st_size < sizeof h || pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h) {
                rc = KV_EINCOMPAT;
                break;
            }
            if (h.magic != 0 && h.magic != KV_MAGIC) {
                rc = KV_EINCOMPAT;
                break;
            }
            if (__atomic_load_n(&h.ready, __ATOMIC_ACQUIRE) == KV_READY) {
                kv_geometry g;
                rc = validate_header(&h, st.st_size, &g);
                if (!rc)
                    rc = map_store(s, fd, &g);
                break;
            }
        }
        sleep_ms(10);
    }
    if (rc)
        close(fd);
    return rc;
}

int kv_open(const char *name, int flags, const kv_options *opts, kv_store **out)
{
    if (!out)
        return KV_EINVAL;
    *out = NULL;
    int create = flags & KV_CREATE;
    if (!valid_name(name) || (flags & ~(KV_CREATE | KV_EXCL | KV_CHECK_OWNER)) ||
        ((flags & KV_EXCL) && !create))
        return KV_EINVAL;
    /* A segment this call would create must pass the check it asks for at every later open. */
    if (create && (flags & KV_CHECK_OWNER) && opts && (opts->mode & S_IWOTH))
        return KV_EINVAL;
    kv_store *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    int rc = -ENOENT;
    /* Open, else create, else (someone created it in between) open again. */
    for (int attempt = 0; attempt < 3; attempt++) {
        if (!(flags & KV_EXCL)) {
            rc = open_segment(name, flags, s);
            if (rc != -ENOENT || !create)
                break;
        }
        rc = create_segment(name, opts, s);
        if (rc != -EEXIST || (flags & KV_EXCL))
            break;
    }
    if (rc) {
        free(s);
        return rc;
    }
    s->check_detail = "";
    s->lock_timeout_ms = -1;
    strcpy(s->name, name); /* valid_name bounded it by KV_NAME_MAX */
    s->open_flags = flags & KV_CHECK_OWNER;
    *out = s;
    return 0;
}

void kv_close(kv_store *s)
{
    while (s) {
        kv_store *next = s->successor;
        munmap(s->base, s->size);
        close(s->fd);
        free(s);
        s = next;
    }
}

int kv_unlink(const char *name)
{
    if (!valid_name(name))
        return KV_EINVAL;
    return shm_unlink(name) < 0 ? -errno : 0;
}

/* ---- reads ------------------------------------------------------------------------------------ */

typedef struct kv_read {
    char    *buf;
    size_t   buf_len;
    size_t   value_len;
    int64_t  timestamp;
    uint64_t revision;
} kv_read;

/* Begin a lock-free read under `counter`: 1 with the (even) value to validate against, or 0 while a
 * write is in progress (the caller retries; after a few tries it yields the CPU to the writer). */
static int counter_read_begin(const uint32_t *counter, int attempt, uint32_t *before)
{
    *before = __atomic_load_n(counter, __ATOMIC_ACQUIRE);
    if (!(*before & 1))
        return 1;
    if (attempt > 8)
        sched_yield();
    return 0;
}

/* End a lock-free read: whether no write under `counter` overlapped it. */
static int counter_read_valid(const uint32_t *counter, uint32_t before)
{
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return __atomic_load_n(counter, __ATOMIC_RELAXED) == before;
}

/* One attempt at a read, with the index counter held even by the caller; the entry's own counter
 * validates the copy. KV_RETRY when what it saw cannot be a consistent state. */
static int read_once(const kv_store *s, const char *key, uint32_t key_len, uint32_t hash, kv_read *r)
{
    uint32_t slot;
    index_find(s, key, key_len, hash, &slot);
    if (slot == UINT32_MAX)
        return KV_NOTFOUND;
    const kv_entry *e = entry_at(s, slot);
    uint32_t before;
    if (!counter_read_begin(&e->seq, 0, &before))
        return KV_RETRY;
    uint32_t len = __atomic_load_n(&e->value_len, __ATOMIC_RELAXED);
    if (len > s->value_max)
        return KV_RETRY;
    r->value_len = len;
    r->timestamp = __atomic_load_n(&e->timestamp, __ATOMIC_RELAXED);
    r->revision = __atomic_load_n(&e->revision, __ATOMIC_RELAXED);
    int rc = len > r->buf_len ? KV_EBUFSIZE : 0;
    if (!rc && len)
        memcpy(r->buf, e->data + s->key_max, len);
    return counter_read_valid(&e->seq, before) ? rc : KV_RETRY;
}

/* Lock-free reads of one entry validate with the index counter and the entry's own: a write to
 * another key does not make them retry (the store-wide counter would). */
static int read_entry(kv_store *s, const char *key, uint32_t key_len, kv_read *r)
{
    uint32_t hash = kv_hash(key, key_len), before;
    for (int attempt = 0; attempt < KV_READ_SPINS; attempt++) {
        if (!counter_read_begin(&s->h->index_seq, attempt, &before))
            continue;
        int rc = read_once(s, key, key_len, hash, r);
        if (counter_read_valid(&s->h->index_seq, before) && rc != KV_RETRY)
            return rc;
    }
    /* Writers kept overlapping: read under the lock, which always terminates. */
    int rc = lock_store(s);
    if (rc)
        return rc;
    rc = read_once(s, key, key_len, hash, r);
    unlock_store(s);
    return rc == KV_RETRY ? KV_ECORRUPT : rc;
}

static int get_rev_at(kv_store *s, const char *key, size_t key_len, char *buf, size_t buf_len,
                      size_t *value_len, int64_t *timestamp, uint64_t *revision)
{
    int rc = check_key(s, key, key_len);
    if (rc)
        return rc;
    if (!buf && buf_len)
        return KV_EINVAL;
    kv_read r = {buf, buf_len, 0, 0, 0};
    rc = read_entry(s, key, (uint32_t)key_len, &r);
    if (rc && rc != KV_EBUFSIZE)
        return rc;
    if (value_len)
        *value_len = r.value_len;
    if (timestamp)
        *timestamp = r.timestamp;
    if (revision)
        *revision = r.revision;
    return rc;
}

int kv_get_rev(kv_store *s, const char *key, size_t key_len, char *buf, size_t buf_len,
               size_t *value_len, int64_t *timestamp, uint64_t *revision)
{
    KV_ON_CURRENT(s, get_rev_at(s, key, key_len, buf, buf_len, value_len, timestamp, revision));
}

int kv_get(kv_store *s, const char *key, size_t key_len, char *buf, size_t buf_len,
           size_t *value_len, int64_t *timestamp)
{
    return kv_get_rev(s, key, key_len, buf, buf_len, value_len, timestamp, NULL);
}

/* ---- writes ----------------------------------------------------------------------------------- */

/* Whether direct writers may write (lock held): not on a replica's segment. */
static int writable(const kv_store *s)
{
    return !(__atomic_load_n(&s->h->flags, __ATOMIC_RELAXED) & KV_FLAG_READONLY);
}

/* A free slot, UINT32_MAX when there is none, or KV_CORRUPT_SLOT when the free list or the high
 * water mark point somewhere no free slot can be. Freed slots first (LIFO), then never-used ones
 * in order, so slots fill in insertion order while nothing is deleted. */
#define KV_CORRUPT_SLOT (UINT32_MAX - 1)
static uint32_t peek_free_slot(const kv_store *s)
{
    const kv_header *h = s->h;
    if (h->high_water > s->max_entries)
        return KV_CORRUPT_SLOT;
    if (h->free_head) {
        uint32_t slot = h->free_head - 1;
        if (slot >= h->high_water)
            return KV_CORRUPT_SLOT;
        const kv_entry *e = entry_at(s, slot);
        return e->key_len == 0 && e->next_free <= h->high_water ? slot : KV_CORRUPT_SLOT;
    }
    return h->high_water < s->max_entries ? h->high_water : UINT32_MAX;
}

static void take_free_slot(kv_store *s, uint32_t slot)
{
    kv_header *h = s->h;
    if (h->free_head == slot + 1)
        h->free_head = entry_at(s, slot)->next_free;
    else
        h->high_water = slot + 1;
}

static void write_value(kv_store *s, kv_entry *e, const char *value, size_t value_len)
{
    if (value_len) { /* value may be NULL when empty: no pointer arithmetic on it then */
        size_t half = value_len / 2;
        memcpy(e->data + s->key_max, value, half);
        KV_FAULT(4); /* mid-copy: the entry holds half a value */
        memcpy(e->data + s->key_max + half, value + half, value_len - half);
    }
    e->value_len = (uint32_t)value_len;
}

/* What a write makes of the entry's revision and timestamp: the next version and now, or (kv_apply)
 * those given. */
typedef struct kv_stamp {
    uint64_t revision; /* 0: the next version */
    int64_t  timestamp;
} kv_stamp;

static uint64_t stamp_revision(kv_header *h, const kv_stamp *at)
{
    h->version = at->revision ? at->revision : h->version + 1;
    return h->version;
}

static int64_t stamp_time(const kv_stamp *at) { return at->revision ? at->timestamp : now_seconds(); }

static int set_locked(kv_store *s, const char *key, uint32_t key_len, const char *value,
                      size_t value_len, uint64_t expected_rev, uint64_t *current_rev,
                      const kv_stamp *at)
{
    kv_header *h = s->h;
    uint32_t hash = kv_hash(key, key_len), slot;
    uint32_t pos = index_find(s, key, key_len, hash, &slot);
    int is_new = slot == UINT32_MAX;
    uint64_t found_rev = is_new ? 0 : entry_at(s, slot)->revision;
    if (current_rev)
        *current_rev = found_rev;
    if (expected_rev != KV_ANY_REVISION && found_rev != expected_rev)
        return KV_ECONFLICT;
    if (is_new && pos == UINT32_MAX)
        return KV_ECORRUPT;
    if (is_new && (slot = peek_free_slot(s)) == UINT32_MAX)
        return KV_EFULL;
    if (slot == KV_CORRUPT_SLOT)
        return KV_ECORRUPT;
    KV_FAULT(1);
    undo_arm(s, slot);
    KV_FAULT(2);
    seq_begin(h);
    KV_FAULT(3);
    kv_entry *e = entry_at(s, slot);
    /* A new key moves the index (its counter guards it); a new value only the entry (its own). */
    uint32_t *guard = is_new ? &h->index_seq : &e->seq;
    counter_begin(guard);
    if (is_new) {
        take_free_slot(s, slot);
        e->value_len = 0; /* a reader must never pair this key with a stale value length */
        e->hash = hash;
        memcpy(e->data, key, key_len);
        e->key_len = key_len;
        e->seq = 0;
        s->index[pos] = slot + 1;
        h->entry_count++;
        KV_FAULT(5);
    }
    write_value(s, e, value, value_len);
    e->timestamp = stamp_time(at);
    e->revision = stamp_revision(h, at);
    ring_append(s, e->revision, KV_CHANGE_SET, key, key_len, value, value_len, e->timestamp);
    KV_FAULT(6);
    /* Disarm, then end the counters: from the disarm on the write is complete and a recoverer keeps
     * it; ending a counter before it would let a reader see a write that a repair then undoes. */
    undo_disarm(s);
    KV_FAULT(7);
    counter_end(guard);
    seq_end(h);
    KV_FAULT(8);
    if (current_rev)
        *current_rev = e->revision;
    return 0;
}

static int set_if_at(kv_store *s, const char *key, size_t key_len, const char *value,
                     size_t value_len, uint64_t expected_rev, uint64_t *current_rev)
{
    int rc = check_key(s, key, key_len);
    if (rc)
        return rc;
    if (value_len > s->value_max)
        return KV_EVALLEN;
    if (!value && value_len)
        return KV_EINVAL;
    /* Refused before the lock too: a replica's direct writers never make its replicator wait. */
    if (!writable(s))
        return KV_EREADONLY;
    if ((rc = lock_store(s)))
        return rc;
    static const kv_stamp next = {0, 0};
    rc = writable(s) ? set_locked(s, key, (uint32_t)key_len, value, value_len, expected_rev,
                                  current_rev, &next)
                     : KV_EREADONLY;
    unlock_store(s);
    return rc;
}

int kv_set_if(kv_store *s, const char *key, size_t key_len, const char *value, size_t value_len,
              uint64_t expected_rev, uint64_t *current_rev)
{
    KV_ON_CURRENT(s, set_if_at(s, key, key_len, value, value_len, expected_rev, current_rev));
}

int kv_set(kv_store *s, const char *key, size_t key_len, const char *value, size_t value_len)
{
    return kv_set_if(s, key, key_len, value, value_len, KV_ANY_REVISION, NULL);
}

/* ---- atomic increment ------------------------------------------------------------------------- */

/* The longest decimal int64, "-9223372036854775808", and a byte more so a longer value shows. */
#define KV_INT64_DIGITS 21

/* A value as Redis's INCR reads one: "0", or an optional "-" then a digit 1-9 and more digits, within
 * int64. No sign "+", no spaces, no leading zeros, no "-0": one spelling per number, the same that
 * the replicated increment (Redis itself) accepts, so a value means the same on every host. */
static int parse_int64(const char *text, size_t len, int64_t *out)
{
    if (len == 1 && text[0] == '0') {
        *out = 0;
        return 0;
    }
    int negative = len > 0 && text[0] == '-';
    size_t i = (size_t)negative;
    if (i >= len || text[i] < '1' || text[i] > '9')
        return KV_ENOTNUM;
    /* Accumulated as a negative number: int64's range reaches one further below zero than above. */
    int64_t n = 0;
    for (; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return KV_ENOTNUM;
        int digit = text[i] - '0';
        if (n < (INT64_MIN + digit) / 10)
            return KV_ENOTNUM; /* beyond int64: not a number this store can count with */
        n = n * 10 - digit;
    }
    if (!negative && n == INT64_MIN)
        return KV_ENOTNUM;
    *out = negative ? n : -n;
    return 0;
}

/* Decimal digits of v into out (KV_INT64_DIGITS bytes); returns their count. */
static size_t format_int64(int64_t v, char *out)
{
    char reversed[KV_INT64_DIGITS];
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v; /* INT64_MIN's magnitude fits a uint64 */
    size_t n = 0, len = 0;
    do {
        reversed[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = reversed[--n];
    return len;
}

static int incr_at(kv_store *s, const char *key, size_t key_len, int64_t delta, int64_t *result,
                   uint64_t *revision)
{
    int rc = check_key(s, key, key_len);
    if (rc)
        return rc;
    if (!writable(s))
        return KV_EREADONLY;
    if ((rc = lock_store(s)))
        return rc;
    /* Read, add and write under one hold of the lock: no other write can come in between. */
    char digits[KV_INT64_DIGITS];
    kv_read r = {digits, sizeof digits, 0, 0, 0};
    int64_t value = 0;
    if (!writable(s))
        rc = KV_EREADONLY;
    else if ((rc = read_once(s, key, (uint32_t)key_len, kv_hash(key, key_len), &r)) == KV_NOTFOUND)
        rc = 0; /* a missing key counts as 0 */
    else if (rc == KV_EBUFSIZE)
        rc = KV_ENOTNUM; /* longer than any int64 */
    else if (rc == KV_RETRY)
        rc = KV_ECORRUPT; /* no writer runs while we hold the lock: the entry is damaged */
    else if (!rc)
        rc = parse_int64(digits, r.value_len, &value);
    if (!rc && __builtin_add_overflow(value, delta, &value))
        rc = -ERANGE;
    if (!rc) {
        size_t len = format_int64(value, digits);
        static const kv_stamp next = {0, 0};
        rc = len > s->value_max ? KV_EVALLEN
                                : set_locked(s, key, (uint32_t)key_len, digits, len, KV_ANY_REVISION,
                                             revision, &next);
    }
    unlock_store(s);
    if (!rc && result)
        *result = value;
    return rc;
}

int kv_incr_rev(kv_store *s, const char *key, size_t key_len, int64_t delta, int64_t *result,
                uint64_t *revision)
{
    KV_ON_CURRENT(s, incr_at(s, key, key_len, delta, result, revision));
}

int kv_incr(kv_store *s, const char *key, size_t key_len, int64_t delta, int64_t *result)
{
    return kv_incr_rev(s, key, key_len, delta, result, NULL);
}

static int delete_locked(kv_store *s, const char *key, uint32_t key_len, uint64_t expected_rev,
                         uint64_t *current_rev, const kv_stamp *at)
{
    kv_header *h = s->h;
    uint32_t slot;
    uint32_t pos = index_find(s, key, key_len, kv_hash(key, key_len), &slot);
    uint64_t found_rev = slot == UINT32_MAX ? 0 : entry_at(s, slot)->revision;
    if (current_rev)
        *current_rev = found_rev;
    if (slot == UINT32_MAX)
        return KV_NOTFOUND;
    if (expected_rev != KV_ANY_REVISION && found_rev != expected_rev)
        return KV_ECONFLICT;
    if (!index_run_sound(s, pos) || h->free_head > s->max_entries)
        return KV_ECORRUPT;
    KV_FAULT(1);
    undo_arm(s, slot);
    KV_FAULT(2);
    seq_begin(h);
    counter_begin(&h->index_seq);
    KV_FAULT(3);
    index_remove(s, pos);
    KV_FAULT(5);
    kv_entry *e = entry_at(s, slot);
    e->key_len = 0;
    e->next_free = h->free_head;
    h->free_head = slot + 1;
    h->entry_count--;
    ring_append(s, stamp_revision(h, at), KV_CHANGE_DELETE, key, key_len, NULL, 0, stamp_time(at));
    KV_FAULT(6);
    /* Disarm, then end the counters (see set_locked). */
    undo_disarm(s);
    KV_FAULT(7);
    counter_end(&h->index_seq);
    seq_end(h);
    KV_FAULT(8);
    return 0;
}

static int delete_if_at(kv_store *s, const char *key, size_t key_len, uint64_t expected_rev,
                        uint64_t *current_rev)
{
    int rc = check_key(s, key, key_len);
    if (rc)
        return rc;
    if (!writable(s))
        return KV_EREADONLY;
    if ((rc = lock_store(s)))
        return rc;
    static const kv_stamp next = {0, 0};
    rc = writable(s) ? delete_locked(s, key, (uint32_t)key_len, expected_rev, current_rev, &next)
                     : KV_EREADONLY;
    unlock_store(s);
    return rc;
}

int kv_delete_if(kv_store *s, const char *key, size_t key_len, uint64_t expected_rev,
                 uint64_t *current_rev)
{
    KV_ON_CURRENT(s, delete_if_at(s, key, key_len, expected_rev, current_rev));
}

int kv_delete(kv_store *s, const char *key, size_t key_len)
{
    return kv_delete_if(s, key, key_len, KV_ANY_REVISION, NULL);
}

static int set_readonly_at(kv_store *s, int readonly)
{
    int rc = lock_store(s);
    if (rc)
        return rc;
    uint32_t flags = s->h->flags;
    flags = readonly ? flags | KV_FLAG_READONLY : flags & ~KV_FLAG_READONLY;
    __atomic_store_n(&s->h->flags, flags, __ATOMIC_RELEASE);
    unlock_store(s);
    return 0;
}

int kv_set_readonly(kv_store *s, int readonly)
{
    KV_ON_CURRENT(s, set_readonly_at(s, readonly));
}

/* A delete of a key the replica does not hold: only the version moves (under the seqlock, so a
 * writer dying here leaves a state recovery accepts either way). */
static void apply_absent_delete(kv_store *s, const char *key, uint32_t key_len, const kv_stamp *at)
{
    seq_begin(s->h);
    ring_append(s, stamp_revision(s->h, at), KV_CHANGE_DELETE, key, key_len, NULL, 0, at->timestamp);
    seq_end(s->h);
}

static int apply_at(kv_store *s, int op, const char *key, size_t key_len, const char *value,
                    size_t value_len, uint64_t revision, int64_t timestamp)
{
    int rc = op == KV_APPLY_VERSION ? (s ? 0 : KV_EINVAL) : check_key(s, key, key_len);
    if (rc)
        return rc;
    if ((op != KV_CHANGE_SET && op != KV_CHANGE_DELETE && op != KV_APPLY_VERSION) || revision == 0 ||
        revision == UINT64_MAX)
        return KV_EINVAL;
    if (op == KV_CHANGE_SET && value_len > s->value_max)
        return KV_EVALLEN;
    if (op == KV_CHANGE_SET && !value && value_len)
        return KV_EINVAL;
    if ((rc = lock_store(s)))
        return rc;
    const kv_stamp at = {revision, timestamp};
    if (revision <= s->h->version)
        rc = KV_ECONFLICT;
    else if (op == KV_APPLY_VERSION) {
        seq_begin(s->h);
        s->h->version = revision;
        seq_end(s->h);
    } else if (op == KV_CHANGE_SET)
        rc = set_locked(s, key, (uint32_t)key_len, value, value_len, KV_ANY_REVISION, NULL, &at);
    else if ((rc = delete_locked(s, key, (uint32_t)key_len, KV_ANY_REVISION, NULL, &at)) == KV_NOTFOUND) {
        apply_absent_delete(s, key, (uint32_t)key_len, &at);
        rc = 0;
    }
    unlock_store(s);
    return rc;
}

int kv_apply(kv_store *s, int op, const char *key, size_t key_len, const char *value,
             size_t value_len, uint64_t revision, int64_t timestamp)
{
    KV_ON_CURRENT(s, apply_at(s, op, key, key_len, value, value_len, revision, timestamp));
}

/* The version as of the last completed write. Read under the seqlock, so a write in progress, or one
 * whose writer died (which recovery may roll back), is never counted; when writers keep the counter
 * moving, or a dead one left it odd, take the lock, which also repairs. */
static int committed_version(kv_store *s, uint64_t *version)
{
    uint32_t before;
    for (int attempt = 0; attempt < KV_READ_SPINS; attempt++) {
        if (!counter_read_begin(&s->h->seq, attempt, &before))
            continue;
        *version = __atomic_load_n(&s->h->version, __ATOMIC_RELAXED);
        if (counter_read_valid(&s->h->seq, before))
            return 0;
    }
    int rc = lock_store(s);
    if (rc)
        return rc;
    *version = s->h->version;
    unlock_store(s);
    return 0;
}

static int change_on(kv_store *s, uint64_t revision, int *op, char *key, size_t key_cap,
                     size_t *key_len, char *value, size_t value_cap, size_t *value_len,
                     int64_t *timestamp)
{
    if (!s || (!key && key_cap) || (!value && value_cap))
        return KV_EINVAL;
    for (int attempt = 0; attempt < KV_READ_SPINS; attempt++) {
        uint64_t version;
        int rc = committed_version(s, &version);
        if (rc)
            return rc;
        if (revision == 0 || revision > version)
            return KV_NOTFOUND;
        if (version - revision >= KV_RING_CELLS)
            return KV_EEXPIRED;
        const kv_change_rec *c = change_at(s, revision);
        uint64_t seen = __atomic_load_n(&c->revision, __ATOMIC_ACQUIRE);
        if (seen == 0)
            continue; /* being rewritten right now */
        if (seen != revision)
            return KV_EEXPIRED;
        uint32_t op_seen = c->op, klen = c->key_len, vlen = c->value_len;
        if (klen > s->key_max || vlen > s->value_max)
            continue; /* torn */
        if (klen > key_cap || vlen > value_cap)
            rc = KV_EBUFSIZE;
        else {
            memcpy(key, c->data, klen);
            if (vlen)
                memcpy(value, c->data + s->key_max, vlen);
        }
        int64_t ts = c->timestamp;
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&c->revision, __ATOMIC_RELAXED) != revision)
            continue;
        if (op)
            *op = (int)op_seen;
        if (key_len)
            *key_len = klen;
        if (value_len)
            *value_len = vlen;
        if (timestamp)
            *timestamp = ts;
        return rc;
    }
    return KV_EEXPIRED; /* overwritten again and again while we read: certainly behind */
}

int kv_change(kv_store *s, uint64_t revision, int *op, char *key, size_t key_cap,
              size_t *key_len, char *value, size_t value_cap, size_t *value_len,
              int64_t *timestamp)
{
    KV_ON_CURRENT(s, change_on(s, revision, op, key, key_cap, key_len, value, value_cap, value_len,
                               timestamp));
}

void kv_set_lock_timeout(kv_store *s, int32_t timeout_ms)
{
    /* Every mapping of the handle: the next one a resize brings inherits it from the last. */
    for (; s; s = __atomic_load_n(&s->successor, __ATOMIC_ACQUIRE))
        s->lock_timeout_ms = timeout_ms;
}

static int repair_at(kv_store *s)
{
    int rc = lock_store(s);
    if (!rc)
        unlock_store(s);
    return rc;
}

int kv_repair(kv_store *s)
{
    KV_ON_CURRENT(s, repair_at(s));
}

int kv_snapshot(kv_store *s, void *buf, size_t buf_len)
{
    if (!s || !buf)
        return KV_EINVAL;
    if (buf_len < s->size)
        return KV_EBUFSIZE;
    int rc = lock_mapping(s);
    if (rc)
        return rc;
    memcpy(buf, s->base, s->size);
    unlock_store(s);
    return 0;
}

uint32_t kv_copy_cell(const kv_store *s, uint32_t cell, void *buf)
{
    if (!s || !buf || cell >= s->max_entries + KV_RING_CELLS)
        return 1;
    /* The ring follows the entries, cell for cell, so one address computation serves both. */
    const unsigned char *at = s->entries + (size_t)cell * s->entry_size;
    const uint32_t *counter = &((const kv_entry *)at)->seq;
    uint32_t before = __atomic_load_n(counter, __ATOMIC_ACQUIRE);
    memcpy(buf, at, s->entry_size);
    return counter_read_valid(counter, before) ? before : 1;
}

int kv_read_cell(kv_store *s, uint32_t cell, void *buf)
{
    if (!s || !buf || cell >= s->max_entries + KV_RING_CELLS)
        return KV_EINVAL;
    int rc = lock_mapping(s);
    if (rc)
        return rc;
    memcpy(buf, s->entries + (size_t)cell * s->entry_size, s->entry_size);
    unlock_store(s);
    return 0;
}

/* ---- kv_check --------------------------------------------------------------------------------- */

static const char *check_header(const kv_store *s)
{
    const kv_header *h = s->h;
    if (h->magic != KV_MAGIC || h->layout_version != KV_LAYOUT_VERSION || h->ready != KV_READY)
        return "header: magic, layout version or ready marker changed";
    if (h->max_entries != s->max_entries || h->key_max != s->key_max ||
        h->value_max != s->value_max || h->entry_size != s->entry_size ||
        h->index_cells != s->index_mask + 1)
        return "header: geometry changed since open";
    if ((h->seq & 1) || (h->index_seq & 1))
        return "header: a sequence counter is odd with no writer";
    if (h->undo.state)
        return "header: undo record armed with no writer";
    if (h->high_water > s->max_entries || h->entry_count > h->high_water)
        return "header: entry_count or high water out of range";
    return NULL;
}

static const char *check_entries(const kv_store *s)
{
    const kv_header *h = s->h;
    uint32_t live = 0;
    for (uint32_t slot = 0; slot < s->max_entries; slot++) {
        const kv_entry *e = entry_at(s, slot);
        if (e->key_len == 0)
            continue;
        if (slot >= h->high_water)
            return "entry: live slot above the high water mark";
        if (e->key_len > s->key_max || e->value_len > s->value_max)
            return "entry: key or value length out of range";
        if (memchr(e->data, 0, e->key_len))
            return "entry: key holds a NUL byte";
        if (e->hash != kv_hash((const char *)e->data, e->key_len))
            return "entry: stored hash does not match the key";
        if (e->revision == 0 || e->revision > h->version)
            return "entry: revision out of range";
        if (e->seq & 1)
            return "entry: its sequence counter is odd with no writer";
        uint32_t found;
        index_find(s, (const char *)e->data, e->key_len, e->hash, &found);
        if (found != slot)
            return "index: a live entry is not reachable from its home cell";
        live++;
    }
    return live == h->entry_count ? NULL : "header: entry_count differs from the live entries";
}

static const char *check_index_and_free_list(const kv_store *s)
{
    const kv_header *h = s->h;
    uint32_t cells = 0;
    for (uint32_t pos = 0; pos <= s->index_mask; pos++) {
        uint32_t cell = s->index[pos];
        if (!cell)
            continue;
        if (cell - 1 >= h->high_water || entry_at(s, cell - 1)->key_len == 0)
            return "index: a cell points to a free or out-of-range slot";
        cells++;
    }
    if (cells != h->entry_count)
        return "index: cell count differs from entry_count";
    uint32_t free_slots = 0;
    for (uint32_t next = h->free_head; next; next = entry_at(s, next - 1)->next_free) {
        if (next - 1 >= h->high_water || entry_at(s, next - 1)->key_len != 0)
            return "free list: links to a live or out-of-range slot";
        if (++free_slots > h->high_water)
            return "free list: cycle";
    }
    if (free_slots != h->high_water - h->entry_count)
        return "free list: does not hold every free slot below the high water mark";
    return NULL;
}

static int check_at(kv_store *s)
{
    int rc = lock_store(s);
    if (rc)
        return rc;
    const char *detail = check_header(s);
    if (!detail)
        detail = check_entries(s);
    if (!detail)
        detail = check_index_and_free_list(s);
    unlock_store(s);
    s->check_detail = detail ? detail : "";
    return detail ? KV_ECORRUPT : 0;
}

int kv_check(kv_store *s)
{
    KV_ON_CURRENT(s, check_at(s));
}

/* The mapping the handle uses now, for the accessors: the last one it followed to, or (when the
 * next cannot be opened) the last one it has. */
static const kv_store *now_of(const kv_store *s)
{
    int rc;
    kv_store *now = current((kv_store *)s, &rc);
    if (now)
        return now;
    while (s->successor)
        s = s->successor;
    return s;
}

const char *kv_check_detail(const kv_store *s) { return s ? now_of(s)->check_detail : ""; }

/* ---- accessors and errors --------------------------------------------------------------------- */

void *kv_base(const kv_store *s) { return s->base; }
size_t kv_map_size(const kv_store *s) { return s->size; }
uint64_t kv_version(const kv_store *s) { return __atomic_load_n(&now_of(s)->h->version, __ATOMIC_RELAXED); }
uint32_t kv_count(const kv_store *s) { return __atomic_load_n(&now_of(s)->h->entry_count, __ATOMIC_RELAXED); }
/* The geometry of the mapping the handle was opened on, as kv_base and kv_copy_cell see it: a caller
 * sizing a cell buffer from these must never get a larger cell from a resized store. */
uint32_t kv_max_entries(const kv_store *s) { return s->max_entries; }
uint32_t kv_key_max(const kv_store *s) { return s->key_max; }
uint32_t kv_value_max(const kv_store *s) { return s->value_max; }
uint64_t kv_lock_recoveries(const kv_store *s)
{
    return __atomic_load_n(&now_of(s)->h->lock_recoveries, __ATOMIC_RELAXED);
}

uint64_t kv_lock_held_ms(const kv_store *s)
{
    s = now_of(s);
    uint64_t since = __atomic_load_n(&s->h->lock_since_ms, __ATOMIC_RELAXED);
    uint64_t now = monotonic_ms();
    if (!since)
        return 0;
    return now > since ? now - since : 1; /* held: never 0, which means free */
}

int kv_readonly(const kv_store *s)
{
    s = now_of(s);
    return (__atomic_load_n(&s->h->flags, __ATOMIC_ACQUIRE) & KV_FLAG_READONLY) != 0;
}

const char *kv_strerror(int rc)
{
    switch (rc) {
    case 0:            return "success";
    case KV_NOTFOUND:  return "key not found";
    case KV_EKEYLEN:   return "key too long for this store";
    case KV_EVALLEN:   return "value too long for this store";
    case KV_EFULL:     return "table full: every entry is in use";
    case KV_EINVAL:    return "invalid argument";
    case KV_EINCOMPAT: return "incompatible segment: not a shmkv store of this layout, or damaged";
    case KV_EBUFSIZE:  return "buffer too small for the value";
    case KV_ENOTREADY: return "segment not initialised: its creator did not finish (unlink it to start over)";
    case KV_ECORRUPT:  return "store corrupt: an invariant does not hold";
    case KV_ECONFLICT: return "conflict: the entry is at another revision";
    case KV_EEXPIRED:  return "change expired: it is no longer in the change ring";
    case KV_EBUSY:     return "store busy: another process holds the write lock (try again later)";
    case KV_ENOTNUM:   return "the value is not a decimal integer (within int64) to increment";
    case KV_EUNTRUSTED:
        return "untrusted segment: another user owns it, or others may write it (KV_CHECK_OWNER)";
    case KV_EREADONLY: return "the store is a read-only replica: write through its server (shmkv serve --replicate), not directly";
    }
    if (rc < 0 && rc > -4096) {
        const char *msg = strerrordesc_np(-rc);
        if (msg)
            return msg;
    }
    return "unknown error";
}

/* ---- following a resize ------------------------------------------------------------------------
 *
 * kv_resize copies the store, under the old segment's lock, into a new segment made under a
 * temporary name, renames that file over the old name (/dev/shm: one atomic rename(2)), then marks
 * the old header superseded and lets go of the lock. Between its start and the mark, the old header
 * says "resizing": the rename is the commit point, so while that flag is up a handle also compares
 * the name's inode with its own. A handle that finds its mapping superseded opens the name again
 * and moves on to it (`successor`); the old mapping stays mapped until kv_close. */

#define KV_RESIZE_SUFFIX ".resize"

/* The file behind a segment name (Linux: POSIX shared memory lives in /dev/shm). */
static void shm_path(const char *name, char *path, size_t cap)
{
    snprintf(path, cap, "/dev/shm%s", name);
}

/* Whether the handle's name now leads to another file than its mapping: a resize renamed its copy
 * over it. A name that leads nowhere has not moved (it was unlinked; the mapping is still the store). */
static int name_moved(const kv_store *s)
{
    char path[KV_NAME_MAX + 16];
    struct stat named, mine;
    shm_path(s->name, path, sizeof path);
    if (stat(path, &named) < 0 || fstat(s->fd, &mine) < 0)
        return 0;
    return named.st_ino != mine.st_ino || named.st_dev != mine.st_dev;
}

static int same_file(const kv_store *a, const kv_store *b)
{
    struct stat sa, sb;
    return fstat(a->fd, &sa) == 0 && fstat(b->fd, &sb) == 0 && sa.st_ino == sb.st_ino &&
           sa.st_dev == sb.st_dev;
}

static int superseded(const kv_store *s)
{
    uint32_t flags = __atomic_load_n(&s->h->flags, __ATOMIC_ACQUIRE);
    if (flags & KV_FLAG_SUPERSEDED)
        return 1;
    return (flags & KV_FLAG_RESIZING) && name_moved(s);
}

static void set_flags(kv_header *h, uint32_t set, uint32_t clear)
{
    __atomic_store_n(&h->flags, (h->flags | set) & ~clear, __ATOMIC_RELEASE);
}

/* The temporary name of a resize of `name`: KV_EINVAL when the name leaves no room for the suffix. */
static int resize_temp_name(const char *name, char *temp, size_t cap)
{
    if (strlen(name) + sizeof KV_RESIZE_SUFFIX - 1 > KV_NAME_MAX)
        return KV_EINVAL;
    snprintf(temp, cap, "%s%s", name, KV_RESIZE_SUFFIX);
    return 0;
}

/* Remove a copy a resizer left under the temporary name when it died (lock held: no resize of this
 * store is running). A ready segment without the building flag is someone's store: -EEXIST. */
static int drop_stale_copy(const char *temp)
{
    int fd = shm_open(temp, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    kv_header h;
    ssize_t got = pread(fd, &h, sizeof h, 0);
    close(fd);
    int ours = got != (ssize_t)sizeof h || h.magic != KV_MAGIC || h.ready != KV_READY ||
               (h.flags & KV_FLAG_BUILDING);
    if (!ours)
        return -EEXIST;
    return shm_unlink(temp) < 0 && errno != ENOENT ? -errno : 0;
}

/* Recovery (lock held, EOWNERDEAD) of a segment whose resizer died: superseded when its copy had
 * been renamed into place, else back to normal with the copy removed. */
static void settle_resize(kv_store *s)
{
    if (!(s->h->flags & KV_FLAG_RESIZING))
        return;
    if (name_moved(s)) {
        set_flags(s->h, KV_FLAG_SUPERSEDED, KV_FLAG_RESIZING);
        return;
    }
    char temp[KV_NAME_MAX + 1];
    if (!resize_temp_name(s->name, temp, sizeof temp))
        drop_stale_copy(temp);
    set_flags(s->h, 0, KV_FLAG_RESIZING);
}

static kv_store *current(kv_store *s, int *rc)
{
    *rc = KV_EINVAL;
    for (int hops = 0; s; hops++) {
        kv_store *next = __atomic_load_n(&s->successor, __ATOMIC_ACQUIRE);
        if (next) {
            s = next;
            continue;
        }
        if (!superseded(s))
            return s;
        /* A name that keeps leading to superseded segments is not settling: give up. */
        if (hops > 64) {
            *rc = -ESTALE;
            return NULL;
        }
        kv_store *fresh;
        if ((*rc = kv_open(s->name, s->open_flags, NULL, &fresh)))
            return NULL;
        if (same_file(s, fresh)) {
            /* No resize marks a segment that still has the name: the flags are damaged. */
            kv_close(fresh);
            s->check_detail = "header: marked superseded, but its name still leads to it";
            *rc = KV_ECORRUPT;
            return NULL;
        }
        fresh->lock_timeout_ms = s->lock_timeout_ms;
        kv_store *none = NULL;
        /* Another thread may have followed first: keep its mapping, drop ours. */
        if (!__atomic_compare_exchange_n(&s->successor, &none, fresh, 0, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE))
            kv_close(fresh);
    }
    return NULL;
}

/* ---- kv_resize ------------------------------------------------------------------------------ */

/* One entry as a resize copies it. The copy goes through read_record and write_record only, so a
 * layout that keeps entries elsewhere changes this pair and nothing else. */
typedef struct kv_record {
    const unsigned char *key, *value;
    uint32_t key_len, value_len, hash;
    int64_t  timestamp;
    uint64_t revision;
} kv_record;

/* Slot `slot` of s (lock held): 1 with the record when it is live, 0 when it is free. */
static int read_record(const kv_store *s, uint32_t slot, kv_record *r)
{
    const kv_entry *e = entry_at(s, slot);
    if (e->key_len == 0)
        return 0;
    *r = (kv_record){e->data, e->data + s->key_max, e->key_len, e->value_len, e->hash,
                     e->timestamp, e->revision};
    return 1;
}

/* Put a record in slot `slot` of d, a segment no one else sees yet, and index it. */
static void write_record(kv_store *d, uint32_t slot, const kv_record *r)
{
    kv_entry *e = entry_at(d, slot);
    e->key_len = r->key_len;
    e->value_len = r->value_len;
    e->hash = r->hash;
    e->seq = 0;
    e->timestamp = r->timestamp;
    e->revision = r->revision;
    memcpy(e->data, r->key, r->key_len);
    memcpy(e->data + d->key_max, r->value, r->value_len);
    uint32_t pos = r->hash & d->index_mask;
    while (d->index[pos])
        pos = (pos + 1) & d->index_mask;
    d->index[pos] = slot + 1;
}

/* Whether geometry g holds every entry of s (lock held): 0, or the code that says what does not fit.
 * The copy follows what this checks, so lengths are checked against the old geometry as well and
 * the live entries counted, not taken from the header: a damaged store is KV_ECORRUPT, never a copy
 * out of bounds. */
static int resize_fits(const kv_store *s, const kv_geometry *g)
{
    uint32_t live = 0;
    int rc = 0;
    kv_record r;
    for (uint32_t slot = 0; slot < s->h->high_water && slot < s->max_entries; slot++) {
        if (!read_record(s, slot, &r))
            continue;
        live++;
        if (r.key_len > s->key_max || r.value_len > s->value_max)
            return KV_ECORRUPT;
        if (!rc && r.key_len > g->key_max)
            rc = KV_EKEYLEN;
        if (!rc && r.value_len > g->value_max)
            rc = KV_EVALLEN;
    }
    if (live != s->h->entry_count)
        return KV_ECORRUPT;
    return live > g->max_entries ? KV_EFULL : rc;
}

/* Copy the entries of s into d. Each keeps its slot when d has room for every slot s used, so a
 * listing's cursor (a slot) stays good across a grow; a shrink below that packs them in order. */
static void copy_entries(const kv_store *s, kv_store *d)
{
    const kv_header *h = s->h;
    uint32_t high = h->high_water <= s->max_entries ? h->high_water : s->max_entries;
    int keep_slots = high <= d->max_entries;
    uint32_t to = 0;
    kv_record r;
    for (uint32_t slot = 0; slot < high; slot++) {
        if (read_record(s, slot, &r))
            write_record(d, keep_slots ? slot : to++, &r);
        else if (keep_slots)
            entry_at(d, slot)->next_free = entry_at(s, slot)->next_free;
        if (slot == high / 2)
            KV_FAULT(20); /* mid-copy */
    }
    d->h->entry_count = h->entry_count;
    d->h->high_water = keep_slots ? high : to;
    d->h->free_head = keep_slots ? h->free_head : 0;
}

/* Copy the change ring, so revisions (and /watch ids) carry over. A record the new limits cannot hold
 * stays empty: kv_change answers KV_EEXPIRED for it, as for any change it no longer has. */
static void copy_ring(const kv_store *s, kv_store *d)
{
    for (uint32_t cell = 0; cell < KV_RING_CELLS; cell++) {
        const kv_change_rec *c = (const kv_change_rec *)(s->ring + (size_t)cell * s->entry_size);
        kv_change_rec *to = (kv_change_rec *)(d->ring + (size_t)cell * d->entry_size);
        if (c->revision == 0 || c->revision > s->h->version || c->key_len > d->key_max ||
            c->key_len > s->key_max || c->value_len > d->value_max || c->value_len > s->value_max)
            continue;
        *to = *c;
        memcpy(to->data, c->data, c->key_len);
        memcpy(to->data + d->key_max, c->data + s->key_max, c->value_len);
    }
}

static void copy_header(const kv_store *s, kv_store *d)
{
    d->h->version = s->h->version;
    d->h->lock_recoveries = s->h->lock_recoveries;
    d->h->created = s->h->created;
    d->h->flags = (s->h->flags & KV_FLAG_READONLY) | KV_FLAG_BUILDING;
}

/* The geometry and mode a resize of s to `o` makes: a zero field keeps the store's own. */
static int resize_target(const kv_store *s, const kv_options *o, kv_geometry *g, uint32_t *mode)
{
    struct stat st;
    if (fstat(s->fd, &st) < 0)
        return -errno;
    *mode = o && o->mode ? o->mode : (uint32_t)(st.st_mode & 0777);
    if (*mode > 0777)
        return KV_EINVAL;
    return compute_geometry(o && o->max_entries ? o->max_entries : s->max_entries,
                            o && o->key_max ? o->key_max : s->key_max,
                            o && o->value_max ? o->value_max : s->value_max, g);
}

/* Build the copy under `temp` and rename it over the name (lock of s held, resizing flag up). */
static int build_and_swap(kv_store *s, const char *temp, const kv_geometry *g, uint32_t mode)
{
    kv_store d = {0};
    int rc = make_segment(temp, g, mode, &d);
    if (rc)
        return rc;
    copy_header(s, &d);
    copy_entries(s, &d);
    copy_ring(s, &d);
    __atomic_store_n(&d.h->ready, KV_READY, __ATOMIC_RELEASE);
    KV_FAULT(21);
    char from[KV_NAME_MAX + 16], to[KV_NAME_MAX + 16];
    shm_path(temp, from, sizeof from);
    shm_path(s->name, to, sizeof to);
    if (rename(from, to) < 0) {
        rc = -errno;
        shm_unlink(temp);
    }
    KV_FAULT(22);
    if (!rc)
        set_flags(d.h, 0, KV_FLAG_BUILDING);
    munmap(d.base, d.size);
    close(d.fd);
    return rc;
}

/* One attempt at the resize of s (KV_MOVED when another resize superseded it first). */
static int resize_at(kv_store *s, const kv_options *o)
{
    kv_geometry g;
    uint32_t mode = 0;
    char temp[KV_NAME_MAX + 1];
    int rc = resize_target(s, o, &g, &mode);
    if (!rc)
        rc = resize_temp_name(s->name, temp, sizeof temp);
    if (rc || (rc = lock_store(s)))
        return rc;
    rc = resize_fits(s, &g);
    if (!rc)
        rc = drop_stale_copy(temp);
    if (!rc) {
        set_flags(s->h, KV_FLAG_RESIZING, 0);
        rc = build_and_swap(s, temp, &g, mode);
        /* From the rename on, the name is the copy's: mark this one so every handle follows. */
        set_flags(s->h, rc ? 0 : KV_FLAG_SUPERSEDED, KV_FLAG_RESIZING);
    }
    unlock_store(s);
    return rc;
}

static int resize_on(kv_store *s, const kv_options *o)
{
    KV_ON_CURRENT(s, resize_at(s, o));
}

int kv_resize(const char *name, const kv_options *opts)
{
#ifndef __linux__
    (void)name;
    (void)opts;
    return -ENOTSUP; /* the atomic swap renames a file in /dev/shm: Linux only */
#else
    kv_store *s;
    int rc = kv_open(name, 0, NULL, &s);
    if (rc)
        return rc;
    rc = resize_on(s, opts);
    kv_close(s); /* with every mapping it followed to */
    return rc;
#endif
}
