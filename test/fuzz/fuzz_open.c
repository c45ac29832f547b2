/* fuzz_open: kv_open on segments whose bytes are hostile, then reads, kv_check and writes on it.
 *
 * The header's threat model: anyone who can write the segment can corrupt it, and the store must
 * answer with errors or wrong data, never a crash. This target builds such a segment, opens it, and
 * requires that kv_open returns an error or a usable store; on a store that opens, kv_get,
 * kv_change, kv_copy_cell, kv_check, kv_set and kv_delete must not crash or hang, and must return
 * documented codes. When kv_check calls the store sound, it must also behave like one (a set
 * reads back, counts and version move by one).
 *
 * Input: byte 0 is the mode: bit 0 raw, bit 1 dead owner, bit 2 resize, bit 3 kv_resize.
 *   raw (bit 0)      the rest of the input is the segment, byte for byte.
 *   mutated (else)   a sound store made fresh, then damaged:
 *                      4 bytes geometry (max_entries 1 + b % 64, key_max 1 + b % 16, value_max
 *                      1 + b % 64, memory_bytes: odd b, 4096 + 16 * (b >> 1); even b, 0), 1 byte how
 *                      many keys k0, k1, ... to set (mod max_entries + 1), values of mixed sizes,
 *                      1 byte a mask of the first eight to delete again (a non-trivial free list, and
 *                      free chunks in the heap), with bit 2: 1 signed byte, the file grows or shrinks
 *                      by 8 times it, then patches of 7 bytes: u16 offset, u8 kind (bit 0: write a
 *                      u32, else one byte; bit 1: the offset is into the heap, mod its size, else
 *                      into the file, mod its size), u32 value.
 *   dead owner (bit 1)  before kv_open, a thread locks the segment's mutex and exits holding it, so
 *                      the first lock gets EOWNERDEAD and runs crash recovery on the damaged bytes.
 *   kv_resize (bit 3)  after kv_open, kv_resize the segment to a geometry taken from the last four
 *                      input bytes (as the mutated geometry is, memory_bytes included): it must answer a documented code and
 *                      leave no copy behind; the handle follows, then a fresh one is probed.
 *
 * What the target keeps sound, and why (nothing else is spared):
 * - The mutex bytes (offset 128, sizeof(pthread_mutex_t)). glibc trusts them completely: an owner tid
 *   that is not ours and not dead makes pthread_mutex_lock wait forever, other garbage makes it fail
 *   or misbehave in ways the library cannot detect. A writer who corrupts them can stop all writers
 *   (as the header says for a stalled lock holder) but that is a denial of service the store cannot
 *   prevent, not a memory-safety bug; fuzzing it would only make runs hang. So patches skip those
 *   bytes, and a raw segment gets a freshly initialised robust mutex there. The dead-owner mode
 *   covers the one mutex state the library is built to handle.
 * - The ready marker, when the magic is 0 or right: any value but "ready" only makes kv_open poll the
 *   header with pread for a second and return KV_ENOTREADY, never mapping anything (test_segment
 *   covers that); the fuzzer would spend its time asleep. A raw input never yields an empty file
 *   either (that is the same wait).
 * Reads or writes past the mapping are caught by the guarded mapping of fuzz_common.h. */
#include "fuzz_common.h"

#include <pthread.h>

#define MODE_RAW        1
#define MODE_DEAD_OWNER 2
#define MODE_RESIZE     4
#define MODE_KV_RESIZE  8

#define MUTEX_OFF   128u        /* documented layout */
#define MUTEX_END   (MUTEX_OFF + sizeof(pthread_mutex_t))
#define SEG_MAGIC   0x564B4D53u /* documented: "SMKV" */
#define SEG_READY   0x52454459u
#define READY_OFF   8u
#define HEADER_SIZE 640u        /* the header, the undo entry copy included */
#define HEAP_OFF    224u        /* documented: the heap's offset and size */
#define MAX_PATCHES 64
#define PROBE_KEYS  8  /* k0.. probed with kv_get */
#define SLOT_KEYS   16 /* slots whose stored key is probed */

/* ---- building the segment ---------------------------------------------------------------------- */

static int create_fd(const char *name)
{
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 && errno == EEXIST) { /* left by an earlier process with our pid */
        shm_unlink(name);
        fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    }
    FZ_REQUIRE(fd >= 0, "shm_open %s: %s", name, strerror(errno));
    return fd;
}

static off_t file_size(int fd)
{
    struct stat st;
    FZ_REQUIRE(fstat(fd, &st) == 0, "fstat: %s", strerror(errno));
    return st.st_size;
}

/* Run fn on the segment's mutex through a mapping of our own. */
static void with_mutex(int fd, void (*fn)(pthread_mutex_t *))
{
    size_t size = (size_t)file_size(fd);
    if (size < MUTEX_END)
        return;
    unsigned char *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    FZ_REQUIRE(base != MAP_FAILED, "mmap: %s", strerror(errno));
    fn((pthread_mutex_t *)(void *)(base + MUTEX_OFF));
    munmap(base, size);
}

/* The attributes the library gives its mutex. */
static void init_mutex(pthread_mutex_t *m)
{
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    FZ_REQUIRE(pthread_mutex_init(m, &attr) == 0, "pthread_mutex_init");
    pthread_mutexattr_destroy(&attr);
}

static void *lock_and_exit(void *m)
{
    pthread_mutex_lock(m); /* and never unlock: the thread dies owning it */
    return NULL;
}

static void abandon_mutex(pthread_mutex_t *m)
{
    pthread_t t;
    FZ_REQUIRE(pthread_create(&t, NULL, lock_and_exit, m) == 0, "pthread_create");
    pthread_join(t, NULL);
}

static int write_raw(const char *name, fz_in *in)
{
    int fd = create_fd(name);
    FZ_REQUIRE(write(fd, in->p, in->n) == (ssize_t)in->n, "write: %s", strerror(errno));
    with_mutex(fd, init_mutex);
    return fd;
}

static void prefill(kv_store *s, uint32_t n, uint8_t delete_mask)
{
    uint32_t vmax = kv_value_max(s);
    char key[16], value[64];
    for (uint32_t i = 0; i < n; i++) {
        size_t klen = (size_t)snprintf(key, sizeof key, "k%u", i), vlen = (i * 5 + 3) % (vmax + 1);
        for (size_t j = 0; j < vlen; j++)
            value[j] = (char)('a' + (i + j) % 26);
        /* cut to key_max: with short keys several names collide, so fewer entries */
        kv_set(s, key, klen > kv_key_max(s) ? kv_key_max(s) : klen, value, vlen);
    }
    for (uint32_t i = 0; i < n && i < 8; i++)
        if (delete_mask >> i & 1) {
            size_t klen = (size_t)snprintf(key, sizeof key, "k%u", i);
            kv_delete(s, key, klen > kv_key_max(s) ? kv_key_max(s) : klen);
        }
}

/* A sound store with a few entries and a free list, left under name. */
static void make_sound_segment(const char *name, fz_in *in)
{
    kv_options o = {0, 0, 0, 0600, 0, 0, 0}; /* one field at a time: initialisers are unsequenced */
    o.max_entries = 1 + fz_u8(in) % 64u;
    o.key_max = 1 + fz_u8(in) % 16u;
    o.value_max = 1 + fz_u8(in) % 64u;
    uint8_t memory = fz_u8(in);
    o.memory_bytes = memory & 1 ? 4096u + 16u * (memory >> 1) : 0;
    uint32_t n = fz_u8(in) % (o.max_entries + 1);
    uint8_t delete_mask = fz_u8(in);
    kv_store *s = NULL;
    int rc = kv_open(name, KV_CREATE | KV_EXCL, &o, &s);
    if (rc == -EEXIST) {
        kv_unlink(name);
        rc = kv_open(name, KV_CREATE | KV_EXCL, &o, &s);
    }
    FZ_REQUIRE(rc == 0, "kv_open %s: %s", name, kv_strerror(rc));
    prefill(s, n, delete_mask);
    kv_close(s);
}

static int overlaps_mutex(size_t off, size_t width)
{
    return off < MUTEX_END && off + width > MUTEX_OFF;
}

static void apply_patches(int fd, fz_in *in)
{
    for (int i = 0; i < MAX_PATCHES && in->n; i++) {
        size_t size = (size_t)file_size(fd);
        uint64_t heap[2] = {0, 0}; /* offset, size */
        if (size >= HEAP_OFF + 16 && pread(fd, heap, 16, HEAP_OFF) != 16)
            heap[1] = 0;
        uint16_t at = fz_u16(in);
        uint8_t kind = fz_u8(in);
        size_t width = (kind & 1) ? 4 : 1;
        size_t off = (kind & 2) && heap[1] && heap[0] < size ? heap[0] + at % heap[1] : at % size;
        uint32_t value = fz_u32(in);
        if (off + width > size || overlaps_mutex(off, width))
            continue;
        FZ_REQUIRE(pwrite(fd, &value, width, (off_t)off) == (ssize_t)width, "pwrite");
    }
}

static int write_mutated(const char *name, fz_in *in, uint8_t mode)
{
    make_sound_segment(name, in);
    int fd = shm_open(name, O_RDWR, 0);
    FZ_REQUIRE(fd >= 0, "shm_open %s: %s", name, strerror(errno));
    if (mode & MODE_RESIZE) {
        off_t size = file_size(fd) + (off_t)(int8_t)fz_u8(in) * 8;
        FZ_REQUIRE(ftruncate(fd, size < 1 ? 1 : size) == 0, "ftruncate: %s", strerror(errno));
    }
    apply_patches(fd, in);
    return fd;
}

static void pin_ready(int fd)
{
    uint32_t magic = 0, ready = SEG_READY;
    if (file_size(fd) < HEADER_SIZE || pread(fd, &magic, 4, 0) != 4)
        return;
    if (magic == 0 || magic == SEG_MAGIC)
        FZ_REQUIRE(pwrite(fd, &ready, 4, READY_OFF) == 4, "pwrite");
}

/* ---- using what opened ------------------------------------------------------------------------- */

static void probe_get(kv_store *s, const char *key, size_t key_len)
{
    size_t cap = kv_value_max(s), len = SIZE_MAX;
    char *buf = malloc(cap); /* exact size: an over-long copy is an ASan report */
    FZ_REQUIRE(buf, "out of memory");
    int64_t ts;
    uint64_t rev;
    int rc = kv_get_rev(s, key, key_len, buf, cap, &len, &ts, &rev);
    FZ_REQUIRE(fz_known_rc(rc), "kv_get: rc %d", rc);
    FZ_REQUIRE(rc != 0 || len <= cap, "kv_get: value_len %zu > value_max %zu", len, cap);
    free(buf);
}

/* Copy slot's stored key (documented layout: in its chunk in the heap) into an exact-size heap
 * buffer; NULL if free or out of range. */
static char *slot_key(kv_store *s, uint32_t slot, size_t *len)
{
    const unsigned char *base = kv_base(s);
    uint64_t entries_off, heap_off, chunk;
    memcpy(&entries_off, base + 40, 8); /* kv_open checked them against the geometry */
    memcpy(&heap_off, base + HEAP_OFF, 8);
    uint64_t at = entries_off + slot * 64ull;
    FZ_REQUIRE(at + 64 <= kv_map_size(s), "slot %u lies past the mapping", slot);
    uint32_t key_len;
    memcpy(&key_len, base + at, 4);
    memcpy(&chunk, base + at + 32, 8);
    if (key_len == 0 || key_len > kv_key_max(s) || chunk >= kv_memory_bytes(s) ||
        chunk + 8 + key_len > kv_memory_bytes(s))
        return NULL;
    *len = key_len;
    return (char *)fz_dup(base + heap_off + chunk + 8, key_len);
}

/* Keys worth asking for: the ones prefill used, and whatever the slots hold. */
static void for_each_probe(kv_store *s, void (*fn)(kv_store *, const char *, size_t))
{
    char key[16];
    for (unsigned i = 0; i < PROBE_KEYS; i++) {
        size_t len = (size_t)snprintf(key, sizeof key, "k%u", i);
        char *k = (char *)fz_dup(key, len < kv_key_max(s) ? len : kv_key_max(s));
        fn(s, k, len < kv_key_max(s) ? len : kv_key_max(s));
        free(k);
    }
    for (uint32_t slot = 0; slot < SLOT_KEYS && slot < kv_max_entries(s); slot++) {
        size_t len;
        char *k = slot_key(s, slot, &len);
        if (k)
            fn(s, k, len);
        free(k);
    }
}

/* The last few changes, and the oldest the ring should still hold: documented codes, and lengths
 * within the buffers when one is returned. */
static void probe_changes(kv_store *s)
{
    size_t kcap = kv_key_max(s), vcap = kv_value_max(s);
    char *key = malloc(kcap), *value = malloc(vcap);
    FZ_REQUIRE(key && value, "out of memory");
    uint64_t v = kv_version(s);
    uint64_t revs[] = {v, v - 1, v - 2, v - (KV_RING_CELLS - 1), v + 1, 1};
    for (size_t i = 0; i < sizeof revs / sizeof revs[0]; i++) {
        size_t klen = SIZE_MAX, vlen = SIZE_MAX;
        int op;
        int rc = kv_change(s, revs[i], &op, key, kcap, &klen, value, vcap, &vlen, NULL);
        FZ_REQUIRE(fz_known_rc(rc), "kv_change: rc %d", rc);
        FZ_REQUIRE(rc != 0 || (klen <= kcap && vlen <= vcap),
                   "kv_change: key_len %zu value_len %zu beyond %zu/%zu", klen, vlen, kcap, vcap);
    }
    free(key);
    free(value);
}

/* Copies of the first and last slots and ring cells, of the undo record's entry (one past the
 * ring), and of one past that: each into an exact-size heap buffer (an over-long copy is an ASan
 * report); the one past copies nothing and says odd. */
static void probe_cells(kv_store *s)
{
    uint32_t max = kv_max_entries(s);
    size_t entry_size = 64 + (size_t)kv_key_max(s) + kv_value_max(s);
    uint32_t cells[] = {0, max - 1, max, max + KV_RING_CELLS - 1, max + KV_RING_CELLS};
    unsigned char *buf = malloc(entry_size);
    FZ_REQUIRE(buf, "out of memory");
    for (size_t i = 0; i < sizeof cells / sizeof cells[0]; i++)
        kv_copy_cell(s, cells[i], buf);
    memset(buf, 0xA5, entry_size);
    FZ_REQUIRE(kv_copy_cell(s, max + KV_RING_CELLS + 1, buf) & 1, "kv_copy_cell: a cell past the ring");
    FZ_REQUIRE(buf[0] == 0xA5 && buf[entry_size - 1] == 0xA5, "kv_copy_cell: copied a cell past the ring");
    free(buf);
}

/* Whether the header says a resize superseded the segment (flags, offset 120, bit 1). Every call
 * then opens the name again to follow it, and this target has unlinked the name: they answer
 * -ENOENT, as the header documents for a name that can no longer be opened. */
static int marked_superseded(const kv_store *s)
{
    uint32_t flags;
    memcpy(&flags, (const unsigned char *)kv_base(s) + 120, sizeof flags);
    return (flags & 2) != 0;
}

static int check_rc(kv_store *s)
{
    int rc = kv_check(s);
    if (rc == -ENOENT && marked_superseded(s))
        return rc;
    FZ_REQUIRE(rc == 0 || rc == KV_ECORRUPT, "kv_check: rc %d (%s)", rc, kv_strerror(rc));
    FZ_REQUIRE((rc == 0) == (kv_check_detail(s)[0] == 0), "kv_check_detail disagrees with rc");
    return rc;
}

static void probe_write(kv_store *s, const char *key, size_t key_len)
{
    int rc = kv_set(s, key, key_len, "fuzz", 4 <= kv_value_max(s) ? 4 : 0);
    FZ_REQUIRE(fz_known_rc(rc), "kv_set: rc %d", rc);
    rc = kv_delete(s, key, key_len);
    FZ_REQUIRE(fz_known_rc(rc), "kv_delete: rc %d", rc);
    rc = kv_set(s, key, key_len, "x", 1);
    FZ_REQUIRE(fz_known_rc(rc), "kv_set: rc %d", rc);
}

/* kv_check said sound: a new key must go in, read back, and come out, one version each. A version
 * about to wrap is skipped: 2^64 writes do not happen, only a corrupted counter gets there, and
 * kv_check does not treat a high counter as damage. */
static void require_behaves(kv_store *s)
{
    static const char key[] = "fuzz-probe";
    size_t klen = sizeof key - 1 < kv_key_max(s) ? sizeof key - 1 : kv_key_max(s);
    uint64_t v = kv_version(s);
    uint32_t n = kv_count(s);
    char buf[1];
    if (v >= UINT64_MAX - 4 || kv_get(s, key, klen, buf, 1, NULL, NULL) != KV_NOTFOUND)
        return;
    uint64_t removed = kv_expired_total(s) + kv_evictions_total(s);
    int rc = kv_set(s, key, klen, "z", 1);
    if (kv_readonly(s)) { /* a replica's segment (the flag is any header bytes said) */
        FZ_REQUIRE(rc == KV_EREADONLY && kv_count(s) == n && kv_version(s) == v,
                   "sound read-only store: kv_set rc %d", rc);
        return;
    }
    /* A set that needs room may first reclaim expired entries (any the bytes say expired) or, with
     * the lru policy (whatever the header says), evict: each one a change of its own. */
    removed = kv_expired_total(s) + kv_evictions_total(s) - removed;
    if (n == kv_max_entries(s) && rc == KV_EFULL) {
        FZ_REQUIRE(removed == 0 && kv_evict_policy(s) == KV_EVICT_NONE,
                   "sound but full store: KV_EFULL after removing %llu", (unsigned long long)removed);
        return;
    }
    v += removed;
    n -= (uint32_t)removed;
    size_t len = 0;
    uint64_t rev = 0;
    FZ_REQUIRE(rc == 0 && kv_count(s) == n + 1 && kv_version(s) == v + 1,
               "sound store: kv_set rc %d, count %u -> %u, version %llu -> %llu", rc, n,
               kv_count(s), (unsigned long long)v, (unsigned long long)kv_version(s));
    rc = kv_get_rev(s, key, klen, buf, 1, &len, NULL, &rev);
    FZ_REQUIRE(rc == 0 && len == 1 && buf[0] == 'z' && rev == v + 1,
               "sound store: kv_get after kv_set rc %d len %zu rev %llu", rc, len,
               (unsigned long long)rev);
    rc = kv_delete(s, key, klen);
    FZ_REQUIRE(rc == 0 && kv_count(s) == n && kv_version(s) == v + 2,
               "sound store: kv_delete rc %d", rc);
    FZ_REQUIRE(check_rc(s) == 0, "sound store unsound after set/delete: %s", kv_check_detail(s));
}

static void exercise(kv_store *s)
{
    for_each_probe(s, probe_get);
    probe_changes(s);
    probe_cells(s);
    if (check_rc(s) == 0)
        require_behaves(s);
    for_each_probe(s, probe_write);
    probe_changes(s);
    check_rc(s);
}

/* kv_resize on hostile bytes: a documented code, no copy left under NAME.resize, and a handle that
 * follows (its next call opens the name, still there). */
static void resize_by_name(const char *name, const uint8_t geometry[4])
{
    kv_options o = {1u + geometry[0] % 64u, 1u + geometry[1] % 16u, 1u + geometry[2] % 64u, 0,
                    geometry[3] & 1 ? 4096u + 16u * (geometry[3] >> 1) : 0, 0, 0};
    int rc = kv_resize(name, &o);
    FZ_REQUIRE(fz_known_rc(rc), "kv_resize: rc %d", rc);
    char copy[128];
    snprintf(copy, sizeof copy, "/dev/shm%s.resize", name);
    FZ_REQUIRE(access(copy, F_OK) != 0, "kv_resize left %s behind (rc %d)", copy, rc);
}

/* ---- the target -------------------------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0; /* a raw segment of no bytes: the one-second ready wait, nothing else */
    fz_in in = {data, size};
    uint8_t mode = fz_u8(&in);
    char name[64];
    fz_shm_name(name, sizeof name, "open");
    int fd = (mode & MODE_RAW) ? write_raw(name, &in) : write_mutated(name, &in, mode);
    pin_ready(fd);
    if (mode & MODE_DEAD_OWNER)
        with_mutex(fd, abandon_mutex);
    kv_store *s = NULL;
    int rc = kv_open(name, 0, NULL, &s);
    close(fd);
    FZ_REQUIRE(fz_known_rc(rc) && (rc == 0) == (s != NULL), "kv_open: rc %d, handle %p", rc,
               (void *)s);
    if (s && (mode & MODE_KV_RESIZE) && size >= 4) {
        resize_by_name(name, data + size - 4);
        (void)kv_version(s); /* follows, while the name is there */
        /* A fresh handle, whose geometry accessors describe the store in force (the old handle's
         * keep describing the mapping it opened), for the probes below. */
        kv_close(s);
        rc = kv_open(name, 0, NULL, &s);
        FZ_REQUIRE(fz_known_rc(rc) && (rc == 0) == (s != NULL), "kv_open after kv_resize: rc %d", rc);
    }
    shm_unlink(name); /* only the mapping keeps it now (the handle followed a resize first) */
    if (s)
        exercise(s);
    kv_close(s);
    return 0;
}
