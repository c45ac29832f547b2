/* Private: the segment's in-memory structures. The public header documents the same layout in
 * prose for other languages; the static asserts below keep the two in step. */
#ifndef KV_LAYOUT_H
#define KV_LAYOUT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define KV_MAGIC          0x564B4D53u /* "SMKV" */
#define KV_LAYOUT_VERSION 1u
#define KV_READY          0x52454459u
#define KV_UNDO_ARMED     1u
#define KV_FLAG_READONLY  1u
#define KV_FLAG_SUPERSEDED 2u /* a resize replaced this segment: open the name again */
#define KV_FLAG_RESIZING  4u  /* a resize is copying this segment (or died doing so) */
#define KV_FLAG_BUILDING  8u  /* a resize's copy, not in place under the name yet */

#define KV_ENTRY_HEAD 32u /* bytes of kv_entry before the key */

typedef struct kv_entry {
    uint32_t key_len;   /* 0 = free */
    uint32_t value_len;
    uint32_t hash;
    union {
        uint32_t next_free; /* free slots: slot + 1 of the next free slot, 0 = end */
        uint32_t seq;       /* live slots: the entry's seqlock, odd while its value is rewritten */
    };
    int64_t  timestamp;
    uint64_t revision;
    unsigned char data[]; /* key_max bytes of key, then value_max bytes of value */
} kv_entry;

/* One record of the change ring. The revision doubles as the record's own seqlock: a writer sets it
 * to 0, fills the record, then stores the revision; a reader copies and checks it is unchanged. */
typedef struct kv_change_rec {
    uint64_t revision;
    int64_t  timestamp;
    uint32_t op; /* KV_CHANGE_SET or KV_CHANGE_DELETE */
    uint32_t key_len;
    uint32_t value_len;
    uint32_t reserved;
    unsigned char data[]; /* key_max bytes of key, then value_max bytes of value */
} kv_change_rec;

/* What a write changes besides one entry and the index: saved in the undo record. */
typedef struct kv_undo {
    uint32_t state;
    uint32_t slot;
    uint32_t entry_count;
    uint32_t free_head;
    uint32_t high_water;
    uint32_t reserved;
    uint64_t version;
    /* entry copy follows at offset 32 of the record (224 in the header) */
} kv_undo;

typedef struct kv_header {
    uint32_t magic;
    uint32_t layout_version;
    uint32_t ready;
    uint32_t header_size;
    uint32_t mutex_size;
    uint32_t max_entries;
    uint32_t key_max;
    uint32_t value_max;
    uint32_t entry_size;
    uint32_t index_cells;
    uint64_t entries_off;
    uint64_t total_size;
    uint32_t seq;
    uint32_t entry_count;
    uint64_t version;
    uint32_t free_head;
    uint32_t high_water;
    uint64_t lock_recoveries;
    int64_t  created;
    uint64_t ring_off;
    uint32_t ring_cells;
    uint32_t index_seq; /* seqlock of the index and the slots' keys: odd while an insert, a delete
                         * or a repair moves them */
    uint64_t lock_since_ms; /* CLOCK_MONOTONIC ms (| 1) when the lock holder took it; 0 when free */
    uint32_t flags; /* KV_FLAG_READONLY: only kv_apply may write (a replica's segment) */
    uint32_t pad1;
    union {
        pthread_mutex_t mutex;
        unsigned char   space[64];
    } lock;
    kv_undo undo;
    /* the undo entry copy follows at offset 224 */
} kv_header;

#define KV_UNDO_ENTRY_OFF 224u

_Static_assert(sizeof(kv_entry) == KV_ENTRY_HEAD, "entry head");
_Static_assert(sizeof(kv_change_rec) == KV_ENTRY_HEAD, "change head");
_Static_assert(offsetof(kv_header, ring_off) == 96, "ring offset");
_Static_assert(offsetof(kv_header, index_seq) == 108, "index seq offset");
_Static_assert(offsetof(kv_entry, seq) == 12, "entry seq offset");
_Static_assert(offsetof(kv_header, seq) == 56, "seq offset");
_Static_assert(offsetof(kv_header, version) == 64, "version offset");
_Static_assert(offsetof(kv_header, created) == 88, "created offset");
_Static_assert(offsetof(kv_header, lock_since_ms) == 112, "lock since offset");
_Static_assert(offsetof(kv_header, flags) == 120, "flags offset");
_Static_assert(offsetof(kv_header, lock) == 128, "mutex offset");
_Static_assert(sizeof(pthread_mutex_t) <= 64, "mutex fits its room");
_Static_assert(offsetof(kv_header, undo) == 192, "undo offset");
_Static_assert(sizeof(kv_header) == KV_UNDO_ENTRY_OFF, "undo entry offset");

#endif
