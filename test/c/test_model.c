/* test_model: the store against a trivially correct model. A seeded PRNG drives random sets, gets
 * and deletes through the library and through an array of (key, value, revision, live); every answer
 * must agree, the change ring's newest record included, and kv_check must hold every 500 operations.
 * Three geometries: a roomy table that still fills up, a single-entry table, and 4-byte keys over a
 * 3-letter alphabet (a pool far larger than the table, so it is full most of the time and churns
 * through deletes; 5-byte keys are refused). */
#include "check.h"

#include <stdint.h>

#define OPS        50000
#define CHECK_EVERY 500
#define MAX_POOL   400
#define MAX_VALUE  64

typedef struct model_entry {
    char key[24];
    size_t key_len;
    unsigned char value[MAX_VALUE + 4];
    size_t value_len;
    uint64_t revision;
    int live;
} model_entry;

typedef struct model {
    kv_store *s;
    kv_options opts;
    model_entry pool[MAX_POOL];
    size_t npool;
    uint32_t count;
    uint64_t version;
    int set_pct, get_pct; /* the rest are deletes */
    uint64_t rng;
} model;

static uint64_t next_random(model *m)
{
    uint64_t z = (m->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t below(model *m, size_t n) { return (size_t)(next_random(m) % n); }

static void add_key(model *m, const char *key)
{
    model_entry *e = &m->pool[m->npool++];
    e->key_len = strlen(key);
    memcpy(e->key, key, e->key_len);
}

/* What kv_set must answer, given the model; applies it to the model when it succeeds. */
static int model_set(model *m, model_entry *e, const unsigned char *value, size_t len)
{
    if (e->key_len > m->opts.key_max)
        return KV_EKEYLEN;
    if (len > m->opts.value_max)
        return KV_EVALLEN;
    if (!e->live && m->count == m->opts.max_entries)
        return KV_EFULL;
    if (!e->live)
        m->count++;
    e->live = 1;
    memcpy(e->value, value, len);
    e->value_len = len;
    e->revision = ++m->version;
    return 0;
}

static int model_delete(model *m, model_entry *e)
{
    if (e->key_len > m->opts.key_max)
        return KV_EKEYLEN;
    if (!e->live)
        return KV_NOTFOUND;
    e->live = 0;
    m->count--;
    m->version++;
    return 0;
}

/* The ring's newest change is the write just made to e. */
static int last_change_is(model *m, const model_entry *e, int op)
{
    change c = read_change(m->s, m->version);
    return CHECK_RC(c.rc, 0) && CHECK_EQ(c.op, op) &&
           CHECK_MEM(c.key, c.key_len, e->key, e->key_len) &&
           CHECK_MEM(c.value, c.value_len, e->value, op == KV_CHANGE_SET ? e->value_len : 0);
}

/* One random operation, checked. 0 when the store agreed with the model. */
static int step(model *m, long op)
{
    model_entry *e = &m->pool[below(m, m->npool)];
    int kind = (int)below(m, 100);
    if (kind < m->set_pct) {
        /* Mostly legal lengths; now and then one over value_max (with a legal key, so the answer
         * does not hang on which check the library makes first). */
        size_t len = below(m, m->opts.value_max + 1);
        if (below(m, 50) == 0 && e->key_len <= m->opts.key_max)
            len = m->opts.value_max + 1 + below(m, 3);
        unsigned char value[MAX_VALUE + 4];
        for (size_t i = 0; i < len; i++)
            value[i] = (unsigned char)next_random(m); /* NUL bytes included */
        int got = kv_set(m->s, e->key, e->key_len, (const char *)value, len);
        int want = model_set(m, e, value, len);
        if (!CHECK_RC(got, want) || (got == 0 && !last_change_is(m, e, KV_CHANGE_SET)))
            return printf("  (op %ld: set \"%.*s\", %zu bytes)\n", op, (int)e->key_len, e->key, len), -1;
    } else if (kind < m->set_pct + m->get_pct) {
        /* A buffer sometimes too small, sometimes NULL with length 0. */
        unsigned char buf[MAX_VALUE + 4];
        size_t cap = below(m, 2) ? sizeof buf : below(m, m->opts.value_max + 1);
        size_t len = 12345;
        uint64_t rev = 0;
        int got = kv_get_rev(m->s, e->key, e->key_len, cap ? (char *)buf : NULL, cap, &len, NULL, &rev);
        int want = e->key_len > m->opts.key_max ? KV_EKEYLEN
                   : !e->live                   ? KV_NOTFOUND
                   : e->value_len > cap         ? KV_EBUFSIZE
                                                : 0;
        int ok = CHECK_RC(got, want);
        if (ok && (want == 0 || want == KV_EBUFSIZE))
            ok = CHECK_EQ(len, e->value_len);
        if (ok && want == 0)
            ok = CHECK_MEM(buf, len, e->value, e->value_len) && CHECK_EQ(rev, e->revision);
        if (!ok)
            return printf("  (op %ld: get \"%.*s\", buffer %zu)\n", op, (int)e->key_len, e->key, cap), -1;
    } else {
        int got = kv_delete(m->s, e->key, e->key_len);
        if (!CHECK_RC(got, model_delete(m, e)) || (got == 0 && !last_change_is(m, e, KV_CHANGE_DELETE)))
            return printf("  (op %ld: delete \"%.*s\")\n", op, (int)e->key_len, e->key), -1;
    }
    return 0;
}

/* The store as a whole agrees with the model. */
static int sweep(model *m, long op)
{
    int ok = CHECK_RC(kv_check(m->s), 0);
    if (!ok)
        printf("  (kv_check: %s)\n", kv_check_detail(m->s));
    ok = ok && CHECK_EQ(kv_count(m->s), m->count) && CHECK_EQ(kv_version(m->s), m->version);
    for (size_t i = 0; ok && i < m->npool; i++) {
        model_entry *e = &m->pool[i];
        if (e->key_len > m->opts.key_max)
            continue;
        unsigned char buf[MAX_VALUE];
        size_t len = 0;
        int got = kv_get(m->s, e->key, e->key_len, (char *)buf, sizeof buf, &len, NULL);
        ok = CHECK_RC(got, e->live ? 0 : KV_NOTFOUND) &&
             (!e->live || CHECK_MEM(buf, len, e->value, e->value_len));
    }
    if (!ok)
        printf("  (after op %ld)\n", op);
    return ok ? 0 : -1;
}

static void run_model(model *m, uint64_t seed)
{
    m->rng = seed;
    m->s = check_new_store(&m->opts, NULL);
    REQUIRE(m->s);
    long fills = 0; /* operations that found the table full: the model must have been exercised */
    for (long op = 1; op <= OPS; op++) {
        fills += m->count == m->opts.max_entries;
        if (step(m, op) || (op % CHECK_EVERY == 0 && sweep(m, op))) {
            printf("  (seed %llu)\n", (unsigned long long)seed);
            return;
        }
    }
    CHECK(fills > 0);
    CHECK(m->version > OPS / 10);
}

static model the_model; /* large: static, reset per test */

static void model_64_entries(void)
{
    model *m = &the_model;
    *m = (model){.opts = {64, 16, MAX_VALUE, 0}, .set_pct = 45, .get_pct = 35};
    char key[16];
    for (int i = 0; i < 96; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        add_key(m, key);
    }
    add_key(m, "a-key-of-17-bytes"); /* over key_max */
    run_model(m, 1);
}

static void model_single_entry(void)
{
    model *m = &the_model;
    *m = (model){.opts = {1, 4, 8, 0}, .set_pct = 45, .get_pct = 30};
    add_key(m, "x");
    add_key(m, "y");
    add_key(m, "zz");
    run_model(m, 2);
}

static void model_short_keys_heavy_churn(void)
{
    model *m = &the_model;
    *m = (model){.opts = {32, 4, 16, 0}, .set_pct = 40, .get_pct = 25};
    /* Every string of 1..4 letters over "abc" (120 keys) and 20 of 5 letters (too long). */
    char key[8];
    for (size_t len = 1; len <= 5; len++) {
        size_t n = 1;
        for (size_t i = 0; i < len; i++)
            n *= 3;
        for (size_t k = 0; k < (len == 5 ? 20 : n); k++) {
            size_t v = k;
            for (size_t i = 0; i < len; i++, v /= 3)
                key[i] = (char)('a' + v % 3);
            key[len] = 0;
            add_key(m, key);
        }
    }
    run_model(m, 3);
}

int main(void)
{
    RUN(model_64_entries);
    RUN(model_single_entry);
    RUN(model_short_keys_heavy_churn);
    return CHECK_FINISH();
}
