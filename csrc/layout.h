/* Private: the segment's in-memory structures. The public header documents the same layout in
 * prose for other languages; the static asserts below keep the two in step. */
#ifndef KV_LAYOUT_H
#define KV_LAYOUT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define KV_MAGIC          0x564B4D53u /* "SMKV" */
#define KV_LAYOUT_VERSION 2u
#define KV_READY          0x52454459u
#define KV_UNDO_ARMED     1u
#define KV_FLAG_READONLY  1u
#define KV_FLAG_SUPERSEDED 2u /* a resize replaced this segment: open the name again */
#define KV_FLAG_RESIZING  4u  /* a resize is copying this segment (or died doing so) */
#define KV_FLAG_BUILDING  8u  /* a resize's copy, not in place under the name yet */

#define KV_ENTRY_SIZE     64u /* bytes of one slot: every entry head, whatever the geometry */
#define KV_CHANGE_HEAD    32u /* bytes of a change record before its key */
#define KV_CHANGE_UNKEPT  1u  /* change flags: the key and value did not fit the ring cell */
#define KV_CHANGE_EXPIRES 2u  /* change flags: a set with an expiry, 8 bytes after the value */
#define KV_RING_DATA_MAX  3040u /* key + value bytes a ring cell holds when memory_bytes is set */

/* The heap: chunks of KV_CHUNK_ALIGN-multiple sizes, each with an 8-byte head. */
#define KV_CHUNK_HEAD      8u
#define KV_CHUNK_ALIGN     16u
#define KV_CHUNK_MIN       32u /* a free chunk holds its head, two links and a footer */
#define KV_CHUNK_USED      (1u << 31) /* tag: the chunk belongs to a live entry */
#define KV_CHUNK_PREV_FREE (1u << 30) /* tag: the chunk before this one is free */
#define KV_CHUNK_OWNER     ((1u << 30) - 1) /* tag: slot + 1 of a used chunk's entry */
#define KV_HEAP_CLASSES    32u /* free lists: class k holds free chunks of 2^(k+5) .. 2^(k+6)-1 bytes */

typedef struct kv_entry {
    uint32_t key_len;   /* 0 = free */
    uint32_t value_len;
    uint32_t hash;
    union {
        uint32_t next_free; /* free slots: slot + 1 of the next free slot, 0 = end */
        uint32_t seq;       /* live slots: the entry's seqlock, odd while it is rewritten */
    };
    int64_t  timestamp;
    uint64_t revision;
    uint64_t chunk;         /* offset of its chunk from the heap's start */
    uint32_t chunk_size;    /* bytes of that chunk, its head included */
    uint32_t last_access;   /* CLOCK_REALTIME ms >> 4 of its last write or (lru) read, mod 2^32 */
    uint64_t expires_at_ms; /* CLOCK_REALTIME ms at which it expires; 0 = never */
    uint64_t reserved;
} kv_entry;

/* A heap chunk's head. A used chunk's key and value bytes follow it; a free chunk's links do, and
 * its last 8 bytes repeat its size (a footer, so the chunk after it can find its start). */
typedef struct kv_chunk {
    uint32_t units; /* size / KV_CHUNK_ALIGN */
    uint32_t tag;   /* KV_CHUNK_USED | KV_CHUNK_PREV_FREE | owner */
    uint64_t next;       /* free: offset + 1 of the next chunk of its free list, 0 = end */
    uint64_t prev;       /* free: offset + 1 of the previous one, 0 = it is the list's head */
} kv_chunk;

/* One record of the change ring. The revision doubles as the record's own seqlock: a writer sets it
 * to 0, fills the record, then stores the revision; a reader copies and checks it is unchanged. */
typedef struct kv_change_rec {
    uint64_t revision;
    int64_t  timestamp;
    uint32_t op; /* KV_CHANGE_SET, KV_CHANGE_DELETE, KV_CHANGE_EXPIRED or KV_CHANGE_EVICTED */
    uint32_t key_len;
    uint32_t value_len;
    uint32_t flags; /* KV_CHANGE_UNKEPT */
    unsigned char data[]; /* key bytes, then value bytes */
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
    /* The heap (layout 2). */
    uint64_t heap_off;
    uint64_t heap_size;     /* memory_bytes */
    uint64_t memory_used;   /* bytes of the chunks live entries hold */
    uint64_t heap_free;     /* bytes of the free chunks */
    uint32_t fixed_chunk;   /* 0, or the size of every chunk (a store made without memory_bytes) */
    uint32_t ring_cell_size;
    uint32_t ring_data;     /* key + value bytes a ring cell holds */
    uint32_t heap_classes;  /* KV_HEAP_CLASSES */
    uint64_t compactions;
    uint64_t free_heads[KV_HEAP_CLASSES]; /* offset + 1 of each class's first free chunk, 0 = none */
    /* Expiry and eviction. Stores made before them hold zeros here: no policy, nothing counted. */
    uint32_t evict_policy;  /* KV_EVICT_LRU, or anything else: none */
    uint32_t expire_hand;   /* the slot the next expiry sweep starts at */
    uint64_t expired_total; /* entries reclaimed because they expired */
    uint64_t evicted_total; /* entries evicted to make room */
    uint32_t evict_hand;    /* the slot the next eviction samples from */
    unsigned char pad2[12];
    /* the undo entry copy follows at offset 576 */
} kv_header;

#define KV_UNDO_ENTRY_OFF 576u
#define KV_HEADER_SIZE    640u

_Static_assert(sizeof(kv_entry) == KV_ENTRY_SIZE, "entry size");
_Static_assert(offsetof(kv_entry, seq) == 12, "entry seq offset");
_Static_assert(offsetof(kv_entry, chunk) == 32, "entry chunk offset");
_Static_assert(offsetof(kv_entry, chunk_size) == 40, "entry chunk size offset");
_Static_assert(offsetof(kv_entry, last_access) == 44, "entry last access offset");
_Static_assert(offsetof(kv_entry, expires_at_ms) == 48, "entry expiry offset");
_Static_assert(sizeof(kv_chunk) == 24 && sizeof(kv_chunk) + 8 <= KV_CHUNK_MIN, "free chunk fits");
_Static_assert(sizeof(kv_change_rec) == KV_CHANGE_HEAD, "change head");
_Static_assert(offsetof(kv_header, ring_off) == 96, "ring offset");
_Static_assert(offsetof(kv_header, index_seq) == 108, "index seq offset");
_Static_assert(offsetof(kv_header, seq) == 56, "seq offset");
_Static_assert(offsetof(kv_header, version) == 64, "version offset");
_Static_assert(offsetof(kv_header, created) == 88, "created offset");
_Static_assert(offsetof(kv_header, lock_since_ms) == 112, "lock since offset");
_Static_assert(offsetof(kv_header, flags) == 120, "flags offset");
_Static_assert(offsetof(kv_header, lock) == 128, "mutex offset");
_Static_assert(sizeof(pthread_mutex_t) <= 64, "mutex fits its room");
_Static_assert(offsetof(kv_header, undo) == 192, "undo offset");
_Static_assert(offsetof(kv_header, heap_off) == 224, "heap offset");
_Static_assert(offsetof(kv_header, memory_used) == 240, "memory used offset");
_Static_assert(offsetof(kv_header, fixed_chunk) == 256, "fixed chunk offset");
_Static_assert(offsetof(kv_header, compactions) == 272, "compactions offset");
_Static_assert(offsetof(kv_header, free_heads) == 280, "free heads offset");
_Static_assert(offsetof(kv_header, evict_policy) == 536, "evict policy offset");
_Static_assert(offsetof(kv_header, expired_total) == 544, "expired total offset");
_Static_assert(offsetof(kv_header, evicted_total) == 552, "evicted total offset");
_Static_assert(offsetof(kv_header, evict_hand) == 560, "evict hand offset");
_Static_assert(sizeof(kv_header) == KV_UNDO_ENTRY_OFF, "undo entry offset");
_Static_assert(KV_UNDO_ENTRY_OFF + KV_ENTRY_SIZE <= KV_HEADER_SIZE, "undo entry fits the header");

#endif
