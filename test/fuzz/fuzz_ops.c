/* fuzz_ops: sequences of set/get/delete/set_if/delete_if (and kv_change, the change ring) against the
 * C library and a model.
 *
 * Input (every byte string decodes; a short input just ends the sequence early):
 *   4 bytes   geometry: max_entries = 1 + b % 64, key_max = 1 + b % 16 (its top bit set: the
 *             store evicts, KV_EVICT_LRU), value_max = 1 + b % 64;
 *             memory_bytes: odd b, 4096 + 16 * (b >> 1), with value_max = 1 + b' % 250 (the third
 *             byte): values of mixed sizes in a heap that fills, so sets meet KV_EFULL and the
 *             heap compacts; even b, 0
 *   then ops, each one opcode byte b (kind = b & 7, flags = the high bits) and its operands:
 *     kind 0,1 set        key, value               kind 4 set_if     key, value, expected
 *     kind 2   get        key, buffer              kind 5 delete_if  key, expected
 *     kind 3   delete     key                      kind 6 kv_change  revision, buffers
 *                                                  kind 7 kv_check mid-sequence; with flag 0x08,
 *                                                         the clock moves on 1 + (b >> 5) steps of
 *                                                         10 s, or (0x10 too) kv_expire over
 *                                                         1 + 9 * (b >> 5) slots
 *   key       one byte k: with the top bit set and keys used before, one of the last POOL keys
 *             again (so sets, gets and deletes meet); else (k & 0x7f) % (key_max + 3) raw bytes:
 *             empty keys, NUL bytes and keys one or two bytes too long all occur
 *   value     one byte v, then v % (value_max + 3) raw bytes (up to two bytes too long)
 *   expected  one byte x: x & 3 = 0 create-only (0), 1 KV_ANY_REVISION, 2 the model's revision of the
 *             key, 3 the small number x >> 2 (usually a conflict)
 *   buffer    one byte y: y & 3 = 0 value_max bytes, 1 (y >> 2) % (value_max + 1) bytes (too small
 *             ones give KV_EBUFSIZE), 2 NULL with length 0, 3 NULL with length 1 (KV_EINVAL)
 *   revision  one byte r: r & 3 = 0 version - (r >> 2), 1 version + 1 + (r >> 2), 2 zero, 3 version -
 *             250 - (r >> 2) % 12 (either side of the ring's end, KV_RING_CELLS = 256 back)
 *   buffers   one byte z: z & 3 = 0 key_max and value_max bytes, 1 (z >> 2) % (key_max + 1) and
 *             (z >> 2) % (value_max + 1) bytes, 2 NULL with length 0 for both, 3 a NULL key with
 *             length 1 (KV_EINVAL)
 *   opcode flags: 0x08 pass NULL for every optional out-pointer; for sets 0x10 passes a NULL value
 *             when the value is empty, or, with 0x20 too, a NULL value with its non-zero length
 *             (KV_EINVAL), and 0x40 sets with an hour's ttl (kv_set_if_ttl), or with 0x80 too a ttl
 *             of 1 to 3 clock steps (by the value's length); for gets 0x10 calls kv_get instead of
 *             kv_get_rev
 *   The library's wall clock is the fuzz build's (fuzz_common.h): it starts at the real time and
 *   moves only forward, by whole steps, so an entry expires between two ops, never within one.
 *
 * Every return code, value, length, revision, timestamp, expiry, version and count is compared
 * with the model. An evicting store answers a set the model finds no room for by evicting: each
 * eviction it records in the ring before the set must name a live entry other than the one set,
 * and the model follows it; every reclaim it records (KV_CHANGE_EXPIRED: by a write that meets an
 * expired entry, a full store, or kv_expire, whose count must match) must name an entry the model
 * holds that has expired, and the model follows that too; expired entries count until reclaimed
 * and are absent to every read; such a store never answers KV_EFULL to a valid set (a store with memory_bytes may also answer KV_EFULL to a set the model would make, when its
 * heap has no room: it must then have changed nothing, and at most about half its heap be free); after the sequence every entry and every change still in the ring must read back, and
 * kv_check must pass. Any difference aborts (libFuzzer saves the input).
 * Buffers handed to the library are exact-size heap copies, so ASan catches reads past them. */
#include "fuzz_common.h"

#define MAX_OPS  512 /* bounds the time one input takes */
#define POOL     8
#define KEY_CAP  (16 + 2) /* longest key the decoder makes: key_max + 2 */
#define VAL_CAP  (250 + 2)

typedef struct model_entry {
    unsigned char key[KEY_CAP], value[VAL_CAP];
    uint32_t key_len, value_len;
    uint64_t revision;
    int64_t t_min, t_max; /* the wall clock before and after the write that stamped it */
    uint64_t expires_min, expires_max; /* 0, 0: never; else the bounds its ttl gives */
    int live;
} model_entry;

/* One record of the change ring, as kv_change must report it. */
typedef struct model_change {
    unsigned char key[KEY_CAP], value[VAL_CAP];
    uint32_t key_len, value_len;
    int op;
    int unkept; /* a set whose key, value and expiry (8 bytes) did not fit the cell's data */
    int64_t t_min, t_max;
} model_change;

typedef struct model {
    uint32_t max_entries, key_max, value_max, count, evict;
    uint64_t memory_bytes;
    uint64_t version;
    model_entry e[64];
    model_change ring[KV_RING_CELLS]; /* the change of version r at (r - 1) % KV_RING_CELLS */
} model;

typedef struct blob {
    unsigned char *p; /* exact-size heap copy; never NULL */
    size_t n;
} blob;

typedef struct ctx {
    kv_store *s;
    model m;
    fz_in in;
    unsigned char pool[POOL][KEY_CAP];
    size_t pool_len[POOL];
    unsigned npool, pool_next, op_no;
} ctx;

/* ---- the model ----------------------------------------------------------------------------------- */

/* The library checks in this order: KV_EINVAL (empty key, NUL byte) wins over KV_EKEYLEN. */
static int model_key_rc(const model *m, const blob *k)
{
    if (k->n == 0 || memchr(k->p, 0, k->n))
        return KV_EINVAL;
    return k->n > m->key_max ? KV_EKEYLEN : 0;
}

/* The entry the store holds for k, expired or not: an expired one stays (and counts) until a
 * writer reclaims it. */
static model_entry *model_held(model *m, const blob *k)
{
    for (uint32_t i = 0; i < m->max_entries; i++)
        if (m->e[i].live && m->e[i].key_len == k->n && !memcmp(m->e[i].key, k->p, k->n))
            return &m->e[i];
    return NULL;
}

/* Whether e has expired by the library's clock now. Expiries and clock steps are whole multiples
 * of CLOCK_STEP_MS apart, so an input never reads an entry within the few ms of its expiry. */
static int model_expired(const model_entry *e)
{
    return e->expires_max && fz_now_ms() >= e->expires_max;
}

/* The entry k names for readers and writers: none once it has expired. */
static model_entry *model_find(model *m, const blob *k)
{
    model_entry *e = model_held(m, k);
    return e && !model_expired(e) ? e : NULL;
}

static model_entry *model_free_entry(model *m)
{
    for (uint32_t i = 0; i < m->max_entries; i++)
        if (!m->e[i].live)
            return &m->e[i];
    return NULL;
}

static void model_record(model *m, int op, const model_entry *e, int64_t t0, int64_t t1)
{
    model_change *c = &m->ring[(m->version - 1) % KV_RING_CELLS];
    c->op = op;
    memcpy(c->key, e->key, e->key_len);
    c->key_len = e->key_len;
    c->value_len = op == KV_CHANGE_SET ? e->value_len : 0; /* deletes of every kind: none */
    memcpy(c->value, e->value, c->value_len);
    c->unkept = 0;
    c->t_min = t0;
    c->t_max = t1;
}

/* Returns the expected rc; *rev gets the revision kv_set_if reports on success or KV_ECONFLICT. */
static int model_set(model *m, const blob *k, const blob *v, int null_value, uint64_t expected,
                     uint64_t *rev, int64_t t0, int64_t t1)
{
    int rc = model_key_rc(m, k);
    if (rc)
        return rc;
    if (v->n > m->value_max)
        return KV_EVALLEN;
    if (null_value && v->n)
        return KV_EINVAL;
    model_entry *e = model_find(m, k);
    *rev = e ? e->revision : 0;
    if (expected != KV_ANY_REVISION && *rev != expected)
        return KV_ECONFLICT;
    if (!e) {
        if (!(e = model_free_entry(m)))
            return KV_EFULL;
        memcpy(e->key, k->p, k->n);
        e->key_len = (uint32_t)k->n;
        e->expires_min = e->expires_max = 0;
        e->live = 1;
        m->count++;
    }
    memcpy(e->value, v->p, v->n);
    e->value_len = (uint32_t)v->n;
    e->revision = *rev = ++m->version;
    e->t_min = t0;
    e->t_max = t1;
    model_record(m, KV_CHANGE_SET, e, t0, t1);
    return 0;
}

/* Sets made with a ttl expire an hour on, or (opcode flag 0x80) one to three CLOCK_STEP_MS on; an
 * op moves the library's clock forward by whole steps (fz_advance_clock), so entries expire in the
 * middle of a sequence while real time, between two ops, stays far below a step. */
#define TTL_MS        3600000u
#define CLOCK_STEP_MS 10000u

static int model_delete(model *m, const blob *k, uint64_t expected, uint64_t *rev, int64_t t0,
                        int64_t t1)
{
    int rc = model_key_rc(m, k);
    if (rc)
        return rc;
    model_entry *e = model_find(m, k);
    *rev = e ? e->revision : 0;
    if (!e)
        return KV_NOTFOUND;
    if (expected != KV_ANY_REVISION && *rev != expected)
        return KV_ECONFLICT;
    e->live = 0;
    m->count--;
    m->version++;
    model_record(m, KV_CHANGE_DELETE, e, t0, t1);
    return 0;
}

/* ---- decoding ---------------------------------------------------------------------------------- */

static void pool_add(ctx *c, const blob *k)
{
    memcpy(c->pool[c->pool_next], k->p, k->n);
    c->pool_len[c->pool_next] = k->n;
    c->pool_next = (c->pool_next + 1) % POOL;
    if (c->npool < POOL)
        c->npool++;
}

static blob decode_key(ctx *c)
{
    unsigned char tmp[KEY_CAP];
    uint8_t k = fz_u8(&c->in);
    if ((k & 0x80) && c->npool) {
        unsigned i = (k & 0x7f) % c->npool;
        return (blob){fz_dup(c->pool[i], c->pool_len[i]), c->pool_len[i]};
    }
    size_t n = (k & 0x7f) % (c->m.key_max + 3);
    fz_bytes(&c->in, tmp, n);
    return (blob){fz_dup(tmp, n), n};
}

static blob decode_value(ctx *c)
{
    unsigned char tmp[VAL_CAP];
    size_t n = fz_u8(&c->in) % (c->m.value_max + 3);
    fz_bytes(&c->in, tmp, n);
    return (blob){fz_dup(tmp, n), n};
}

static uint64_t decode_expected(ctx *c, const blob *k)
{
    uint8_t x = fz_u8(&c->in);
    switch (x & 3) {
    case 0:
        return 0;
    case 1:
        return KV_ANY_REVISION;
    case 2: {
        const model_entry *e = model_key_rc(&c->m, k) ? NULL : model_find(&c->m, k);
        return e ? e->revision : 0;
    }
    default:
        return x >> 2;
    }
}

/* ---- checks ------------------------------------------------------------------------------------ */

/* After every op the store's counters must equal the model's. */
static void require_counters(ctx *c)
{
    FZ_REQUIRE(kv_version(c->s) == c->m.version, "op %u: version %llu, model %llu", c->op_no,
               (unsigned long long)kv_version(c->s), (unsigned long long)c->m.version);
    FZ_REQUIRE(kv_count(c->s) == c->m.count, "op %u: count %u, model %u", c->op_no,
               kv_count(c->s), c->m.count);
}

static void report_rc(ctx *c, const char *what, int got, int want)
{
    FZ_REQUIRE(got == want, "op %u %s: rc %d (%s), model %d (%s)", c->op_no, what, got,
               kv_strerror(got), want, kv_strerror(want));
}

/* ---- the operations ---------------------------------------------------------------------------- */

/* The deletes a write made before its own change (revisions after `version`), which the model then
 * makes too, recording the same changes; how many. Each eviction (only by a set: `key` is the key
 * set) must name a live entry other than key; each reclaim (KV_CHANGE_EXPIRED) an entry the store
 * holds that has expired, key's own included. */
static unsigned follow_reclaims(ctx *c, uint64_t version, const blob *key, int64_t t0, int64_t t1)
{
    unsigned char kbuf[KEY_CAP];
    unsigned followed = 0;
    for (uint64_t rev = version + 1; rev <= kv_version(c->s); rev++, followed++) {
        int op = 0;
        size_t klen = 0;
        int rc = kv_change(c->s, rev, &op, (char *)kbuf, sizeof kbuf, &klen, NULL, 0, NULL, NULL);
        /* The set's own change: its value needs a buffer, or (unkept) is not kept. */
        if (rc == KV_EBUFSIZE || rc == KV_EEXPIRED)
            break;
        FZ_REQUIRE(rc == 0, "op %u: change %llu unreadable: %s", c->op_no, (unsigned long long)rev,
                   kv_strerror(rc));
        blob victim = {kbuf, klen};
        model_entry *e = model_held(&c->m, &victim);
        if (op == KV_CHANGE_EXPIRED) {
            FZ_REQUIRE(e && model_expired(e), "op %u: reclaimed an entry that is not there or has not expired",
                       c->op_no);
        } else if (op == KV_CHANGE_EVICTED) {
            FZ_REQUIRE(c->m.evict && key, "op %u: an eviction by a store without the policy, or not by a set",
                       c->op_no);
            FZ_REQUIRE(e && !(klen == key->n && !memcmp(kbuf, key->p, klen)),
                       "op %u: evicted an entry that is not there, or the one being set", c->op_no);
        } else {
            break;
        }
        e->live = 0;
        c->m.count--;
        c->m.version++;
        model_record(&c->m, op, e, t0, t1);
    }
    return followed;
}

static void do_set(ctx *c, uint8_t op, int conditional)
{
    blob k = decode_key(c), v = decode_value(c);
    uint64_t expected = conditional ? decode_expected(c, &k) : KV_ANY_REVISION;
    int null_value = (op & 0x10) && (v.n == 0 || (op & 0x20));
    const char *vp = null_value ? NULL : (const char *)v.p;
    uint64_t ttl = !(op & 0x40) ? 0 : (op & 0x80) ? CLOCK_STEP_MS * (1 + v.n % 3) : TTL_MS;
    uint64_t want_rev = 0, got_rev = UINT64_MAX - 1;
    uint64_t version = c->m.version, ms0 = fz_now_ms();
    int64_t t0 = fz_now();
    int got = conditional || ttl
                  ? kv_set_if_ttl(c->s, (const char *)k.p, k.n, vp, v.n, expected, ttl,
                                  (op & 0x08) ? NULL : &got_rev)
                  : kv_set(c->s, (const char *)k.p, k.n, vp, v.n);
    uint64_t ms1 = fz_now_ms();
    follow_reclaims(c, version, &k, t0, fz_now());
    static model before; /* large: off the stack */
    if (c->m.memory_bytes)
        before = c->m;
    int want = model_set(&c->m, &k, &v, null_value, expected, &want_rev, t0, fz_now());
    if (want == 0) {
        model_entry *e = model_held(&c->m, &k);
        e->expires_min = ttl ? ms0 + ttl : 0;
        e->expires_max = ttl ? ms1 + ttl : 0;
        /* Every store here keeps key_max + value_max bytes of a change: an expiry too only when
         * the key and value leave room for it. */
        c->m.ring[(c->m.version - 1) % KV_RING_CELLS].unkept =
            ttl && k.n + v.n + 8 > c->m.key_max + c->m.value_max;
    }
    FZ_REQUIRE(!(c->m.evict && got == KV_EFULL), "op %u: an evicting store answered KV_EFULL",
               c->op_no);
    /* A full store reclaims the expired entries it holds (all of them, at this size) before it
     * refuses: the reclaims are in the ring, followed above. */
    for (uint32_t i = 0; got == KV_EFULL && i < c->m.max_entries; i++)
        FZ_REQUIRE(!c->m.e[i].live || !model_expired(&c->m.e[i]), "op %u: KV_EFULL with an expired entry held",
                   c->op_no);
    if (got == KV_EFULL && want == 0 && c->m.memory_bytes) {
        /* No room in the heap: never while most of it is free (a set needs a chunk of at most
         * 8 + 16 + 250 bytes, rounded: 288, and an update holds its old chunk meanwhile). */
        c->m = before;
        FZ_REQUIRE(2 * (kv_memory_used(c->s) + 2 * 288) >= kv_memory_bytes(c->s),
                   "op %u kv_set: KV_EFULL with %llu of %llu bytes in use", c->op_no,
                   (unsigned long long)kv_memory_used(c->s), (unsigned long long)kv_memory_bytes(c->s));
        want = KV_EFULL;
    }
    report_rc(c, conditional ? "kv_set_if" : "kv_set", got, want);
    if (conditional && !(op & 0x08) && (got == 0 || got == KV_ECONFLICT))
        FZ_REQUIRE(got_rev == want_rev, "op %u kv_set_if: current_rev %llu, model %llu", c->op_no,
                   (unsigned long long)got_rev, (unsigned long long)want_rev);
    pool_add(c, &k);
    free(k.p);
    free(v.p);
}

static void do_delete(ctx *c, uint8_t op, int conditional)
{
    blob k = decode_key(c);
    uint64_t expected = conditional ? decode_expected(c, &k) : KV_ANY_REVISION;
    uint64_t want_rev = 0, got_rev = UINT64_MAX - 1, version = c->m.version;
    int64_t t0 = fz_now();
    int got = conditional ? kv_delete_if(c->s, (const char *)k.p, k.n, expected,
                                         (op & 0x08) ? NULL : &got_rev)
                          : kv_delete(c->s, (const char *)k.p, k.n);
    follow_reclaims(c, version, NULL, t0, fz_now());
    int want = model_delete(&c->m, &k, expected, &want_rev, t0, fz_now());
    report_rc(c, conditional ? "kv_delete_if" : "kv_delete", got, want);
    if (conditional && !(op & 0x08) && got != KV_EINVAL && got != KV_EKEYLEN)
        FZ_REQUIRE(got_rev == want_rev, "op %u kv_delete_if: current_rev %llu, model %llu",
                   c->op_no, (unsigned long long)got_rev, (unsigned long long)want_rev);
    free(k.p);
}

/* The buffer a get writes into: exact size, prefilled so "nothing copied" can be checked. */
static size_t decode_buffer(ctx *c, unsigned char **buf)
{
    uint8_t y = fz_u8(&c->in);
    size_t len = (y & 3) == 0 ? c->m.value_max : (y & 3) == 1 ? (y >> 2) % (c->m.value_max + 1)
                               : (y & 3) == 2 ? 0 : 1;
    *buf = NULL;
    if ((y & 3) < 2) {
        *buf = malloc(len ? len : 1);
        FZ_REQUIRE(*buf, "out of memory");
        memset(*buf, 0xA5, len);
    }
    return len;
}

static int model_get_rc(ctx *c, const blob *k, const unsigned char *buf, size_t len,
                        const model_entry **e)
{
    int rc = model_key_rc(&c->m, k);
    *e = NULL;
    if (rc)
        return rc;
    if (!buf && len)
        return KV_EINVAL;
    if (!(*e = model_find(&c->m, k)))
        return KV_NOTFOUND;
    return (*e)->value_len > len ? KV_EBUFSIZE : 0;
}

/* rev is NULL for kv_get, which does not report it. */
static void check_get_outputs(ctx *c, int rc, const model_entry *e, const unsigned char *buf,
                              size_t buf_len, size_t got_len, int64_t ts, const uint64_t *rev)
{
    FZ_REQUIRE(got_len == e->value_len, "op %u kv_get: value_len %zu, model %u", c->op_no, got_len,
               e->value_len);
    if (rc == KV_EBUFSIZE) { /* documented: nothing copied */
        for (size_t i = 0; i < buf_len; i++)
            FZ_REQUIRE(buf[i] == 0xA5, "op %u kv_get: KV_EBUFSIZE wrote the buffer", c->op_no);
        return;
    }
    FZ_REQUIRE(!e->value_len || !memcmp(buf, e->value, e->value_len), "op %u kv_get: value differs",
               c->op_no);
    FZ_REQUIRE(!rev || *rev == e->revision, "op %u kv_get: revision %llu, model %llu", c->op_no,
               (unsigned long long)*rev, (unsigned long long)e->revision);
    FZ_REQUIRE(ts >= e->t_min && ts <= e->t_max, "op %u kv_get: timestamp %lld not in [%lld, %lld]",
               c->op_no, (long long)ts, (long long)e->t_min, (long long)e->t_max);
}

static void do_get(ctx *c, uint8_t op)
{
    blob k = decode_key(c);
    unsigned char *buf;
    size_t buf_len = decode_buffer(c, &buf), got_len = SIZE_MAX;
    int64_t ts = INT64_MIN;
    uint64_t rev = 0;
    int nulls = op & 0x08, plain = op & 0x10; /* plain: kv_get, the wrapper without a revision */
    int got = plain ? kv_get(c->s, (const char *)k.p, k.n, (char *)buf, buf_len,
                             nulls ? NULL : &got_len, nulls ? NULL : &ts)
                    : kv_get_rev(c->s, (const char *)k.p, k.n, (char *)buf, buf_len,
                                 nulls ? NULL : &got_len, nulls ? NULL : &ts, nulls ? NULL : &rev);
    const model_entry *e;
    int want = model_get_rc(c, &k, buf, buf_len, &e);
    report_rc(c, plain ? "kv_get" : "kv_get_rev", got, want);
    if (!nulls && (got == 0 || got == KV_EBUFSIZE))
        check_get_outputs(c, got, e, buf, buf_len, got_len, ts, plain ? NULL : &rev);
    else if (got == 0 && e->value_len)
        FZ_REQUIRE(!memcmp(buf, e->value, e->value_len), "op %u kv_get: value differs", c->op_no);
    free(buf);
    free(k.p);
}

/* ---- the change ring --------------------------------------------------------------------------- */

typedef struct change_bufs {
    char *key, *value; /* exact-size heap buffers, or NULL */
    size_t key_cap, value_cap;
} change_bufs;

static uint64_t decode_revision(ctx *c)
{
    uint8_t r = fz_u8(&c->in);
    uint64_t v = c->m.version;
    switch (r & 3) {
    case 0:
        return v - (r >> 2); /* below 1 it wraps to a huge revision: not found */
    case 1:
        return v + 1 + (r >> 2);
    case 2:
        return 0;
    default:
        return v - 250 - (r >> 2) % 12;
    }
}

static change_bufs alloc_bufs(size_t key_cap, size_t value_cap)
{
    change_bufs b = {malloc(key_cap ? key_cap : 1), malloc(value_cap ? value_cap : 1), key_cap,
                     value_cap};
    FZ_REQUIRE(b.key && b.value, "out of memory");
    return b;
}

static change_bufs decode_change_bufs(ctx *c)
{
    uint8_t z = fz_u8(&c->in);
    switch (z & 3) {
    case 0:
        return alloc_bufs(c->m.key_max, c->m.value_max);
    case 1:
        return alloc_bufs((z >> 2) % (c->m.key_max + 1), (z >> 2) % (c->m.value_max + 1));
    case 2:
        return (change_bufs){NULL, NULL, 0, 0};
    default:
        return (change_bufs){NULL, NULL, 1, 0};
    }
}

static int model_change_rc(const model *m, uint64_t rev, const change_bufs *b,
                           const model_change **mc)
{
    *mc = NULL;
    if ((!b->key && b->key_cap) || (!b->value && b->value_cap))
        return KV_EINVAL;
    if (rev == 0 || rev > m->version)
        return KV_NOTFOUND;
    if (m->version - rev >= KV_RING_CELLS)
        return KV_EEXPIRED;
    *mc = &m->ring[(rev - 1) % KV_RING_CELLS];
    if ((*mc)->unkept)
        return KV_EEXPIRED; /* documented: not kept, the store holds its outcome */
    return (*mc)->key_len > b->key_cap || (*mc)->value_len > b->value_cap ? KV_EBUFSIZE : 0;
}

static void check_change_outputs(ctx *c, uint64_t rev, int rc, const model_change *mc,
                                 const change_bufs *b, int op, size_t klen, size_t vlen,
                                 int64_t ts)
{
    FZ_REQUIRE(op == mc->op && klen == mc->key_len && vlen == mc->value_len,
               "op %u kv_change(%llu): op %d key_len %zu value_len %zu, model %d %u %u", c->op_no,
               (unsigned long long)rev, op, klen, vlen, mc->op, mc->key_len, mc->value_len);
    FZ_REQUIRE(ts >= mc->t_min && ts <= mc->t_max, "op %u kv_change(%llu): timestamp %lld",
               c->op_no, (unsigned long long)rev, (long long)ts);
    if (rc == 0)
        FZ_REQUIRE(!memcmp(b->key, mc->key, klen) && (!vlen || !memcmp(b->value, mc->value, vlen)),
                   "op %u kv_change(%llu): key or value differs", c->op_no,
                   (unsigned long long)rev);
}

static void check_change(ctx *c, uint64_t rev, const change_bufs *b, int nulls)
{
    int op = -1;
    size_t klen = SIZE_MAX, vlen = SIZE_MAX;
    int64_t ts = INT64_MIN;
    int got = kv_change(c->s, rev, nulls ? NULL : &op, b->key, b->key_cap, nulls ? NULL : &klen,
                        b->value, b->value_cap, nulls ? NULL : &vlen, nulls ? NULL : &ts);
    const model_change *mc;
    int want = model_change_rc(&c->m, rev, b, &mc);
    FZ_REQUIRE(got == want, "op %u kv_change(%llu) at version %llu: rc %d (%s), model %d (%s)",
               c->op_no, (unsigned long long)rev, (unsigned long long)c->m.version, got,
               kv_strerror(got), want, kv_strerror(want));
    if (!nulls && (got == 0 || got == KV_EBUFSIZE))
        check_change_outputs(c, rev, got, mc, b, op, klen, vlen, ts);
}

static void do_change(ctx *c, uint8_t op)
{
    uint64_t rev = decode_revision(c);
    change_bufs b = decode_change_bufs(c);
    check_change(c, rev, &b, op & 0x08);
    free(b.key);
    free(b.value);
}

/* Every change the ring still holds, and the first one it no longer does. */
static void require_ring(ctx *c)
{
    change_bufs b = alloc_bufs(c->m.key_max, c->m.value_max);
    uint64_t v = c->m.version, first = v > KV_RING_CELLS ? v - KV_RING_CELLS : 0;
    for (uint64_t rev = first; rev <= v; rev++)
        check_change(c, rev, &b, 0);
    free(b.key);
    free(b.value);
}

static void require_sound(ctx *c)
{
    int rc = kv_check(c->s);
    FZ_REQUIRE(rc == 0, "op %u kv_check: %s (%s)", c->op_no, kv_strerror(rc),
               kv_check_detail(c->s));
}

/* kv_expire: every entry it reclaims must have expired, and it must say how many it did. */
static void do_expire(ctx *c, uint32_t max)
{
    uint64_t version = c->m.version;
    int64_t t0 = fz_now();
    int got = kv_expire(c->s, max);
    unsigned followed = follow_reclaims(c, version, NULL, t0, fz_now());
    FZ_REQUIRE(got >= 0 && (unsigned)got == followed, "op %u kv_expire(%u): %d (%s), %u reclaims in the ring",
               c->op_no, max, got, kv_strerror(got), followed);
}

static void run_op(ctx *c)
{
    uint8_t op = fz_u8(&c->in);
    switch (op & 7) {
    case 0: case 1: do_set(c, op, 0); break;
    case 2: do_get(c, op); break;
    case 6: do_change(c, op); break;
    case 3: do_delete(c, op, 0); break;
    case 4: do_set(c, op, 1); break;
    case 5: do_delete(c, op, 1); break;
    default:
        if (!(op & 0x08))
            require_sound(c);
        else if (!(op & 0x10))
            fz_advance_clock(CLOCK_STEP_MS * (1u + (op >> 5)));
        else
            do_expire(c, 1u + (op >> 5) * 9u);
        break;
    }
    require_counters(c);
}

/* Every live model entry reads back exactly; with the counts equal, nothing else is in the store. */
static void require_final_state(ctx *c)
{
    FZ_REQUIRE(kv_max_entries(c->s) == c->m.max_entries && kv_key_max(c->s) == c->m.key_max &&
                   kv_value_max(c->s) == c->m.value_max,
               "geometry accessors differ from the options");
    unsigned char buf[VAL_CAP];
    for (uint32_t i = 0; i < c->m.max_entries; i++) {
        const model_entry *e = &c->m.e[i];
        if (!e->live)
            continue;
        kv_meta meta = {0, 0, 0, 0};
        if (model_expired(e)) { /* held until a writer reclaims it, absent to every read */
            int rc = kv_get_meta(c->s, (const char *)e->key, e->key_len, (char *)buf, sizeof buf, &meta);
            FZ_REQUIRE(rc == KV_NOTFOUND, "final: expired entry %u reads rc %d", i, rc);
            continue;
        }
        int rc = kv_get_meta(c->s, (const char *)e->key, e->key_len, (char *)buf, sizeof buf,
                             &meta);
        FZ_REQUIRE(rc == 0 && meta.value_len == e->value_len && meta.revision == e->revision &&
                       !memcmp(buf, e->value, e->value_len),
                   "final: entry %u reads rc %d len %llu rev %llu", i, rc,
                   (unsigned long long)meta.value_len, (unsigned long long)meta.revision);
        FZ_REQUIRE(meta.expires_at_ms >= e->expires_min && meta.expires_at_ms <= e->expires_max,
                   "final: entry %u expires at %llu, model %llu..%llu", i,
                   (unsigned long long)meta.expires_at_ms, (unsigned long long)e->expires_min,
                   (unsigned long long)e->expires_max);
    }
    require_ring(c);
    require_sound(c);
}

/* ---- the target -------------------------------------------------------------------------------- */

/* A fresh store per input. Unlinked as soon as it is open: only our mapping keeps it alive, so
 * nothing is left in /dev/shm whatever happens next. */
static kv_store *open_fresh(const model *m)
{
    char name[64];
    fz_shm_name(name, sizeof name, "ops");
    kv_options o = {m->max_entries, m->key_max, m->value_max, 0600, m->memory_bytes, m->evict, 0};
    kv_store *s = NULL;
    int rc = kv_open(name, KV_CREATE | KV_EXCL, &o, &s);
    if (rc == -EEXIST) { /* left by an earlier process with our pid */
        kv_unlink(name);
        rc = kv_open(name, KV_CREATE | KV_EXCL, &o, &s);
    }
    kv_unlink(name);
    FZ_REQUIRE(rc == 0, "kv_open %s: %s", name, kv_strerror(rc));
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ctx c; /* large; static keeps it off the stack. Reset below. */
    memset(&c, 0, sizeof c);
    fz_reset_clock();
    c.in = (fz_in){data, size};
    c.m.max_entries = 1 + fz_u8(&c.in) % 64;
    uint8_t key_byte = fz_u8(&c.in);
    c.m.key_max = 1 + key_byte % 16;
    c.m.evict = key_byte & 0x80 ? KV_EVICT_LRU : 0;
    uint8_t value_byte = fz_u8(&c.in), memory = fz_u8(&c.in);
    c.m.memory_bytes = memory & 1 ? 4096u + 16u * (memory >> 1) : 0;
    c.m.value_max = 1 + value_byte % (c.m.memory_bytes ? 250 : 64);
    c.s = open_fresh(&c.m);
    for (c.op_no = 0; c.in.n && c.op_no < MAX_OPS; c.op_no++)
        run_op(&c);
    require_final_state(&c);
    kv_close(c.s);
    return 0;
}
