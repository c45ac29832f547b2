/* shmkv: the store. See shared_memory_kv.h for the contract and the layout.
 *
 * Concurrency in one paragraph: writers serialise on the robust mutex. Before touching anything a
 * writer arms an undo record (a copy of the one entry it will change plus the header counters), then
 * makes seq odd, mutates, makes seq even and disarms. A writer that dies anywhere in there leaves the
 * mutex EOWNERDEAD; the next locker restores the entry and counters from the armed record and rebuilds
 * the index and the heap's free lists from the entries (the structures a write may have left half
 * done). Keys and values live in chunks of a heap: a write fills a new chunk before it arms the
 * record and frees the old one after its counters are even again. Readers take no lock: they copy
 * under the seqlock and retry when seq moved. */
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
    unsigned char *heap;
    /* Geometry as validated at open. Never re-read from the segment: another process could change
     * those bytes, and every bound below must hold whatever the segment says. */
    uint32_t       max_entries, key_max, value_max, index_mask, fixed_chunk, ring_cell, ring_data;
    uint64_t       heap_size;
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
    uint32_t header_size, index_cells, fixed_chunk, ring_cell, ring_data;
    uint64_t entries_off, ring_off, heap_off, heap_size, total_size;
    uint32_t evict; /* not a size: the eviction policy a new segment is made with */
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

/* Expiry and access times: the wall clock every process shares, in ms (see Caveats). */
static uint64_t realtime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* 16 ms ticks: fine enough to order reads, coarse enough that a hot key's reader rarely stores. */
static uint32_t access_tick(uint64_t ms) { return (uint32_t)(ms >> 4); }

static int is_expired(uint64_t expires_at_ms, uint64_t now_ms)
{
    return expires_at_ms && now_ms >= expires_at_ms;
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

/* The chunk that holds `bytes` of key and value: its head, rounded up to KV_CHUNK_ALIGN, at least
 * KV_CHUNK_MIN so that it can become a free chunk again. */
static uint64_t chunk_bytes(uint64_t bytes)
{
    uint64_t size = align_up(KV_CHUNK_HEAD + bytes, KV_CHUNK_ALIGN);
    return size < KV_CHUNK_MIN ? KV_CHUNK_MIN : size;
}

/* memory 0: a heap of max_entries + 1 chunks of the largest size, every chunk that size, so that
 * max_entries entries of any size always fit (the + 1: a rewrite holds its new chunk before it
 * frees the old). Otherwise a heap of `memory` bytes (rounded down to 16) with chunks sized to fit. */
static int compute_geometry(uint32_t max_entries, uint32_t key_max, uint32_t value_max,
                            uint64_t memory, kv_geometry *g)
{
    uint32_t value_limit = memory ? KV_LIMIT_VALUE_MAX_MEMORY : KV_LIMIT_VALUE_MAX;
    if (max_entries < 1 || max_entries > KV_LIMIT_MAX_ENTRIES || key_max < 1 ||
        key_max > KV_LIMIT_KEY_MAX || value_max < 1 || value_max > value_limit ||
        (memory && (memory < KV_LIMIT_MEMORY_MIN || memory > KV_LIMIT_MEMORY)))
        return KV_EINVAL;
    g->max_entries = max_entries;
    g->key_max = key_max;
    g->value_max = value_max;
    g->header_size = KV_HEADER_SIZE;
    g->index_cells = 1;
    while (g->index_cells < 2 * max_entries)
        g->index_cells <<= 1;
    g->entries_off = align_up(g->header_size + 4ull * g->index_cells, 64);
    g->ring_off = g->entries_off + (uint64_t)max_entries * KV_ENTRY_SIZE;
    uint64_t largest = chunk_bytes((uint64_t)key_max + value_max);
    g->fixed_chunk = memory ? 0 : (uint32_t)largest;
    g->heap_size = memory ? memory & ~(uint64_t)(KV_CHUNK_ALIGN - 1) : (max_entries + 1ull) * largest;
    /* Without memory_bytes the ring keeps every change whole, as layout 1 did; with it, at most
     * KV_RING_DATA_MAX bytes of each, so the ring stays within 768 KiB whatever value_max is. */
    uint32_t data = key_max + value_max;
    g->ring_data = memory && data > KV_RING_DATA_MAX ? KV_RING_DATA_MAX : data;
    g->ring_cell = (uint32_t)align_up(KV_CHANGE_HEAD + (uint64_t)g->ring_data, 8);
    g->heap_off = align_up(g->ring_off + (uint64_t)KV_RING_CELLS * g->ring_cell, 64);
    g->total_size = g->heap_off + g->heap_size;
    return 0;
}

static kv_entry *entry_at(const kv_store *s, uint32_t slot)
{
    return (kv_entry *)(s->entries + (size_t)slot * KV_ENTRY_SIZE);
}

static kv_entry *undo_entry(const kv_store *s)
{
    return (kv_entry *)(s->base + KV_UNDO_ENTRY_OFF);
}

static kv_chunk *chunk_at(const kv_store *s, uint64_t off)
{
    return (kv_chunk *)(s->heap + off);
}

/* The key and value bytes of an entry (a copy of one, or one being read lock-free), with the
 * lengths they were checked against, or NULL when its chunk, lengths and geometry disagree: bytes
 * anyone can write are checked before they are followed. */
static const unsigned char *entry_data(const kv_store *s, const kv_entry *e, uint32_t *key_len,
                                       uint32_t *value_len)
{
    uint64_t chunk = __atomic_load_n(&e->chunk, __ATOMIC_RELAXED);
    *key_len = __atomic_load_n(&e->key_len, __ATOMIC_RELAXED);
    *value_len = __atomic_load_n(&e->value_len, __ATOMIC_RELAXED);
    if (*key_len > s->key_max || *value_len > s->value_max || chunk >= s->heap_size ||
        KV_CHUNK_HEAD + (uint64_t)*key_len + *value_len > s->heap_size - chunk)
        return NULL;
    return s->heap + chunk + KV_CHUNK_HEAD;
}

static int check_key(const kv_store *s, const char *key, size_t key_len)
{
    if (!s || !key || key_len == 0 || memchr(key, 0, key_len))
        return KV_EINVAL;
    return key_len > s->key_max ? KV_EKEYLEN : 0;
}

/* ---- the index -------------------------------------------------------------------------------- */

#define KV_TORN_SLOT (UINT32_MAX - 1)

/* Whether the entry holds key. Its bytes are in its chunk, which a rewrite replaces under the
 * entry's own counter (not the index's), so a lock-free comparison is validated by that counter:
 * 1, 0, or -1 when a rewrite overlapped it (the answer cannot be trusted). With `seen`, a match is
 * left for the caller to validate against *seen (the counter before the comparison), after it has
 * copied the value: one validation covers both. */
static int entry_has_key(const kv_store *s, const kv_entry *e, const char *key, uint32_t key_len,
                         uint32_t *seen)
{
    uint32_t before = __atomic_load_n(&e->seq, __ATOMIC_ACQUIRE), klen, vlen;
    const unsigned char *data = entry_data(s, e, &klen, &vlen);
    int same = data && klen == key_len && memcmp(data, key, key_len) == 0;
    if (same && seen && !(before & 1)) {
        *seen = before;
        return 1;
    }
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if ((before & 1) || __atomic_load_n(&e->seq, __ATOMIC_RELAXED) != before)
        return -1;
    return same;
}

/* Where key lives, or would be inserted. Works on a torn view too: every slot is bounds-checked and
 * the probe is bounded. *slot is the entry's slot, UINT32_MAX when absent, or KV_TORN_SLOT when a
 * rewrite overlapped a key comparison (lock-free readers retry). Returns the cell: the key's, else
 * the empty cell that ends its probe run, else (a corrupt, full index) UINT32_MAX. */
static uint32_t index_find(const kv_store *s, const char *key, uint32_t key_len, uint32_t hash,
                           uint32_t *slot, uint32_t *seen)
{
    uint32_t pos = hash & s->index_mask;
    for (uint32_t n = 0; n <= s->index_mask; n++, pos = (pos + 1) & s->index_mask) {
        uint32_t cell = __atomic_load_n(&s->index[pos], __ATOMIC_RELAXED);
        if (cell == 0)
            break;
        if (cell - 1 >= s->max_entries)
            continue;
        const kv_entry *e = entry_at(s, cell - 1);
        if (__atomic_load_n(&e->hash, __ATOMIC_RELAXED) != hash ||
            __atomic_load_n(&e->key_len, __ATOMIC_RELAXED) != key_len)
            continue;
        int same = entry_has_key(s, e, key, key_len, seen);
        if (same) {
            *slot = same > 0 ? cell - 1 : KV_TORN_SLOT;
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

/* ---- the heap --------------------------------------------------------------------------------- */

/* The heap's free chunks are a cache of what the live entries leave free: every entry names its
 * chunk (offset and size), and a recovery rebuilds the free lists from the entries alone. So the
 * allocator needs no undo record of its own: a writer that dies inside it leaves free lists the
 * next locker throws away. Free chunks are coalesced on free (boundary tags: a used chunk's
 * KV_CHUNK_PREV_FREE bit and a free chunk's footer), so memory freed by one size is usable by
 * any other; when no free chunk fits but enough bytes are free, heap_compact slides entries down. */

static uint64_t chunk_size(const kv_chunk *c) { return (uint64_t)c->units * KV_CHUNK_ALIGN; }

static uint64_t *chunk_footer(const kv_store *s, uint64_t off, uint64_t size)
{
    return (uint64_t *)(s->heap + off + size - 8);
}

/* The free list of a size: class k holds 2^(k+5) .. 2^(k+6) - 1 bytes (the last class, all above). */
static uint32_t size_class(uint64_t size)
{
    uint32_t k = 63 - (uint32_t)__builtin_clzll(size | 1);
    k = k < 5 ? 0 : k - 5;
    return k < KV_HEAP_CLASSES ? k : KV_HEAP_CLASSES - 1;
}

/* Whether `link` (offset + 1, or 0) may be followed: a chunk boundary with room for a free chunk. */
static int link_ok(const kv_store *s, uint64_t link)
{
    return link == 0 || (link - 1 < s->heap_size && (link - 1) % KV_CHUNK_ALIGN == 0 &&
                         s->heap_size - (link - 1) >= KV_CHUNK_MIN);
}

/* Whether a free chunk at off is one: a chunk boundary in the heap, whose head says free and a size
 * within the heap. Offsets come from footers and neighbours a damaged segment may have written. */
static int free_chunk_ok(const kv_store *s, uint64_t off)
{
    if (off % KV_CHUNK_ALIGN || off >= s->heap_size)
        return 0;
    const kv_chunk *c = chunk_at(s, off);
    uint64_t size = chunk_size(c);
    return !(c->tag & KV_CHUNK_USED) && size >= KV_CHUNK_MIN && size <= s->heap_size - off;
}

static void set_prev_free(kv_store *s, uint64_t next, int free)
{
    if (next >= s->heap_size)
        return;
    kv_chunk *c = chunk_at(s, next);
    c->tag = free ? c->tag | KV_CHUNK_PREV_FREE : c->tag & ~KV_CHUNK_PREV_FREE;
}

static void fl_insert(kv_store *s, uint64_t off, uint64_t size)
{
    kv_header *h = s->h;
    uint32_t k = size_class(size);
    kv_chunk *c = chunk_at(s, off);
    c->units = (uint32_t)(size / KV_CHUNK_ALIGN);
    c->tag = 0;
    c->next = link_ok(s, h->free_heads[k]) ? h->free_heads[k] : 0;
    c->prev = 0;
    *chunk_footer(s, off, size) = size;
    if (c->next)
        chunk_at(s, c->next - 1)->prev = off + 1;
    h->free_heads[k] = off + 1;
    h->heap_free += size;
    set_prev_free(s, off + size, 1);
}

static void fl_remove(kv_store *s, uint64_t off)
{
    kv_header *h = s->h;
    kv_chunk *c = chunk_at(s, off);
    uint64_t size = chunk_size(c);
    if (c->next && link_ok(s, c->next))
        chunk_at(s, c->next - 1)->prev = c->prev;
    if (!c->prev)
        h->free_heads[size_class(size)] = link_ok(s, c->next) ? c->next : 0;
    else if (link_ok(s, c->prev))
        chunk_at(s, c->prev - 1)->next = c->next;
    h->heap_free -= size;
}

/* Make the free chunk at off a used one of `size` bytes for slot's entry, splitting off the rest as
 * a free chunk when it can be one. Returns the size given (the whole chunk when the rest is small). */
static uint64_t heap_take(kv_store *s, uint64_t off, uint64_t size, uint32_t slot)
{
    kv_chunk *c = chunk_at(s, off);
    uint64_t have = chunk_size(c);
    fl_remove(s, off);
    KV_FAULT(9);
    if (have - size >= KV_CHUNK_MIN)
        fl_insert(s, off + size, have - size);
    else {
        size = have;
        set_prev_free(s, off + size, 0);
    }
    c->units = (uint32_t)(size / KV_CHUNK_ALIGN);
    c->tag = KV_CHUNK_USED | (slot + 1);
    return size;
}

/* Return a chunk to the free lists, merged with the free chunks either side of it. */
static void heap_release(kv_store *s, uint64_t off, uint64_t size)
{
    uint64_t start = off, end = off + size;
    if (end < s->heap_size && free_chunk_ok(s, end)) {
        uint64_t next_size = chunk_size(chunk_at(s, end));
        fl_remove(s, end);
        end += next_size;
    }
    KV_FAULT(10);
    if (off >= KV_CHUNK_MIN && (chunk_at(s, off)->tag & KV_CHUNK_PREV_FREE)) {
        uint64_t prev_size = *(const uint64_t *)(s->heap + off - 8);
        if (prev_size >= KV_CHUNK_MIN && prev_size <= off && free_chunk_ok(s, off - prev_size) &&
            chunk_size(chunk_at(s, off - prev_size)) == prev_size) {
            start = off - prev_size;
            fl_remove(s, start);
        }
    }
    fl_insert(s, start, end - start);
}

/* A free chunk of at least `size` bytes: one of the first KV_FIT_TRIES of its own class that fits,
 * else the head of the next class that has one (any of which fits), else the rest of its own class.
 * The bound keeps a set O(1) when its class holds many chunks just too small. UINT64_MAX when none;
 * *corrupt set when a list is damaged (its walk is bounded too, so a cycle ends it). */
#define KV_FIT_TRIES 8
static uint64_t fit_in_class(const kv_store *s, uint32_t k, uint64_t size, uint64_t tries,
                             int *corrupt)
{
    uint64_t steps = s->heap_size / KV_CHUNK_MIN + 1;
    for (uint64_t link = s->h->free_heads[k]; link && tries--; link = chunk_at(s, link - 1)->next) {
        if (!link_ok(s, link) || !free_chunk_ok(s, link - 1) || steps-- == 0) {
            *corrupt = 1;
            return UINT64_MAX;
        }
        if (chunk_size(chunk_at(s, link - 1)) >= size)
            return link - 1;
    }
    return UINT64_MAX;
}

static uint64_t heap_find(const kv_store *s, uint64_t size, int thorough, int *corrupt)
{
    uint32_t own = size_class(size);
    uint64_t at = fit_in_class(s, own, size, KV_FIT_TRIES, corrupt);
    for (uint32_t k = own + 1; at == UINT64_MAX && !*corrupt && k < KV_HEAP_CLASSES; k++)
        at = fit_in_class(s, k, size, 1, corrupt);
    if (at == UINT64_MAX && !*corrupt && thorough)
        at = fit_in_class(s, own, size, UINT64_MAX, corrupt);
    return at;
}

static int heap_compact(kv_store *s, uint64_t size);

/* A chunk of at least `size` bytes for slot's entry: *off and *got. KV_EFULL when the heap has no
 * room even after compaction; nothing an entry holds changes then (compaction only moves them).
 * Not `thorough`: a quick search that neither walks a whole free list nor compacts, for a caller
 * that can make room otherwise (an lru set evicts). */
static int heap_alloc(kv_store *s, uint64_t size, uint32_t slot, uint64_t *off, uint64_t *got,
                      int thorough)
{
    int corrupt = 0;
    uint64_t at = heap_find(s, size, thorough, &corrupt);
    if (at == UINT64_MAX && !corrupt && thorough && !s->fixed_chunk && s->h->heap_free >= size) {
        int rc = heap_compact(s, size);
        if (rc)
            return rc;
        at = heap_find(s, size, thorough, &corrupt);
    }
    if (corrupt)
        return KV_ECORRUPT;
    if (at == UINT64_MAX)
        return KV_EFULL;
    *off = at;
    *got = heap_take(s, at, size, slot);
    return 0;
}

/* Whether an entry's chunk lies within the heap, at chunk boundaries, with room for its bytes. */
static int entry_chunk_ok(const kv_store *s, const kv_entry *e)
{
    uint64_t size = e->chunk_size;
    return e->chunk % KV_CHUNK_ALIGN == 0 && size % KV_CHUNK_ALIGN == 0 && size >= KV_CHUNK_MIN &&
           e->chunk < s->heap_size && size <= s->heap_size - e->chunk &&
           (!s->fixed_chunk || size == s->fixed_chunk) && e->key_len <= s->key_max &&
           e->value_len <= s->value_max && KV_CHUNK_HEAD + (uint64_t)e->key_len + e->value_len <= size;
}

/* The size of the used chunk at off when a live entry names it (its head's owner does, and that
 * entry's chunk is this one), else 0. */
static uint64_t owned_chunk(const kv_store *s, uint64_t off)
{
    const kv_chunk *c = chunk_at(s, off);
    uint32_t owner = c->tag & KV_CHUNK_OWNER;
    if (!(c->tag & KV_CHUNK_USED) || owner == 0 || owner > s->max_entries)
        return 0;
    const kv_entry *e = entry_at(s, owner - 1);
    return e->key_len && e->chunk == off && e->chunk_size == chunk_size(c) && entry_chunk_ok(s, e)
               ? e->chunk_size
               : 0;
}

/* Recovery: rebuild the heap's heads, free lists and totals from the live entries, whatever a dead
 * writer left half done. Every live entry's chunk gets its head; what lies between is free. */
static void heap_rebuild(kv_store *s)
{
    kv_header *h = s->h;
    memset(h->free_heads, 0, sizeof h->free_heads);
    h->heap_free = h->memory_used = 0;
    uint32_t high = h->high_water < s->max_entries ? h->high_water : s->max_entries;
    for (uint32_t slot = 0; slot < high; slot++) {
        const kv_entry *e = entry_at(s, slot);
        if (e->key_len && entry_chunk_ok(s, e)) {
            kv_chunk *c = chunk_at(s, e->chunk);
            c->units = e->chunk_size / KV_CHUNK_ALIGN;
            c->tag = KV_CHUNK_USED | (slot + 1);
        }
    }
    uint64_t p = 0, free_from = UINT64_MAX;
    while (p < s->heap_size) {
        uint64_t size = owned_chunk(s, p);
        if (!size) {
            if (free_from == UINT64_MAX)
                free_from = p;
            p += KV_CHUNK_ALIGN;
            continue;
        }
        set_prev_free(s, p, 0);
        if (free_from != UINT64_MAX && p - free_from >= KV_CHUNK_MIN)
            fl_insert(s, free_from, p - free_from);
        h->memory_used += size;
        free_from = UINT64_MAX;
        p += size;
    }
    if (free_from != UINT64_MAX && s->heap_size - free_from >= KV_CHUNK_MIN)
        fl_insert(s, free_from, s->heap_size - free_from);
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
    memcpy(undo_entry(s), e, KV_ENTRY_SIZE);
    __atomic_store_n(&h->undo.state, KV_UNDO_ARMED, __ATOMIC_RELEASE);
}

static void undo_disarm(kv_store *s)
{
    __atomic_store_n(&s->h->undo.state, 0, __ATOMIC_RELEASE);
}

static kv_change_rec *change_at(const kv_store *s, uint64_t revision)
{
    return (kv_change_rec *)(s->ring + ((revision - 1) % KV_RING_CELLS) * s->ring_cell);
}

/* Record a write in the change ring (lock held). A writer that dies half-way leaves a record whose
 * revision is 0 or one the rollback took back; the next write of that revision overwrites it, and
 * no reader asks for a revision above the version. A change too big for a cell keeps its lengths
 * only (KV_CHANGE_UNKEPT): a reader of it must reread the store. */
static void ring_append(kv_store *s, uint64_t revision, uint32_t op, const char *key,
                        uint32_t key_len, const char *value, size_t value_len, int64_t timestamp,
                        uint64_t expires_at_ms)
{
    kv_change_rec *c = change_at(s, revision);
    uint32_t extra = expires_at_ms ? sizeof expires_at_ms : 0;
    __atomic_store_n(&c->revision, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    c->timestamp = timestamp;
    c->op = op;
    c->key_len = key_len;
    c->value_len = (uint32_t)value_len;
    c->flags = key_len + value_len + extra > s->ring_data ? KV_CHANGE_UNKEPT
               : extra                                    ? KV_CHANGE_EXPIRES
                                                          : 0;
    if (!(c->flags & KV_CHANGE_UNKEPT)) {
        memcpy(c->data, key, key_len);
        if (value_len)
            memcpy(c->data + key_len, value, value_len);
        if (extra)
            memcpy(c->data + key_len + value_len, &expires_at_ms, extra);
    }
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
        /* The entry's old chunk is intact: a write frees it only once it is complete. */
        memcpy(entry_at(s, h->undo.slot), undo_entry(s), KV_ENTRY_SIZE);
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
    heap_rebuild(s);
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
    s->heap = s->base + g->heap_off;
    s->max_entries = g->max_entries;
    s->key_max = g->key_max;
    s->value_max = g->value_max;
    s->index_mask = g->index_cells - 1;
    s->fixed_chunk = g->fixed_chunk;
    s->ring_cell = g->ring_cell;
    s->ring_data = g->ring_data;
    s->heap_size = g->heap_size;
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
        h->entry_size = KV_ENTRY_SIZE;
        h->index_cells = g.index_cells;
        h->entries_off = g.entries_off;
        h->total_size = g.total_size;
        h->ring_off = g.ring_off;
        h->ring_cells = KV_RING_CELLS;
        h->created = now_seconds();
        h->heap_off = g.heap_off;
        h->heap_size = g.heap_size;
        h->fixed_chunk = g.fixed_chunk;
        h->ring_cell_size = g.ring_cell;
        h->ring_data = g.ring_data;
        h->heap_classes = KV_HEAP_CLASSES;
        h->evict_policy = g.evict;
        fl_insert(s, 0, g.heap_size); /* the heap starts as one free chunk */
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
                              o && o->value_max ? o->value_max : KV_DEFAULT_VALUE_MAX,
                              o ? o->memory_bytes : 0, &g);
    g.evict = o && o->evict ? o->evict : KV_EVICT_NONE;
    if (!rc && g.evict > KV_EVICT_LRU)
        rc = KV_EINVAL;
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
    if (compute_geometry(h->max_entries, h->key_max, h->value_max,
                         h->fixed_chunk ? 0 : h->heap_size, g))
        return KV_EINCOMPAT;
    if (h->header_size != g->header_size || h->entry_size != KV_ENTRY_SIZE ||
        h->index_cells != g->index_cells || h->entries_off != g->entries_off ||
        h->total_size != g->total_size || h->ring_off != g->ring_off ||
        h->ring_cells != KV_RING_CELLS || h->heap_off != g->heap_off ||
        h->heap_size != g->heap_size || h->fixed_chunk != g->fixed_chunk ||
        h->ring_cell_size != g->ring_cell || h->ring_data != g->ring_data ||
        h->heap_classes != KV_HEAP_CLASSES || (uint64_t)file_size != g->total_size)
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
    uint64_t expires_at_ms;
    uint32_t slot;
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
    uint32_t slot, before;
    index_find(s, key, key_len, hash, &slot, &before);
    if (slot == UINT32_MAX)
        return KV_NOTFOUND;
    if (slot == KV_TORN_SLOT)
        return KV_RETRY;
    const kv_entry *e = entry_at(s, slot);
    /* The chunk is followed only once bounds-checked; a chunk freed and reused meanwhile moves the
     * entry's counter (the rewrite that freed it did), so such a copy is never returned. */
    uint32_t klen, len;
    const unsigned char *data = entry_data(s, e, &klen, &len);
    if (!data || klen != key_len)
        return KV_RETRY;
    r->value_len = len;
    r->timestamp = __atomic_load_n(&e->timestamp, __ATOMIC_RELAXED);
    r->revision = __atomic_load_n(&e->revision, __ATOMIC_RELAXED);
    r->expires_at_ms = __atomic_load_n(&e->expires_at_ms, __ATOMIC_RELAXED);
    r->slot = slot;
    /* The clock only for an entry that expires: most do not, and their reads stay clock-free. */
    int rc = r->expires_at_ms && is_expired(r->expires_at_ms, realtime_ms()) ? KV_NOTFOUND
             : len > r->buf_len                                              ? KV_EBUFSIZE
                                                                             : 0;
    if (!rc && len)
        memcpy(r->buf, data + key_len, len);
    return counter_read_valid(&e->seq, before) ? rc : KV_RETRY;
}

/* Record a read of slot's entry for eviction (policy lru only): a relaxed store, no counter (a
 * stamp landing on a slot reused meanwhile only makes that entry look used), and none at all while
 * the tick has not moved, so a hot key's readers leave its cache line alone. */
static void touch(const kv_store *s, uint32_t slot)
{
    if (__atomic_load_n(&s->h->evict_policy, __ATOMIC_RELAXED) != KV_EVICT_LRU)
        return;
    uint32_t *at = &entry_at(s, slot)->last_access, tick = access_tick(realtime_ms());
    if (__atomic_load_n(at, __ATOMIC_RELAXED) != tick)
        __atomic_store_n(at, tick, __ATOMIC_RELAXED);
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
        if (counter_read_valid(&s->h->index_seq, before) && rc != KV_RETRY) {
            if (rc == 0 || rc == KV_EBUFSIZE)
                touch(s, r->slot);
            return rc;
        }
    }
    /* Writers kept overlapping: read under the lock, which always terminates. */
    int rc = lock_store(s);
    if (rc)
        return rc;
    rc = read_once(s, key, key_len, hash, r);
    if (rc == 0 || rc == KV_EBUFSIZE)
        touch(s, r->slot);
    unlock_store(s);
    return rc == KV_RETRY ? KV_ECORRUPT : rc;
}

static int get_meta_at(kv_store *s, const char *key, size_t key_len, char *buf, size_t buf_len,
                       kv_meta *meta)
{
    int rc = check_key(s, key, key_len);
    if (rc)
        return rc;
    if (!buf && buf_len)
        return KV_EINVAL;
    kv_read r = {buf, buf_len, 0, 0, 0, 0, 0};
    rc = read_entry(s, key, (uint32_t)key_len, &r);
    if (rc && rc != KV_EBUFSIZE)
        return rc;
    if (meta)
        *meta = (kv_meta){r.value_len, r.timestamp, r.revision, r.expires_at_ms};
    return rc;
}

int kv_get_meta(kv_store *s, const char *key, size_t key_len, char *buf, size_t buf_len,
                kv_meta *meta)
{
    KV_ON_CURRENT(s, get_meta_at(s, key, key_len, buf, buf_len, meta));
}

int kv_get_rev(kv_store *s, const char *key, size_t key_len, char *buf, size_t buf_len,
               size_t *value_len, int64_t *timestamp, uint64_t *revision)
{
    kv_meta m;
    int rc = kv_get_meta(s, key, key_len, buf, buf_len, &m);
    if (rc && rc != KV_EBUFSIZE)
        return rc;
    if (value_len)
        *value_len = m.value_len;
    if (timestamp)
        *timestamp = m.timestamp;
    if (revision)
        *revision = m.revision;
    return rc;
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

/* Take the lock for a direct write: 0 holding it, or the code why not (nothing held). A replica is
 * refused before the lock, so its direct writers never make its replicator wait, and again under
 * it, as it may have become one meanwhile. */
static int lock_for_write(kv_store *s)
{
    if (!writable(s))
        return KV_EREADONLY;
    int rc = lock_store(s);
    if (rc)
        return rc;
    if (writable(s))
        return 0;
    unlock_store(s);
    return KV_EREADONLY;
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

/* Fill a chunk nobody owns yet with key and value: readers never look at it until the entry
 * points to it. value may be NULL when empty: no pointer arithmetic on it then. */
static void write_chunk(kv_store *s, uint64_t chunk, const char *key, uint32_t key_len,
                        const char *value, size_t value_len)
{
    unsigned char *data = s->heap + chunk + KV_CHUNK_HEAD;
    memcpy(data, key, key_len);
    if (value_len) {
        size_t half = value_len / 2;
        memcpy(data + key_len, value, half);
        KV_FAULT(4); /* mid-copy: the new chunk holds half a value */
        memcpy(data + key_len + half, value + half, value_len - half);
    }
}

/* What a write makes of the entry's revision and timestamp: the next version and now, or (kv_apply)
 * those given; and, for a set, its expiry. */
typedef struct kv_stamp {
    uint64_t revision; /* 0: the next version (a direct write) */
    int64_t  timestamp;
    uint64_t expires_at_ms; /* 0: never */
} kv_stamp;

static uint64_t stamp_revision(kv_header *h, const kv_stamp *at)
{
    h->version = at->revision ? at->revision : h->version + 1;
    return h->version;
}

/* The clock is read once per write (now_ms): a read costs about as much as the rest of a small set. */
static int64_t stamp_time(const kv_stamp *at, uint64_t now_ms)
{
    return at->revision ? at->timestamp : (int64_t)(now_ms / 1000);
}

/* One entry's new state, its bytes already in `chunk`. */
typedef struct kv_put {
    uint32_t slot;
    uint32_t pos;       /* a new key: the index cell it takes; else UINT32_MAX */
    uint32_t hash;
    uint32_t key_len;
    uint32_t value_len;
    uint64_t chunk, chunk_size;
    const kv_stamp *at; /* NULL: a move (compaction), which keeps the entry's revision and time */
    const char *key, *value; /* for the change ring */
} kv_put;

/* Point slot's entry at its new chunk, crash-atomically, then free the chunk it held. Every write
 * of an entry comes here: a set, a kv_apply, and a compaction's move. */
static void put_entry(kv_store *s, const kv_put *p)
{
    kv_header *h = s->h;
    kv_entry *e = entry_at(s, p->slot);
    int is_new = p->pos != UINT32_MAX;
    uint64_t old = e->chunk, old_size = is_new ? 0 : e->chunk_size;
    KV_FAULT(1);
    undo_arm(s, p->slot);
    KV_FAULT(2);
    seq_begin(h);
    KV_FAULT(3);
    /* A new key moves the index (its counter guards it); a new value only the entry (its own). */
    uint32_t *guard = is_new ? &h->index_seq : &e->seq;
    counter_begin(guard);
    /* The chunk first: a reader reading around a stopped insert (validated by the store's counter)
     * then compares the new key with its own bytes, never with a stale chunk's, and finds it. */
    e->chunk = p->chunk;
    e->chunk_size = (uint32_t)p->chunk_size;
    if (is_new) {
        take_free_slot(s, p->slot);
        e->value_len = 0; /* a reader must never pair this key with a stale value length */
        e->hash = p->hash;
        e->key_len = p->key_len;
        e->seq = 0;
        s->index[p->pos] = p->slot + 1;
        h->entry_count++;
        KV_FAULT(5);
    }
    e->value_len = p->value_len;
    h->memory_used += p->chunk_size - old_size;
    if (p->at) {
        uint64_t now = realtime_ms();
        e->timestamp = stamp_time(p->at, now);
        e->revision = stamp_revision(h, p->at);
        e->expires_at_ms = p->at->expires_at_ms;
        e->last_access = access_tick(now);
        ring_append(s, e->revision, KV_CHANGE_SET, p->key, p->key_len, p->value, p->value_len,
                    e->timestamp, e->expires_at_ms);
    }
    KV_FAULT(6);
    /* Disarm, then end the counters: from the disarm on the write is complete and a recoverer keeps
     * it; ending a counter before it would let a reader see a write that a repair then undoes. */
    undo_disarm(s);
    KV_FAULT(7);
    counter_end(guard);
    seq_end(h);
    KV_FAULT(8);
    /* Only now: a reader reading around the write (from the undo record) may have been copying the
     * old chunk until the store's counter moved. */
    if (!is_new)
        heap_release(s, old, old_size);
}

/* The chunk size an entry of key_len + value_len bytes takes. */
static uint64_t chunk_need(const kv_store *s, uint64_t bytes)
{
    return s->fixed_chunk ? s->fixed_chunk : chunk_bytes(bytes);
}

/* Evictions an lru set makes, once the heap holds enough free bytes, to find them in one chunk
 * before it compacts the heap instead. */
#define KV_EVICT_BEFORE_COMPACT 128

static int remove_slot(kv_store *s, uint32_t slot, uint32_t op);
static int reclaim_expired(kv_store *s, uint32_t slot, uint64_t now_ms);
static int make_room(kv_store *s, uint32_t keep);

static int set_locked(kv_store *s, const char *key, uint32_t key_len, const char *value,
                      size_t value_len, uint64_t expected_rev, uint64_t *current_rev,
                      const kv_stamp *at)
{
    uint32_t hash = kv_hash(key, key_len), slot, pos;
    uint64_t need = chunk_need(s, (uint64_t)key_len + value_len);
    int direct = !at->revision, is_new, rc;
    int lru = direct && __atomic_load_n(&s->h->evict_policy, __ATOMIC_RELAXED) == KV_EVICT_LRU;
    /* Evictions made while the heap had the bytes, but not in one piece: an lru store evicts a few
     * more before it compacts, as compacting a heap that is all but full moves most of it. */
    uint32_t unjoined = 0;
    kv_put p = {0, 0, hash, key_len, (uint32_t)value_len, 0, 0, at, key, value};
    /* Each turn either writes, fails, or (a direct write) reclaims or evicts an entry and looks
     * again: the index moved, and the key's own entry may be the one that expired. */
    for (;;) {
        pos = index_find(s, key, key_len, hash, &slot, NULL);
        if (slot == KV_TORN_SLOT) /* under the lock: an odd entry counter no writer is changing */
            return KV_ECORRUPT;
        is_new = slot == UINT32_MAX;
        if (!is_new && direct && (rc = reclaim_expired(s, slot, 0))) {
            if (rc < 0)
                return rc;
            continue;
        }
        uint64_t found_rev = is_new ? 0 : entry_at(s, slot)->revision;
        if (current_rev)
            *current_rev = found_rev;
        if (expected_rev != KV_ANY_REVISION && found_rev != expected_rev)
            return KV_ECONFLICT;
        if (is_new && pos == UINT32_MAX)
            return KV_ECORRUPT;
        if (is_new && (slot = peek_free_slot(s)) == UINT32_MAX)
            rc = KV_EFULL;
        else if (slot == KV_CORRUPT_SLOT || (!is_new && !entry_chunk_ok(s, entry_at(s, slot))))
            return KV_ECORRUPT;
        else
            rc = heap_alloc(s, need, slot, &p.chunk, &p.chunk_size,
                            !lru || unjoined >= KV_EVICT_BEFORE_COMPACT);
        /* Room is worth making only when the chunk can fit at all, beside the one it replaces. */
        uint64_t held = is_new || rc != KV_EFULL ? 0 : entry_at(s, slot)->chunk_size;
        if (rc != KV_EFULL || !direct || need > s->heap_size - held)
            break;
        unjoined += lru && s->h->heap_free >= need;
        if ((rc = make_room(s, is_new ? UINT32_MAX : slot)) < 0)
            return rc;
        if (rc == 0 && (!lru || unjoined >= KV_EVICT_BEFORE_COMPACT))
            return KV_EFULL;
        if (rc == 0)
            unjoined = KV_EVICT_BEFORE_COMPACT; /* nothing left to evict: compact, once */
    }
    if (rc)
        return rc;
    p.slot = slot;
    p.pos = is_new ? pos : UINT32_MAX;
    write_chunk(s, p.chunk, key, key_len, value, value_len);
    put_entry(s, &p);
    if (current_rev)
        *current_rev = entry_at(s, slot)->revision;
    return 0;
}

/* Move slot's entry into the free chunk at `to` (compaction): same key, value, revision and time. */
static void move_entry(kv_store *s, uint32_t slot, uint64_t to)
{
    const kv_entry *e = entry_at(s, slot);
    kv_put p = {slot, UINT32_MAX, e->hash, e->key_len, e->value_len, to, 0, NULL, NULL, NULL};
    p.chunk_size = heap_take(s, to, e->chunk_size, slot);
    memcpy(s->heap + to + KV_CHUNK_HEAD, s->heap + e->chunk + KV_CHUNK_HEAD,
           (size_t)e->key_len + e->value_len);
    KV_FAULT(11);
    put_entry(s, &p);
}

/* Slide entries down over the free chunks before them, in address order, until a free chunk of
 * `size` bytes exists. A chunk moves only into a free chunk that holds it whole, so its old bytes
 * stay intact until its entry points elsewhere: each move is an ordinary crash-atomic write. A
 * chunk too big for the gap before it stays, and the walk goes on after it. */
static int heap_compact(kv_store *s, uint64_t size)
{
    uint64_t p = 0, free_at = UINT64_MAX;
    s->h->compactions++;
    while (p < s->heap_size) {
        const kv_chunk *c = chunk_at(s, p);
        uint64_t have = chunk_size(c);
        if (have < KV_CHUNK_MIN || have > s->heap_size - p)
            return KV_ECORRUPT;
        if (!(c->tag & KV_CHUNK_USED)) {
            if (have >= size)
                return 0;
            free_at = p;
            p += have;
            continue;
        }
        if (owned_chunk(s, p) != have)
            return KV_ECORRUPT;
        if (free_at != UINT64_MAX && have <= p - free_at) {
            move_entry(s, (c->tag & KV_CHUNK_OWNER) - 1, free_at);
            p = free_at; /* now a used chunk, then the free chunk that took its old place */
        } else
            p += have;
        free_at = UINT64_MAX;
    }
    return 0;
}

/* The expiry a ttl gives a write made now: 0 for none, or KV_EINVAL (as *expires) when it does
 * not fit in 64 bits. */
static int expiry_of(uint64_t ttl_ms, uint64_t *expires)
{
    uint64_t now = ttl_ms ? realtime_ms() : 0;
    *expires = ttl_ms ? now + ttl_ms : 0;
    return ttl_ms > UINT64_MAX - now ? KV_EINVAL : 0;
}

static int set_if_at(kv_store *s, const char *key, size_t key_len, const char *value,
                     size_t value_len, uint64_t expected_rev, uint64_t ttl_ms,
                     uint64_t *current_rev)
{
    int rc = check_key(s, key, key_len);
    if (rc)
        return rc;
    if (value_len > s->value_max)
        return KV_EVALLEN;
    if (!value && value_len)
        return KV_EINVAL;
    if ((rc = lock_for_write(s)))
        return rc;
    kv_stamp next = {0, 0, 0};
    /* The clock read under the lock: a writer that waited for it does not shorten its ttl. */
    if (!(rc = expiry_of(ttl_ms, &next.expires_at_ms)))
        rc = set_locked(s, key, (uint32_t)key_len, value, value_len, expected_rev, current_rev,
                        &next);
    unlock_store(s);
    return rc;
}

int kv_set_if_ttl(kv_store *s, const char *key, size_t key_len, const char *value,
                  size_t value_len, uint64_t expected_rev, uint64_t ttl_ms, uint64_t *current_rev)
{
    KV_ON_CURRENT(s, set_if_at(s, key, key_len, value, value_len, expected_rev, ttl_ms,
                               current_rev));
}

int kv_set_if(kv_store *s, const char *key, size_t key_len, const char *value, size_t value_len,
              uint64_t expected_rev, uint64_t *current_rev)
{
    return kv_set_if_ttl(s, key, key_len, value, value_len, expected_rev, 0, current_rev);
}

int kv_set_ttl(kv_store *s, const char *key, size_t key_len, const char *value, size_t value_len,
               uint64_t ttl_ms)
{
    return kv_set_if_ttl(s, key, key_len, value, value_len, KV_ANY_REVISION, ttl_ms, NULL);
}

int kv_set(kv_store *s, const char *key, size_t key_len, const char *value, size_t value_len)
{
    return kv_set_if_ttl(s, key, key_len, value, value_len, KV_ANY_REVISION, 0, NULL);
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

static int incr_at(kv_store *s, const char *key, size_t key_len, int64_t delta, uint64_t ttl_ms,
                   int64_t *result, uint64_t *revision)
{
    int rc = check_key(s, key, key_len);
    if (rc)
        return rc;
    if ((rc = lock_for_write(s)))
        return rc;
    /* Read, add and write under one hold of the lock: no other write can come in between. */
    char digits[KV_INT64_DIGITS];
    kv_read r = {digits, sizeof digits, 0, 0, 0, 0, 0};
    int64_t value = 0;
    kv_stamp next = {0, 0, 0};
    /* A counter keeps its expiry; one this call creates (or recreates: an expired one reads as
     * missing) gets the ttl's. */
    if ((rc = read_once(s, key, (uint32_t)key_len, kv_hash(key, key_len), &r)) == KV_NOTFOUND)
        rc = expiry_of(ttl_ms, &next.expires_at_ms); /* a missing key counts as 0 */
    else if (rc == KV_EBUFSIZE)
        rc = KV_ENOTNUM; /* longer than any int64 */
    else if (rc == KV_RETRY)
        rc = KV_ECORRUPT; /* no writer runs while we hold the lock: the entry is damaged */
    else if (!rc) {
        rc = parse_int64(digits, r.value_len, &value);
        next.expires_at_ms = r.expires_at_ms;
    }
    if (!rc && __builtin_add_overflow(value, delta, &value))
        rc = -ERANGE;
    if (!rc) {
        size_t len = format_int64(value, digits);
        rc = len > s->value_max ? KV_EVALLEN
                                : set_locked(s, key, (uint32_t)key_len, digits, len, KV_ANY_REVISION,
                                             revision, &next);
    }
    unlock_store(s);
    if (!rc && result)
        *result = value;
    return rc;
}

int kv_incr_ttl(kv_store *s, const char *key, size_t key_len, int64_t delta, uint64_t ttl_ms,
                int64_t *result, uint64_t *revision)
{
    KV_ON_CURRENT(s, incr_at(s, key, key_len, delta, ttl_ms, result, revision));
}

int kv_incr_rev(kv_store *s, const char *key, size_t key_len, int64_t delta, int64_t *result,
                uint64_t *revision)
{
    return kv_incr_ttl(s, key, key_len, delta, 0, result, revision);
}

int kv_incr(kv_store *s, const char *key, size_t key_len, int64_t delta, int64_t *result)
{
    return kv_incr_ttl(s, key, key_len, delta, 0, result, NULL);
}

/* Whether slot's entry, at index cell pos, can be removed without following damage. */
static int removable(const kv_store *s, uint32_t slot, uint32_t pos)
{
    return index_run_sound(s, pos) && s->h->free_head <= s->max_entries &&
           entry_chunk_ok(s, entry_at(s, slot));
}

/* Remove slot's entry, at index cell pos (lock held, checked by removable), recording `op`: a
 * delete, or the end of an expired or evicted entry. Its key, for the ring, is read from its chunk,
 * which stays intact until the very end. */
static void remove_entry(kv_store *s, uint32_t slot, uint32_t pos, uint32_t op, const kv_stamp *at)
{
    kv_header *h = s->h;
    kv_entry *e = entry_at(s, slot);
    uint64_t chunk = e->chunk, size = e->chunk_size;
    uint32_t key_len = e->key_len;
    const char *key = (const char *)s->heap + chunk + KV_CHUNK_HEAD;
    KV_FAULT(1);
    undo_arm(s, slot);
    KV_FAULT(2);
    seq_begin(h);
    counter_begin(&h->index_seq);
    KV_FAULT(3);
    index_remove(s, pos);
    KV_FAULT(5);
    e->key_len = 0;
    e->next_free = h->free_head;
    h->free_head = slot + 1;
    h->entry_count--;
    h->memory_used -= size;
    ring_append(s, stamp_revision(h, at), op, key, key_len, NULL, 0, stamp_time(at, realtime_ms()), 0);
    KV_FAULT(6);
    /* Disarm, then end the counters; free the chunk last (see put_entry). The totals are counted
     * once the removal is sure to stay (a rollback would not take a count back). */
    undo_disarm(s);
    if (op == KV_CHANGE_EXPIRED)
        h->expired_total++;
    else if (op == KV_CHANGE_EVICTED)
        h->evicted_total++;
    KV_FAULT(7);
    counter_end(&h->index_seq);
    seq_end(h);
    KV_FAULT(8);
    heap_release(s, chunk, size);
}

/* Remove slot's live entry as a direct write records `op` (lock held): 1, or KV_ECORRUPT when its
 * key does not lead to it. */
static int remove_slot(kv_store *s, uint32_t slot, uint32_t op)
{
    const kv_entry *e = entry_at(s, slot);
    uint32_t key_len, value_len, found;
    const unsigned char *data = entry_data(s, e, &key_len, &value_len);
    if (!data)
        return KV_ECORRUPT;
    uint32_t pos = index_find(s, (const char *)data, key_len, e->hash, &found, NULL);
    if (found != slot || !removable(s, slot, pos))
        return KV_ECORRUPT;
    static const kv_stamp next = {0, 0, 0};
    remove_entry(s, slot, pos, op, &next);
    return 1;
}

/* Reclaim slot's entry if it has expired (lock held, a direct write) by now_ms, or (0) by the
 * clock, read only for an entry that expires: 1 when it did, 0 when the slot is free or its entry
 * live, or KV_ECORRUPT. */
static int reclaim_expired(kv_store *s, uint32_t slot, uint64_t now_ms)
{
    const kv_entry *e = entry_at(s, slot);
    if (!e->key_len || !e->expires_at_ms ||
        !is_expired(e->expires_at_ms, now_ms ? now_ms : realtime_ms()))
        return 0;
    return remove_slot(s, slot, KV_CHANGE_EXPIRED);
}

/* The slots in use: [0, high water), bounded by the geometry whatever the header says. */
static uint32_t slots_used(const kv_store *s)
{
    uint32_t high = s->h->high_water;
    return high < s->max_entries ? high : s->max_entries;
}

/* Look at up to `max` slots from the expire hand (lock held) and reclaim the expired entries: how
 * many it reclaimed, or KV_ECORRUPT. The hand moves on, so calls over time cover every slot. */
static int sweep_expired(kv_store *s, uint32_t max)
{
    uint32_t high = slots_used(s), slot = s->h->expire_hand, reclaimed = 0;
    uint64_t now = realtime_ms();
    if (slot >= high)
        slot = 0;
    for (uint32_t i = 0; i < max && i < high; i++) {
        int rc = reclaim_expired(s, slot, now);
        if (rc < 0)
            return rc;
        reclaimed += (uint32_t)rc;
        slot = slot + 1 < high ? slot + 1 : 0;
    }
    s->h->expire_hand = slot;
    return (int)reclaimed;
}

/* Evict one entry other than slot `keep` (policy lru, lock held): of the first KV_EVICT_SAMPLES
 * live entries from the evict hand, the first expired one, else the one used least recently.
 * 1 when it removed one, 0 when there is none to remove, or KV_ECORRUPT. */
static int evict_one(kv_store *s, uint32_t keep)
{
    uint32_t high = slots_used(s), slot = s->h->evict_hand, victim = UINT32_MAX, oldest = 0;
    uint32_t op = KV_CHANGE_EVICTED, seen = 0;
    uint64_t now = realtime_ms();
    uint32_t tick = access_tick(now);
    if (slot >= high)
        slot = 0;
    for (uint32_t i = 0; i < high && seen < KV_EVICT_SAMPLES && op == KV_CHANGE_EVICTED; i++) {
        const kv_entry *e = entry_at(s, slot);
        if (e->key_len && slot != keep) {
            seen++;
            uint32_t age = tick - e->last_access; /* modulo 2^32: ticks wrap */
            if (is_expired(e->expires_at_ms, now))
                op = KV_CHANGE_EXPIRED;
            if (victim == UINT32_MAX || age > oldest || op == KV_CHANGE_EXPIRED) {
                victim = slot;
                oldest = age;
            }
        }
        slot = slot + 1 < high ? slot + 1 : 0;
    }
    s->h->evict_hand = slot;
    return victim == UINT32_MAX ? 0 : remove_slot(s, victim, op);
}

/* Make room for a direct set that found none (lock held), sparing slot `keep` (the entry it
 * rewrites): with lru evict one entry; otherwise reclaim the expired ones among the next
 * KV_FULL_SWEEP slots. > 0 when something went, 0 when nothing could, or KV_ECORRUPT. */
#define KV_FULL_SWEEP 1024
static int make_room(kv_store *s, uint32_t keep)
{
    if (__atomic_load_n(&s->h->evict_policy, __ATOMIC_RELAXED) == KV_EVICT_LRU)
        return evict_one(s, keep);
    return sweep_expired(s, KV_FULL_SWEEP);
}

/* Delete key, recording `op`: KV_CHANGE_DELETE, or (kv_apply) the reason its source gave. */
static int delete_locked(kv_store *s, const char *key, uint32_t key_len, uint64_t expected_rev,
                         uint64_t *current_rev, const kv_stamp *at, uint32_t op)
{
    uint32_t slot;
    uint32_t pos = index_find(s, key, key_len, kv_hash(key, key_len), &slot, NULL);
    if (slot == KV_TORN_SLOT)
        return KV_ECORRUPT;
    if (current_rev)
        *current_rev = 0;
    if (slot == UINT32_MAX)
        return KV_NOTFOUND;
    /* An expired entry is absent for a direct delete too; its end is still recorded. */
    int rc = !at->revision ? reclaim_expired(s, slot, 0) : 0;
    if (rc)
        return rc < 0 ? rc : KV_NOTFOUND;
    uint64_t found_rev = entry_at(s, slot)->revision;
    if (current_rev)
        *current_rev = found_rev;
    if (expected_rev != KV_ANY_REVISION && found_rev != expected_rev)
        return KV_ECONFLICT;
    if (!removable(s, slot, pos))
        return KV_ECORRUPT;
    remove_entry(s, slot, pos, op, at);
    return 0;
}

static int delete_if_at(kv_store *s, const char *key, size_t key_len, uint64_t expected_rev,
                        uint64_t *current_rev)
{
    int rc = check_key(s, key, key_len);
    if (rc)
        return rc;
    if ((rc = lock_for_write(s)))
        return rc;
    static const kv_stamp next = {0, 0, 0};
    rc = delete_locked(s, key, (uint32_t)key_len, expected_rev, current_rev, &next,
                       KV_CHANGE_DELETE);
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

/* The count goes out through *reclaimed: as a return value, 2 would read as KV_MOVED. */
static int expire_at(kv_store *s, uint32_t max, int *reclaimed)
{
    if (!s)
        return KV_EINVAL;
    int rc = lock_for_write(s);
    if (rc)
        return rc;
    rc = sweep_expired(s, max);
    unlock_store(s);
    *reclaimed = rc;
    return rc < 0 ? rc : 0;
}

static int expire_on(kv_store *s, uint32_t max, int *reclaimed)
{
    KV_ON_CURRENT(s, expire_at(s, max, reclaimed));
}

int kv_expire(kv_store *s, uint32_t max)
{
    int reclaimed = 0, rc = expire_on(s, max, &reclaimed);
    return rc ? rc : reclaimed;
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
static void apply_absent_delete(kv_store *s, uint32_t op, const char *key, uint32_t key_len,
                                const kv_stamp *at)
{
    seq_begin(s->h);
    ring_append(s, stamp_revision(s->h, at), op, key, key_len, NULL, 0, at->timestamp, 0);
    seq_end(s->h);
}

static int apply_at(kv_store *s, int op, const char *key, size_t key_len, const char *value,
                    size_t value_len, uint64_t revision, int64_t timestamp, uint64_t expires_at_ms)
{
    int rc = op == KV_APPLY_VERSION ? (s ? 0 : KV_EINVAL) : check_key(s, key, key_len);
    if (rc)
        return rc;
    if (op < KV_APPLY_VERSION || op > KV_CHANGE_EVICTED || revision == 0 || revision == UINT64_MAX)
        return KV_EINVAL;
    if (op == KV_CHANGE_SET && value_len > s->value_max)
        return KV_EVALLEN;
    if (op == KV_CHANGE_SET && !value && value_len)
        return KV_EINVAL;
    if ((rc = lock_store(s)))
        return rc;
    const kv_stamp at = {revision, timestamp, op == KV_CHANGE_SET ? expires_at_ms : 0};
    if (revision <= s->h->version)
        rc = KV_ECONFLICT;
    else if (op == KV_APPLY_VERSION) {
        seq_begin(s->h);
        s->h->version = revision;
        seq_end(s->h);
    } else if (op == KV_CHANGE_SET)
        rc = set_locked(s, key, (uint32_t)key_len, value, value_len, KV_ANY_REVISION, NULL, &at);
    else if ((rc = delete_locked(s, key, (uint32_t)key_len, KV_ANY_REVISION, NULL, &at,
                                 (uint32_t)op)) == KV_NOTFOUND) {
        apply_absent_delete(s, (uint32_t)op, key, (uint32_t)key_len, &at);
        rc = 0;
    }
    unlock_store(s);
    return rc;
}

int kv_apply(kv_store *s, int op, const char *key, size_t key_len, const char *value,
             size_t value_len, uint64_t revision, int64_t timestamp, uint64_t expires_at_ms)
{
    KV_ON_CURRENT(s, apply_at(s, op, key, key_len, value, value_len, revision, timestamp,
                              expires_at_ms));
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
        uint32_t op_seen = c->op, klen = c->key_len, vlen = c->value_len, flags = c->flags;
        if (klen > s->key_max || vlen > s->value_max)
            continue; /* torn */
        if ((flags & KV_CHANGE_UNKEPT) || klen + vlen > s->ring_data) {
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            if (__atomic_load_n(&c->revision, __ATOMIC_RELAXED) != revision)
                continue;
            return KV_EEXPIRED; /* too big for the ring: the store holds its outcome */
        }
        if (klen > key_cap || vlen > value_cap)
            rc = KV_EBUFSIZE;
        else {
            memcpy(key, c->data, klen);
            if (vlen)
                memcpy(value, c->data + klen, vlen);
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

/* Copy cell `cell` (a slot, a ring cell, or the undo record's entry) into buf: an entry's head with
 * its key and value after it (bounds-checked; left out when its chunk is out of range), a ring
 * cell as it stands. */
static void copy_cell(const kv_store *s, uint32_t cell, unsigned char *buf)
{
    if (cell >= s->max_entries && cell < s->max_entries + KV_RING_CELLS) {
        memcpy(buf, s->ring + (size_t)(cell - s->max_entries) * s->ring_cell, s->ring_cell);
        return;
    }
    const kv_entry *e = cell < s->max_entries ? entry_at(s, cell) : undo_entry(s);
    memcpy(buf, e, KV_ENTRY_SIZE);
    uint32_t key_len, value_len;
    const unsigned char *data = entry_data(s, (const kv_entry *)buf, &key_len, &value_len);
    if (data)
        memcpy(buf + KV_ENTRY_SIZE, data, (size_t)key_len + value_len);
}

uint32_t kv_copy_cell(const kv_store *s, uint32_t cell, void *buf)
{
    if (!s || !buf || cell > s->max_entries + KV_RING_CELLS)
        return 1;
    if (cell >= s->max_entries) {
        copy_cell(s, cell, buf);
        return 0;
    }
    const uint32_t *counter = &entry_at(s, cell)->seq;
    uint32_t before = __atomic_load_n(counter, __ATOMIC_ACQUIRE);
    copy_cell(s, cell, buf);
    return counter_read_valid(counter, before) ? before : 1;
}

int kv_read_cell(kv_store *s, uint32_t cell, void *buf)
{
    if (!s || !buf || cell >= s->max_entries + KV_RING_CELLS)
        return KV_EINVAL;
    int rc = lock_mapping(s);
    if (rc)
        return rc;
    copy_cell(s, cell, buf);
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
        h->value_max != s->value_max || h->entry_size != KV_ENTRY_SIZE ||
        h->index_cells != s->index_mask + 1 || h->heap_size != s->heap_size ||
        h->fixed_chunk != s->fixed_chunk || h->ring_data != s->ring_data)
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
        if (!entry_chunk_ok(s, e))
            return "entry: its chunk lies outside the heap or cannot hold its key and value";
        const char *key = (const char *)s->heap + e->chunk + KV_CHUNK_HEAD;
        if (memchr(key, 0, e->key_len))
            return "entry: key holds a NUL byte";
        if (e->hash != kv_hash(key, e->key_len))
            return "entry: stored hash does not match the key";
        if (e->revision == 0 || e->revision > h->version)
            return "entry: revision out of range";
        if (e->seq & 1)
            return "entry: its sequence counter is odd with no writer";
        uint32_t found;
        index_find(s, key, e->key_len, e->hash, &found, NULL);
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

/* The heap, chunk by chunk: each used chunk owned by exactly one live entry, each free one whole
 * (footer), coalesced, and in exactly one free list (of its class, linked both ways); the totals
 * right. `listed` marks the free chunks' starts, one bit per KV_CHUNK_ALIGN bytes. */
static const char *check_heap_walk(const kv_store *s, unsigned char *listed, uint64_t *free_count)
{
    const kv_header *h = s->h;
    uint64_t p = 0, used = 0, free_bytes = 0, owned = 0;
    int prev_free = 0;
    while (p < s->heap_size) {
        const kv_chunk *c = chunk_at(s, p);
        uint64_t size = chunk_size(c);
        if (size < KV_CHUNK_MIN || size > s->heap_size - p)
            return "heap: a chunk's size runs outside the heap";
        if (!(c->tag & KV_CHUNK_PREV_FREE) != !prev_free)
            return "heap: a chunk's previous-free bit is wrong";
        if (c->tag & KV_CHUNK_USED) {
            if (owned_chunk(s, p) != size)
                return "heap: a used chunk no live entry owns";
            used += size;
            owned++;
        } else {
            if (prev_free)
                return "heap: two free chunks side by side (not coalesced)";
            if (*chunk_footer(s, p, size) != size)
                return "heap: a free chunk's footer differs from its size";
            listed[p / KV_CHUNK_ALIGN / 8] |= (unsigned char)(1u << (p / KV_CHUNK_ALIGN % 8));
            free_bytes += size;
            ++*free_count;
        }
        prev_free = !(c->tag & KV_CHUNK_USED);
        p += size;
    }
    if (owned != h->entry_count)
        return "heap: a live entry's chunk is not a chunk of the heap";
    if (used != h->memory_used)
        return "heap: memory_used differs from the live entries' chunks";
    if (free_bytes != h->heap_free)
        return "heap: heap_free differs from the free chunks";
    return NULL;
}

static const char *check_free_lists(const kv_store *s, unsigned char *listed, uint64_t free_count)
{
    uint64_t found = 0;
    for (uint32_t k = 0; k < KV_HEAP_CLASSES; k++) {
        uint64_t prev = 0;
        for (uint64_t link = s->h->free_heads[k]; link; link = chunk_at(s, link - 1)->next) {
            uint64_t at = link - 1, bit = at / KV_CHUNK_ALIGN;
            if (!link_ok(s, link) || !(listed[bit / 8] & (1u << (bit % 8))))
                return "free lists: a list links to something that is not a free chunk, or twice to one (a cycle)";
            listed[bit / 8] &= (unsigned char)~(1u << (bit % 8));
            if (size_class(chunk_size(chunk_at(s, at))) != k)
                return "free lists: a chunk is in the list of another size class";
            if (chunk_at(s, at)->prev != prev)
                return "free lists: a chunk's back link is wrong";
            prev = link;
            found++;
        }
    }
    return found == free_count ? NULL : "free lists: a free chunk is in no list";
}

static const char *check_heap(const kv_store *s)
{
    unsigned char *listed = calloc(s->heap_size / KV_CHUNK_ALIGN / 8 + 1, 1);
    if (!listed)
        return "heap: no memory to check it";
    uint64_t free_count = 0;
    const char *detail = check_heap_walk(s, listed, &free_count);
    if (!detail)
        detail = check_free_lists(s, listed, free_count);
    free(listed);
    return detail;
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
    if (!detail)
        detail = check_heap(s);
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
uint64_t kv_memory_bytes(const kv_store *s) { return s->heap_size; }
uint64_t kv_memory_used(const kv_store *s)
{
    return __atomic_load_n(&now_of(s)->h->memory_used, __ATOMIC_RELAXED);
}
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

uint32_t kv_evict_policy(const kv_store *s)
{
    return __atomic_load_n(&now_of(s)->h->evict_policy, __ATOMIC_RELAXED) == KV_EVICT_LRU
               ? KV_EVICT_LRU
               : KV_EVICT_NONE;
}

uint64_t kv_expired_total(const kv_store *s)
{
    return __atomic_load_n(&now_of(s)->h->expired_total, __ATOMIC_RELAXED);
}

uint64_t kv_evictions_total(const kv_store *s)
{
    return __atomic_load_n(&now_of(s)->h->evicted_total, __ATOMIC_RELAXED);
}

void kv_touch(kv_store *s, uint32_t slot)
{
    const kv_store *now = now_of(s);
    if (slot < now->max_entries)
        touch(now, slot);
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
    case KV_EFULL:     return "store full: every entry is in use, or its memory has no room for the entry";
    case KV_EINVAL:    return "invalid argument";
    case KV_EINCOMPAT:
        return "incompatible segment: not a shmkv store of this layout (one made by an older shmkv: "
               "read it with that version, unlink it and create it again), or damaged";
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
    uint32_t key_len, value_len, hash, last_access;
    int64_t  timestamp;
    uint64_t revision, expires_at_ms;
} kv_record;

/* Slot `slot` of s (lock held): 1 with the record when it is live, 0 when it is free, -1 when it is
 * damaged. The key and value are read from the entry's chunk, bounds-checked. */
static int read_record(const kv_store *s, uint32_t slot, kv_record *r)
{
    const kv_entry *e = entry_at(s, slot);
    if (e->key_len == 0)
        return 0;
    uint32_t key_len, value_len;
    const unsigned char *data = entry_data(s, e, &key_len, &value_len);
    if (!data || !entry_chunk_ok(s, e))
        return -1; /* its chunk and lengths disagree: resize_fits answers KV_ECORRUPT */
    *r = (kv_record){data,         data + key_len, key_len,     value_len,
                     e->hash,      e->last_access, e->timestamp, e->revision,
                     e->expires_at_ms};
    return 1;
}

/* The copy's heap is filled from its start, one chunk after another, with no free list until the
 * end (fill_end): no search, no split, and no fragmentation in the copy. */
typedef struct kv_fill {
    uint64_t next;      /* where the next chunk starts */
    uint32_t last_slot; /* the slot whose chunk ends at next */
} kv_fill;

static void fill_begin(kv_store *d, kv_fill *f)
{
    fl_remove(d, 0); /* the one free chunk a new heap starts as */
    *f = (kv_fill){0, 0};
}

/* The rest of the heap becomes its free chunk; a rest too small to be one joins the last chunk. */
static void fill_end(kv_store *d, const kv_fill *f)
{
    uint64_t rest = d->heap_size - f->next;
    if (rest >= KV_CHUNK_MIN) {
        fl_insert(d, f->next, rest);
    } else if (rest) {
        kv_entry *e = entry_at(d, f->last_slot);
        e->chunk_size += (uint32_t)rest;
        chunk_at(d, e->chunk)->units = e->chunk_size / KV_CHUNK_ALIGN;
        d->h->memory_used += rest;
    }
}

/* Put a record in slot `slot` of d, a segment no one else sees yet, in the next chunk of d's heap,
 * and index it. resize_fits has checked that d's heap holds every record's chunk. */
static void write_record(kv_store *d, uint32_t slot, const kv_record *r, kv_fill *f)
{
    uint64_t chunk = f->next, size = chunk_need(d, (uint64_t)r->key_len + r->value_len);
    kv_chunk *c = chunk_at(d, chunk);
    c->units = (uint32_t)(size / KV_CHUNK_ALIGN);
    c->tag = KV_CHUNK_USED | (slot + 1);
    f->next += size;
    f->last_slot = slot;
    write_chunk(d, chunk, (const char *)r->key, r->key_len, (const char *)r->value, r->value_len);
    kv_entry *e = entry_at(d, slot);
    e->key_len = r->key_len;
    e->value_len = r->value_len;
    e->hash = r->hash;
    e->seq = 0;
    e->timestamp = r->timestamp;
    e->revision = r->revision;
    e->expires_at_ms = r->expires_at_ms;
    e->last_access = r->last_access;
    e->chunk = chunk;
    e->chunk_size = (uint32_t)size;
    d->h->memory_used += size;
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
    uint64_t memory = 0; /* the chunks the copy takes in a heap of g's, whose chunks fit exactly */
    int rc = 0, got;
    kv_record r;
    for (uint32_t slot = 0; slot < s->h->high_water && slot < s->max_entries; slot++) {
        if (!(got = read_record(s, slot, &r)))
            continue;
        if (got < 0)
            return KV_ECORRUPT;
        live++;
        memory += g->fixed_chunk ? g->fixed_chunk : chunk_bytes((uint64_t)r.key_len + r.value_len);
        if (!rc && r.key_len > g->key_max)
            rc = KV_EKEYLEN;
        if (!rc && r.value_len > g->value_max)
            rc = KV_EVALLEN;
    }
    if (live != s->h->entry_count)
        return KV_ECORRUPT;
    if (live > g->max_entries || memory > g->heap_size)
        return KV_EFULL; /* the entries, or their bytes: KvStore.resize and the CLI say which */
    return rc;
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
    kv_fill fill;
    fill_begin(d, &fill);
    for (uint32_t slot = 0; slot < high; slot++) {
        if (read_record(s, slot, &r) > 0)
            write_record(d, keep_slots ? slot : to++, &r, &fill);
        else if (keep_slots)
            entry_at(d, slot)->next_free = entry_at(s, slot)->next_free;
        if (slot == high / 2)
            KV_FAULT(20); /* mid-copy */
    }
    d->h->entry_count = h->entry_count;
    d->h->high_water = keep_slots ? high : to;
    d->h->free_head = keep_slots ? h->free_head : 0;
    fill_end(d, &fill);
}

/* Copy the change ring, so revisions (and /watch ids) carry over. A record the new cells cannot hold
 * keeps its lengths only (KV_CHANGE_UNKEPT, as ring_append marks one); a damaged one stays empty:
 * kv_change answers KV_EEXPIRED for both, as for any change it no longer has. */
static void copy_ring(const kv_store *s, kv_store *d)
{
    for (uint32_t cell = 0; cell < KV_RING_CELLS; cell++) {
        const kv_change_rec *c = (const kv_change_rec *)(s->ring + (size_t)cell * s->ring_cell);
        kv_change_rec *to = (kv_change_rec *)(d->ring + (size_t)cell * d->ring_cell);
        uint64_t bytes = (uint64_t)c->key_len + c->value_len +
                         (c->flags & KV_CHANGE_EXPIRES ? sizeof(uint64_t) : 0);
        int kept = !(c->flags & KV_CHANGE_UNKEPT);
        if (c->revision == 0 || c->revision > s->h->version || (kept && bytes > s->ring_data))
            continue;
        *to = *c;
        if (kept && bytes > d->ring_data)
            to->flags = KV_CHANGE_UNKEPT;
        else if (kept)
            memcpy(to->data, c->data, bytes);
    }
}

static void copy_header(const kv_store *s, kv_store *d)
{
    d->h->version = s->h->version;
    d->h->lock_recoveries = s->h->lock_recoveries;
    d->h->created = s->h->created;
    d->h->expired_total = s->h->expired_total;
    d->h->evicted_total = s->h->evicted_total;
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
    /* A store made without memory_bytes (fixed chunks) keeps that guarantee unless given some. */
    uint64_t memory = o && o->memory_bytes ? o->memory_bytes : s->fixed_chunk ? 0 : s->heap_size;
    int rc = compute_geometry(o && o->max_entries ? o->max_entries : s->max_entries,
                              o && o->key_max ? o->key_max : s->key_max,
                              o && o->value_max ? o->value_max : s->value_max, memory, g);
    g->evict = o && o->evict ? o->evict : kv_evict_policy(s);
    return rc ? rc : g->evict > KV_EVICT_LRU ? KV_EINVAL : 0;
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
    if (opts && opts->lock_timeout_ms)
        kv_set_lock_timeout(s, opts->lock_timeout_ms > INT32_MAX ? INT32_MAX : (int32_t)opts->lock_timeout_ms);
    rc = resize_on(s, opts);
    kv_close(s); /* with every mapping it followed to */
    return rc;
#endif
}
