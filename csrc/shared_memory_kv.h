/**
 * @file shared_memory_kv.h
 * @brief shmkv: a key-value table in POSIX shared memory, shared by every process on a host.
 *
 * A store is one POSIX shared-memory segment ("/name", seen as /dev/shm/name on Linux). Any number of
 * processes map it at once. Writers serialise on one process-shared, robust pthread mutex inside the
 * segment; readers never take it: they copy what they need and validate the copy against a sequence
 * counter (a seqlock), retrying when a write overlapped.
 *
 * Keys and values are byte strings with explicit lengths. A key is 1..key_max bytes and holds no NUL
 * byte; a value is 0..value_max bytes and may hold anything. The geometry (max_entries, key_max,
 * value_max, memory_bytes) is chosen when the segment is created and kept in its header; every
 * later opener adopts it. The defaults are 10 entries, 63-byte keys and 255-byte values. Keys and
 * values live in a heap of memory_bytes inside the segment; by default it has room for every
 * entry at its largest (see kv_options).
 *
 * Return codes: 0 on success; a negative number on failure. The library's own codes live in the
 * reserved range KV_ERR_FIRST..KV_ERR_LAST (-31000..-30901); any other negative number is a negated
 * errno from a system call (for example -EACCES, -ENOSPC). kv_strerror() names every one.
 *
 * @section caveats Caveats
 * - fork(): a kv_store handle may be used by a child after fork() (the mapping is inherited and the
 *   mutex lives in the segment), but the parent and child must not use the same handle concurrently
 *   from threads that were running at fork time. Simplest: open a fresh handle in the child.
 * - Threads: a handle may be shared by threads; every call is safe to make concurrently.
 * - A process that dies holding the write lock (SIGKILL, crash) blocks no one. The next writer gets
 *   EOWNERDEAD from the robust mutex, rolls the interrupted write back from the undo record in the
 *   segment, rebuilds the index, marks the mutex consistent and goes on; the store then holds the old
 *   entry, never a torn one. A process that is stopped (SIGSTOP) or hung while holding the lock does
 *   block writers: robustness covers death, not stalls. kv_set_lock_timeout() bounds how long a
 *   handle waits (KV_EBUSY after), and kv_lock_held_ms() tells how long the lock has been held.
 *   Readers of other entries go on. kv_get() of the entry being written (or of any key while an
 *   insert or delete is in progress) retries, then after KV_READ_SPINS attempts falls back to the
 *   lock: it waits like a writer, within the handle's lock timeout. A reader that must never wait
 *   can read the state before the write instead (see "Reading without the lock"), as the Bun
 *   binding does.
 * - Robust mutexes are tied to the kernel's view of thread ids: processes sharing a store must share
 *   a PID namespace (no sharing across containers with separate PID namespaces).
 * - kv_unlink() removes the name only. Processes that have the segment mapped keep using it (and each
 *   other's writes) until they close; a later kv_open() of the same name with KV_CREATE makes a new,
 *   empty segment that they do not see. Nothing in the library unlinks on its own: the segment lives
 *   until kv_unlink() or a reboot (or kv_resize(), which puts a copy in its place, and removes the
 *   copy a resizer that died left under NAME.resize).
 * - Anyone who can write the segment can corrupt it (it is plain shared memory). Opening validates
 *   the header, and readers bounds-check everything they follow, so a corrupt segment yields errors or
 *   wrong data, not crashes; kv_check() reports the damage. Protect the segment with its file mode.
 * - Names are predictable and /dev/shm is writable by every user: another user can create a store's
 *   segment before its owner does, then read and change everything written to it. Open with
 *   KV_CHECK_OWNER to refuse a segment the effective user does not own or that others may write
 *   (KV_EUNTRUSTED); leave it out only for a segment deliberately shared with another user (the
 *   server's --trust-segment-owner). The check covers the owner and the mode, not the group: a
 *   group-writable segment of the caller's own is trusted.
 * - Timestamps come from the writer's CLOCK_REALTIME, in seconds.
 * - Expiry (kv_set_ttl) uses CLOCK_REALTIME in milliseconds, the clock every process on the host
 *   shares: a writer stores the absolute time (now + ttl), and every reader compares it with its own
 *   clock, lock-free, so an entry vanishes for all readers at the same moment. A step of the clock
 *   moves every expiry with it: set forward, entries expire early; set back, they live longer. The
 *   bytes of an expired entry stay until a writer reclaims them: a write of its key, a store that
 *   needs room, or kv_expire(), which a long-running process (shmkv's server) calls often. Until
 *   then kv_count() and kv_memory_used() still count it.
 * - Eviction (kv_options.evict = KV_EVICT_LRU) is approximate, as Redis's is: a set that needs room
 *   removes, of KV_EVICT_SAMPLES entries sampled in slot order from a moving hand, an expired one,
 *   else the one read or written least recently (times kept to 16 ms). Reads record their time
 *   with a plain atomic store, without the lock, and only when it changed: C, Bun and Python
 *   readers all do.
 * - Following a resize: kv_resize marks the old segment superseded (header flags bit 1) under its
 *   lock once the copy is in place under the name. Every call on a handle first checks the mark
 *   (one atomic load) and, when it is set, opens the name again and goes on there, transparently;
 *   writers also check it under the lock, so no write lands in the old segment after the copy. A
 *   lock-free read that began before the mark reads the old segment, whose state is the copy's,
 *   and is validated as usual. While a resize runs (flags bit 2, "resizing"), each call also
 *   compares the name's inode with its mapping's (one stat), because the rename, not the mark, is
 *   the moment the new segment takes over. A handle that followed keeps its old mapping until
 *   kv_close, since another thread may still be reading it: close and reopen a long-lived handle
 *   after a resize to give that memory back (and to see the new geometry). kv_base, kv_map_size,
 *   kv_max_entries, kv_key_max, kv_value_max, kv_snapshot, kv_copy_cell and kv_read_cell stay on the
 *   mapping the handle was opened on (so buffers sized from them stay right): a binding that reads
 *   the mapping itself watches the flags and opens the name again. If
 *   the name can no longer be opened (unlinked after the resize), calls fail with that -errno; a
 *   mark on a segment the name still leads to is damage (KV_ECORRUPT, named by kv_check_detail);
 *   a name that leads to superseded segments 64 times over gives -ESTALE.
 */
#ifndef SHARED_MEMORY_KV_H
#define SHARED_MEMORY_KV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Marks the library's exported symbols (it is built with -fvisibility=hidden). */
#if defined(__GNUC__)
#define KV_API __attribute__((visibility("default")))
#else
#define KV_API
#endif

/** @defgroup errors Return codes (the library's own, reserved range -31000..-30901) */
/** @{ */
#define KV_ERR_FIRST    (-31000)
#define KV_NOTFOUND     (-31000) /**< no entry with that key */
#define KV_EKEYLEN      (-30999) /**< key longer than the segment's key_max */
#define KV_EVALLEN      (-30998) /**< value longer than the segment's value_max */
#define KV_EFULL        (-30997) /**< every slot is in use, or no room in the heap for the entry */
#define KV_EINVAL       (-30996) /**< invalid argument: bad name, empty key, NUL in key, bad geometry */
#define KV_EINCOMPAT    (-30995) /**< the segment is not a shmkv store of this layout, or is damaged */
#define KV_EBUFSIZE     (-30994) /**< the caller's buffer is too small; the needed size was reported */
#define KV_ENOTREADY    (-30993) /**< the segment's creator did not finish initialising it in time */
#define KV_ECORRUPT     (-30992) /**< kv_check() found a broken invariant */
#define KV_ECONFLICT    (-30991) /**< a conditional write found another revision */
#define KV_EEXPIRED     (-30990) /**< that change is no longer in the change ring */
#define KV_EBUSY        (-30989) /**< the lock was not free within the handle's lock timeout */
#define KV_EREADONLY    (-30988) /**< the store is a replica: write through its server, not directly */
#define KV_EUNTRUSTED   (-30987) /**< KV_CHECK_OWNER: another user owns the segment, or others may write it */
#define KV_ENOTNUM      (-30986) /**< kv_incr: the value is not a decimal integer within int64 */
#define KV_ERR_LAST     (-30901)
/** @} */

/** Flags for kv_open(). */
#define KV_CREATE 1 /**< create the segment when it is missing */
#define KV_EXCL   2 /**< with KV_CREATE: fail with -EEXIST when it exists */
/**
 * Trust an existing segment only when the process's effective user owns it and others (o+w) may not
 * write it; otherwise fail with KV_EUNTRUSTED before reading a byte of it. See Caveats.
 */
#define KV_CHECK_OWNER 4

/** expected_rev for kv_set_if() and kv_delete_if(): no condition, report the new revision only. */
#define KV_ANY_REVISION UINT64_MAX

/** Default geometry: the original design's table. */
#define KV_DEFAULT_MAX_ENTRIES 10u
#define KV_DEFAULT_KEY_MAX     63u
#define KV_DEFAULT_VALUE_MAX   255u
#define KV_DEFAULT_MODE        0600u

/** The change ring: the most recent KV_RING_CELLS writes, readable by any process (kv_change). */
#define KV_RING_CELLS    256u
#define KV_CHANGE_SET    1 /**< a change that set the key to a value */
#define KV_CHANGE_DELETE 2 /**< a change that deleted the key */
#define KV_CHANGE_EXPIRED 3 /**< a delete: the entry had expired, and a writer reclaimed it */
#define KV_CHANGE_EVICTED 4 /**< a delete: the entry was evicted to make room (KV_EVICT_LRU) */
#define KV_APPLY_VERSION 0 /**< kv_apply: no entry changes, only the store's version moves */

/** Eviction policies (kv_options.evict, kv_evict_policy). */
#define KV_EVICT_NONE 1 /**< a full store refuses new entries with KV_EFULL (the default) */
#define KV_EVICT_LRU  2 /**< a full store evicts the least recently used entries to make room */
/** Entries an eviction samples to choose the one it removes. */
#define KV_EVICT_SAMPLES 8

/** The longest segment name, in bytes with its leading "/": "/" and 1..254 bytes, no other "/". */
#define KV_NAME_MAX 255

/** Lock-free attempts a read makes while writes overlap it, before it falls back to the lock. */
#define KV_READ_SPINS 64

/** Upper limits accepted for a new segment's geometry. */
#define KV_LIMIT_MAX_ENTRIES (1u << 24) /**< 16,777,216 entries */
#define KV_LIMIT_KEY_MAX     4096u      /**< bytes */
#define KV_LIMIT_VALUE_MAX   (1u << 20) /**< 1 MiB, for a store made without memory_bytes */
#define KV_LIMIT_VALUE_MAX_MEMORY (1u << 26) /**< 64 MiB, for a store made with memory_bytes */
#define KV_LIMIT_MEMORY_MIN  4096u      /**< the smallest memory_bytes but 0, bytes */
#define KV_LIMIT_MEMORY      34359738368 /**< the largest memory_bytes, bytes (32 GiB) */

/**
 * Geometry and permissions of a new segment. A zero field takes its default. Only used when
 * kv_open() creates the segment; an existing segment's own geometry always wins. kv_resize() takes
 * the same structure, where a zero field keeps the store's own value.
 */
typedef struct kv_options {
    uint32_t max_entries; /**< 1..KV_LIMIT_MAX_ENTRIES, default 10 */
    uint32_t key_max;     /**< 1..KV_LIMIT_KEY_MAX bytes, default 63 */
    uint32_t value_max;   /**< 1..KV_LIMIT_VALUE_MAX bytes (with memory_bytes:
                               1..KV_LIMIT_VALUE_MAX_MEMORY), default 255 */
    uint32_t mode;        /**< file mode bits (at most 0777), default 0600; applied whatever the umask */
    /**
     * Bytes for keys and values together (the heap), KV_LIMIT_MEMORY_MIN..KV_LIMIT_MEMORY, rounded
     * down to a multiple of 16. 0 (the default) reserves room for max_entries entries of key_max +
     * value_max bytes each, as layout 1 did: such a store is full only when its entries are. With
     * memory_bytes, value_max only bounds one value and reserves nothing: a set that finds no room
     * in the heap answers KV_EFULL. Each entry's chunk takes 8 bytes of head plus its key and value,
     * rounded up to 16 (32 at least).
     */
    uint64_t memory_bytes;
    /**
     * What a set does when the store is full (no free slot, or no heap room): 0 (the default):
     * KV_EVICT_NONE on creation, the store's own policy for kv_resize; KV_EVICT_NONE: answer
     * KV_EFULL (once expired entries are reclaimed); KV_EVICT_LRU: evict entries (see Caveats).
     */
    uint32_t evict;
    /**
     * kv_resize only: milliseconds to wait for the store's write lock before giving up with
     * KV_EBUSY, nothing changed; 0 (the default): as long as it takes. kv_open ignores it (a
     * handle's wait is kv_set_lock_timeout's).
     */
    uint32_t lock_timeout_ms;
} kv_options;

/** An open store: one process's mapping of a segment. Opaque. */
typedef struct kv_store kv_store;

/**
 * Open a store, creating it when asked.
 *
 * Creation is race-free (O_CREAT|O_EXCL); its space is reserved up front (posix_fallocate), so a full
 * /dev/shm fails here with -ENOSPC instead of a SIGBUS later. An opener that finds a segment still
 * being initialised by its creator waits for it, about a second at most.
 *
 * @param name  POSIX shm name: "/" followed by 1..254 bytes with no further "/" and no control
 *              character (bytes 0x01..0x1f and 0x7f); KV_NAME_MAX bytes at most, the "/" included.
 * @param flags 0 (open an existing segment), KV_CREATE, or KV_CREATE|KV_EXCL; any of them with
 *              KV_CHECK_OWNER, which checks the owner and mode of the segment it opens on its open
 *              descriptor (fstat), before mapping it. A segment it creates is the caller's: with
 *              KV_CHECK_OWNER its mode must not let others write it.
 * @param opts  geometry and mode for a new segment; NULL for the defaults. Ignored when the segment
 *              exists. The caller keeps ownership.
 * @param out   receives the handle on success (NULL on failure). Free it with kv_close().
 * @return 0; KV_EINVAL (bad name, flags or options, or KV_CHECK_OWNER|KV_CREATE with a mode
 *         that has o+w); -ENOENT (missing, without KV_CREATE); -EEXIST (KV_EXCL and it exists);
 *         -EACCES (no permission to read and write it); KV_EUNTRUSTED (KV_CHECK_OWNER, and another
 *         user owns it or its mode has o+w); -ENOSPC; KV_EINCOMPAT (wrong magic, layout, sizes or
 *         geometry, or truncated); KV_ENOTREADY; another -errno.
 */
KV_API int kv_open(const char *name, int flags, const kv_options *opts, kv_store **out);

/**
 * Unmap the segment and free the handle. Never unlinks. NULL is a no-op. The handle, and every
 * pointer obtained from kv_base(), are invalid afterwards.
 */
KV_API void kv_close(kv_store *s);

/**
 * Remove a segment's name (shm_unlink). Mappings that exist stay valid; see Caveats.
 * @return 0; KV_EINVAL (bad name, as for kv_open); -ENOENT; -EACCES; another -errno.
 */
KV_API int kv_unlink(const char *name);

/**
 * Give the store `name` a new geometry without losing it: build a new segment, copy every entry
 * into it (keys, values, revisions and timestamps), and the change ring, version, lock-recovery
 * count, creation time and read-only flag, all under the old segment's write lock; then put the
 * copy in place of the name atomically and mark the old segment superseded. Every handle on the
 * old segment, in any process, follows on its next call (see "Following a resize" in Caveats).
 *
 * The copy is made under the name `name` + ".resize" and renamed over `name` in /dev/shm: rename(2)
 * swaps the name in one step, so an opener finds the old store or the new one, never neither. A
 * copy left there by a resizer that died is removed by the next locker of the old segment.
 * Entries keep their slots when the new max_entries holds every slot in use (a listing's cursor
 * stays good); otherwise they are packed in slot order. Each key and value is copied into a chunk
 * of the new segment's heap, allocated from its start: the copy's heap is unfragmented. Linux only
 * (POSIX shared memory has no rename elsewhere).
 *
 * @param name POSIX shm name of an existing store, as kv_open; at most KV_NAME_MAX - 7 bytes
 *             (room for the ".resize" suffix).
 * @param opts the new geometry, memory and mode; a zero field (or NULL opts) keeps the store's
 *             own. memory_bytes 0 keeps the store's heap size (a store made without memory_bytes
 *             stays without: room for every entry at its largest, for the new geometry); a non-zero
 *             memory_bytes gives the store that heap (value_max may then go up to
 *             KV_LIMIT_VALUE_MAX_MEMORY). The caller keeps ownership. The new segment belongs to the caller's effective
 *             user: resize a store as its owner, or KV_CHECK_OWNER openers will refuse the copy.
 * @return 0; nothing changes on any error, and the old store stays in use: KV_EFULL (the store
 *         holds more entries than the new max_entries, or its keys and values need more chunk
 *         bytes than the new memory_bytes holds: the sum over entries of 8 + key + value rounded
 *         up to 16, 32 at least), KV_EKEYLEN (a key is longer than the new
 *         key_max), KV_EVALLEN (a value is longer than the new value_max), KV_EINVAL (bad name or
 *         geometry), KV_ECORRUPT (an entry's lengths or the entry count are damaged: kv_check says
 *         more), -ENOENT, -EACCES, KV_EINCOMPAT, -EEXIST (a store other than a stale copy is
 *         called `name` + ".resize"), -ENOSPC (no room in /dev/shm for the copy while the old one
 *         exists), KV_EBUSY (the write lock was held past opts->lock_timeout_ms), -ENOTSUP (not
 *         Linux), another -errno. Waits for the write lock up to opts->lock_timeout_ms (as long as
 *         it takes when 0); readers go on reading the old segment meanwhile, writers wait.
 * Safe to call from any process while others use the store; two resizes of one store run one
 * after the other (the second resizes the first's result).
 */
KV_API int kv_resize(const char *name, const kv_options *opts);

/**
 * Insert or replace an entry. Takes the write lock; crash-atomic (see Caveats).
 * The entry's timestamp becomes now, its revision the store's new version; version grows by one.
 *
 * @param key,key_len     the key (1..key_max bytes, no NUL); not retained.
 * @param value,value_len the value (0..value_max bytes); not retained. value may be NULL when
 *                        value_len is 0.
 * A store that is full (no free slot for a new key, or no heap room for the key and value) first
 * reclaims expired entries it finds (see kv_expire); a store made with KV_EVICT_LRU then evicts
 * entries, each recorded as a change of op KV_CHANGE_EVICTED, until the set fits.
 *
 * @return 0; KV_EINVAL (NULL handle, empty key or NUL in key); KV_EKEYLEN; KV_EVALLEN;
 *         KV_EFULL (a new key and no free slot, or no room in the heap for the key and value: a
 *         rewrite needs room for the new value while it holds the old; nothing is written, though
 *         entries may have been moved within the heap, and expired or (lru) evicted entries
 *         removed; an lru store answers it only when evicting cannot make room: at once,
 *         evicting nothing, for a value the heap cannot hold beside the entry's old one);
 *         KV_ECORRUPT (the index, a free list or
 *         the heap it would follow is damaged: nothing is written); KV_EREADONLY (the store is a replica, see
 *         kv_set_readonly); a lock failure as -errno.
 */
KV_API int kv_set(kv_store *s, const char *key, size_t key_len, const char *value, size_t value_len);

/**
 * Conditional set (compare-and-set on the entry's revision), atomic under the write lock.
 *
 * @param expected_rev 0: write only when the key is absent (create only); KV_ANY_REVISION: write
 *                     unconditionally; otherwise write only when the entry exists and its revision
 *                     equals expected_rev.
 * @param current_rev  when not NULL, receives the entry's revision: the new one on success, the
 *                     one found (0 when absent) on KV_ECONFLICT.
 * @return as kv_set(), plus KV_ECONFLICT when the condition does not hold (nothing is written).
 */
KV_API int kv_set_if(kv_store *s, const char *key, size_t key_len, const char *value, size_t value_len,
              uint64_t expected_rev, uint64_t *current_rev);

/**
 * Like kv_set(), with an expiry: the entry is absent for every reader from now + ttl_ms on (see
 * Caveats on the clock). kv_set and kv_set_if write entries that never expire, clearing any expiry
 * the entry had, as Redis's SET does. An expired entry is absent for writers too: a set of its key
 * creates it anew (expected revision 0 matches), after recording its end (KV_CHANGE_EXPIRED).
 *
 * @param ttl_ms milliseconds from now; 0: never expires.
 * @return as kv_set(); KV_EINVAL also when now + ttl_ms does not fit in 64 bits.
 */
KV_API int kv_set_ttl(kv_store *s, const char *key, size_t key_len, const char *value,
                      size_t value_len, uint64_t ttl_ms);

/**
 * kv_set_if() with an expiry, as kv_set_ttl().
 * @return as kv_set_if().
 */
KV_API int kv_set_if_ttl(kv_store *s, const char *key, size_t key_len, const char *value,
                         size_t value_len, uint64_t expected_rev, uint64_t ttl_ms,
                         uint64_t *current_rev);

/**
 * Copy out an entry's value. Never takes the lock unless writers keep overlapping the read many
 * times in a row (then it falls back to the lock so it always terminates).
 *
 * @param buf,buf_len destination owned by the caller; buf may be NULL when buf_len is 0. The value is
 *                    not NUL-terminated.
 * @param value_len   when not NULL, receives the value's length, also on KV_EBUFSIZE.
 * @param timestamp   when not NULL, receives the Unix time (seconds) of the entry's last write.
 * @return 0; KV_NOTFOUND; KV_EBUFSIZE (buf_len < value length: nothing copied, *value_len = needed);
 *         KV_EINVAL (NULL handle, empty key, NUL in key); KV_EKEYLEN (a key this store cannot hold).
 */
KV_API int kv_get(kv_store *s, const char *key, size_t key_len, char *buf, size_t buf_len,
           size_t *value_len, int64_t *timestamp);

/**
 * Like kv_get(), also reporting the entry's revision (the store version of its last write).
 * @param revision when not NULL, receives the revision.
 */
KV_API int kv_get_rev(kv_store *s, const char *key, size_t key_len, char *buf, size_t buf_len,
               size_t *value_len, int64_t *timestamp, uint64_t *revision);

/** What kv_get_meta() reports of an entry besides its value. */
typedef struct kv_meta {
    uint64_t value_len;     /**< the value's length, also on KV_EBUFSIZE */
    int64_t  timestamp;     /**< Unix time (seconds) of its last write */
    uint64_t revision;      /**< the store version of its last write */
    uint64_t expires_at_ms; /**< CLOCK_REALTIME milliseconds at which it expires; 0: never */
} kv_meta;

/**
 * Like kv_get(), reporting everything kv_meta holds. Lock-free as kv_get().
 * @param meta when not NULL, receives the entry's metadata (on success and on KV_EBUFSIZE).
 * @return as kv_get().
 */
KV_API int kv_get_meta(kv_store *s, const char *key, size_t key_len, char *buf, size_t buf_len,
                       kv_meta *meta);

/**
 * Atomic increment: add `delta` to the integer the entry holds and store the sum, under one hold of
 * the write lock, so concurrent increments from any number of processes never lose one. It is one
 * write like kv_set: crash-atomic, a new revision, recorded in the change ring as a set of the new
 * value (watchers see the digits). Refused on a replica (KV_EREADONLY), as every direct write.
 *
 * The value is kept as decimal ASCII, as Redis keeps its counters (kv_get reads "42"): "0", or an
 * optional "-" then a digit 1-9 and more digits, within int64 (no "+", spaces, leading zeros or
 * "-0"). A missing key counts as 0 and is created.
 *
 * @param key,key_len as kv_set; not retained.
 * @param delta       any int64, negative included.
 * @param result      when not NULL, receives the new value (on success only). Owned by the caller.
 * @return 0; KV_ENOTNUM (the value is not such an integer, or lies beyond int64: nothing is
 *         written); -ERANGE (the sum would overflow int64: nothing is written); KV_EVALLEN (the
 *         sum's digits are longer than the store's value_max); KV_EINVAL; KV_EKEYLEN; KV_EFULL (a new
 *         key and no free slot); KV_ECORRUPT; KV_EREADONLY; a lock failure (KV_EBUSY, -errno).
 */
KV_API int kv_incr(kv_store *s, const char *key, size_t key_len, int64_t delta, int64_t *result);

/**
 * Like kv_incr(), also reporting the revision the increment gave the entry (its ETag over HTTP).
 * @param revision when not NULL, receives the new revision on success; on a failure it may hold
 *                 the entry's revision as found. Owned by the caller.
 */
KV_API int kv_incr_rev(kv_store *s, const char *key, size_t key_len, int64_t delta, int64_t *result,
                       uint64_t *revision);

/**
 * kv_incr_rev() that gives a counter it creates an expiry, as kv_set_ttl(): a counter that exists
 * keeps the expiry it has (as Redis's INCR does), so a rate limiter's window is not prolonged by
 * its hits. An expired counter counts as missing.
 * @param ttl_ms milliseconds from now, for a counter this call creates; 0: never expires.
 * @return as kv_incr().
 */
KV_API int kv_incr_ttl(kv_store *s, const char *key, size_t key_len, int64_t delta, uint64_t ttl_ms,
                       int64_t *result, uint64_t *revision);

/**
 * Reclaim expired entries: look at up to `max` slots, from where the last call stopped (wrapping),
 * and delete every expired entry among them, each recorded as a change of op KV_CHANGE_EXPIRED
 * with a revision of its own. Bounded work under one hold of the write lock, in the manner of
 * Redis's active expiry: call it often with a small `max` (shmkv's server does, every 100 ms).
 * Readers never need it (they skip expired entries); it gives their slots and bytes back and
 * tells watchers they are gone.
 * @return how many entries it reclaimed (>= 0); KV_EREADONLY (a replica: its source expires them);
 *         KV_ECORRUPT; KV_EINVAL; a lock failure (KV_EBUSY, -errno).
 */
KV_API int kv_expire(kv_store *s, uint32_t max);

/**
 * Record a read of the entry in slot `slot` for eviction, as kv_get() does: for a binding that reads
 * entries itself (see layout) without viewing the whole mapping. Lock-free, one relaxed store at
 * most; nothing unless the policy is KV_EVICT_LRU, the tick has moved, and the slot exists. A slot
 * freed or reused meanwhile only makes its next entry look used. Follows a resize first.
 */
KV_API void kv_touch(kv_store *s, uint32_t slot);

/**
 * Remove an entry. Takes the write lock; crash-atomic; version grows by one on success.
 * @return 0; KV_NOTFOUND (nothing changes, version included); KV_EINVAL; KV_EKEYLEN; KV_ECORRUPT
 *         (the index run it would shift is damaged: nothing is written); KV_EREADONLY; lock -errno.
 */
KV_API int kv_delete(kv_store *s, const char *key, size_t key_len);

/**
 * Conditional delete: only when the entry's revision equals expected_rev (KV_ANY_REVISION: always).
 * @param current_rev when not NULL, receives the revision found (0 when absent).
 * @return as kv_delete(), plus KV_ECONFLICT when the entry is at another revision.
 */
KV_API int kv_delete_if(kv_store *s, const char *key, size_t key_len, uint64_t expected_rev,
                 uint64_t *current_rev);

/**
 * Mark the store read-only for direct writers, or writable again: a replica's segment, whose
 * entries come from elsewhere (shmkv's replication through Redis) and are written by kv_apply only.
 * While it is set, kv_set, kv_set_if, kv_delete and kv_delete_if answer KV_EREADONLY and write
 * nothing. The flag lives in the segment: it holds for every process, and stays until cleared.
 * Takes the write lock, so no direct write is half done when it returns.
 * @return 0; KV_EINVAL (NULL handle); lock -errno.
 */
KV_API int kv_set_readonly(kv_store *s, int readonly);

/**
 * Apply a change made elsewhere, with the revision and timestamp it was given there: the way a
 * replicator writes a replica's segment (allowed whether or not the store is read-only). A set
 * inserts or replaces the entry, a delete removes it (a delete of an absent key changes only the
 * version); either way the entry's revision and the store's version become `revision`, and the
 * change is recorded in the ring under it. Revisions must grow: one at or below the store's version
 * is refused, so applying a change twice is harmless. Takes the write lock; crash-atomic like kv_set.
 * Revisions need not be consecutive: kv_change answers KV_EEXPIRED for the ones skipped.
 *
 * @param op        KV_CHANGE_SET, KV_CHANGE_DELETE (or KV_CHANGE_EXPIRED, KV_CHANGE_EVICTED: a
 *                  delete recorded with that reason), or KV_APPLY_VERSION: make the version
 *                  `revision` and nothing else (after loading a whole state whose newest changes
 *                  were deletes); the key is then ignored (it may be NULL) and nothing is recorded.
 * @param key,value as kv_set (value ignored for a delete); not retained.
 * @param revision  the change's revision, > kv_version().
 * @param timestamp the change's Unix time, seconds.
 * @param expires_at_ms a set's expiry, CLOCK_REALTIME milliseconds (0: never); ignored otherwise.
 *                  Applying never reclaims nor evicts: the source does, and sends its deletes.
 * @return 0; KV_ECONFLICT (revision <= kv_version(): already applied, nothing written);
 *         KV_EINVAL (bad op, key or handle); KV_EKEYLEN; KV_EVALLEN; KV_EFULL; KV_ECORRUPT; lock -errno.
 */
KV_API int kv_apply(kv_store *s, int op, const char *key, size_t key_len, const char *value,
                    size_t value_len, uint64_t revision, int64_t timestamp, uint64_t expires_at_ms);

/**
 * Read one change from the ring: the write that made the store's version `revision`. Every
 * successful set and delete, by any process, is recorded under the write lock; the ring keeps the
 * last KV_RING_CELLS of them. Lock-free. To follow changes, remember the last revision seen, and
 * read revision + 1 up to kv_version(); KV_EEXPIRED means the reader fell behind and must reread
 * the whole store.
 *
 * @param op                 receives KV_CHANGE_SET, or for a delete KV_CHANGE_DELETE,
 *                           KV_CHANGE_EXPIRED or KV_CHANGE_EVICTED (may be NULL). A set's expiry is
 *                           in the ring (see layout) but not reported here: kv_get_meta has it.
 * @param key,key_cap        the caller's buffer for the key (key_max bytes always suffice).
 * @param key_len            receives the key's length (may be NULL).
 * @param value,value_cap    the caller's buffer for the value, set changes only (value_max bytes
 *                           always suffice); may be NULL with value_cap 0 when not wanted.
 * @param value_len          receives the value's length, 0 for a delete (may be NULL).
 * @param timestamp          receives the Unix time (seconds) of the write (may be NULL).
 * @return 0; KV_NOTFOUND (revision 0, or not written yet); KV_EEXPIRED (overwritten by a newer
 *         change); KV_EBUFSIZE (a buffer is too small; the lengths are reported); KV_EINVAL.
 */
KV_API int kv_change(kv_store *s, uint64_t revision, int *op, char *key, size_t key_cap,
                     size_t *key_len, char *value, size_t value_cap, size_t *value_len,
                     int64_t *timestamp);

/**
 * Verify every invariant of the segment under the write lock: header fields, each entry's lengths,
 * chunk, hash and key bytes, the index (every live entry found exactly once at its probe position,
 * no dangling cell), the free list of slots, entry_count, even sequence counters, and the heap:
 * chunks end to end with sane sizes, every used chunk owned by exactly one live entry and every
 * live entry's chunk one of them, free chunks whole (footer) and never side by side, each in
 * exactly one free list (its class's, linked both ways, no cycle), and memory used and heap free
 * equal to the chunks' sizes. Needs heap size / 128 bytes of process memory for a while.
 * @return 0 when sound; KV_ECORRUPT (see kv_check_detail); KV_EINVAL; lock -errno.
 */
KV_API int kv_check(kv_store *s);

/**
 * After kv_check() returned KV_ECORRUPT on this handle: a static string naming the first broken
 * invariant. "" otherwise. Not thread-safe with a concurrent kv_check() on the same handle.
 */
KV_API const char *kv_check_detail(const kv_store *s);

/**
 * Copy the whole segment, as one consistent state, into a caller's buffer while holding the write
 * lock: the fallback for a reader whose lock-free scan keeps being overtaken by writers. The copy
 * has the segment's layout (see below) with the mutex bytes meaningless. Like kv_copy_cell and
 * kv_read_cell, it copies the mapping the handle was opened on (kv_map_size), even after a resize
 * superseded it: that mapping then holds the state the resize copied.
 * @param buf,buf_len destination owned by the caller, at least kv_map_size() bytes.
 * @return 0; KV_EBUFSIZE (buf_len too small); KV_EINVAL; lock -errno.
 */
KV_API int kv_snapshot(kv_store *s, void *buf, size_t buf_len);

/**
 * Copy one cell of the segment without the lock: entry slot `cell` when cell < max_entries, change-
 * ring cell `cell - max_entries` when below max_entries + KV_RING_CELLS, or, at max_entries +
 * KV_RING_CELLS, the undo record's copy of an entry (what a write in progress changes). For
 * bindings that read the segment lock-free but must not view all of it at once
 * (src/segment-memory.ts says why Bun must not). An entry is copied as 64 bytes of entry, then its
 * key and value bytes from its chunk (left out when the entry's chunk and lengths do not fit the
 * heap); a ring cell as `ring cell size` bytes. The copy is taken as kv_get takes one, so validate
 * it the same way (see layout): a slot's by the index counter and by the counter this returns; a
 * ring cell's by its revision; the undo record's by the store's seq.
 *
 * @param cell a slot (< max_entries), max_entries + a ring cell (< KV_RING_CELLS), or
 *             max_entries + KV_RING_CELLS.
 * @param buf  destination owned by the caller, at least 64 + key_max + value_max bytes.
 * @return for a slot, the entry's own counter as it was during the copy, even; or an odd number when
 *         a write to the slot overlapped the copy. For a ring cell or the undo record, 0. An odd
 *         number when `cell` does not exist (nothing is copied then). Safe across processes: writers
 *         never wait.
 */
KV_API uint32_t kv_copy_cell(const kv_store *s, uint32_t cell, void *buf);

/**
 * How long calls on this handle wait for the write lock: timeout_ms < 0 waits for ever (the
 * default), 0 tries once, N > 0 waits at most N milliseconds (monotonic clock). A call that does
 * not get the lock in time returns KV_EBUSY and changes nothing. Every call that takes the lock
 * honours it: writes, kv_check, kv_snapshot, kv_repair, and the locked fallback of reads. Set it
 * before sharing the handle between threads. An event loop sets 0 and retries later: a writer
 * stopped (SIGSTOP) inside the lock then costs its callers a KV_EBUSY, not a hang.
 */
KV_API void kv_set_lock_timeout(kv_store *s, int32_t timeout_ms);

/**
 * Take the write lock (within the handle's lock timeout) and release it at once. Taking it repairs
 * the store when a writer died holding it (see Caveats), so a reader that found a write left
 * unfinished can call this and read again, without writing anything itself.
 * @return 0; KV_EBUSY (a live process holds the lock); KV_EINVAL; lock -errno.
 */
KV_API int kv_repair(kv_store *s);

/**
 * Copy one cell as kv_copy_cell() does, but under the write lock (within the handle's lock
 * timeout), so the copy is consistent without validation: the fallback for a lock-free reader of
 * one cell that writers keep overtaking. Never copies more than the cell (an entry with its key
 * and value).
 * @param cell a slot (< max_entries), or max_entries + a ring cell (< KV_RING_CELLS).
 * @param buf  destination owned by the caller, at least 64 + key_max + value_max bytes.
 * @return 0; KV_EINVAL (no such cell, NULL handle or buffer); KV_EBUSY; lock -errno.
 */
KV_API int kv_read_cell(kv_store *s, uint32_t cell, void *buf);

/** A static, human-readable description of any return code of this library (or of -errno). */
KV_API const char *kv_strerror(int rc);

/**
 * @defgroup accessors Read-only accessors. All take a valid handle; none takes the lock. kv_base,
 * kv_map_size, kv_max_entries, kv_key_max, kv_value_max and kv_memory_bytes describe the mapping
 * the handle was opened on, even after a resize (see Caveats), so that buffers sized from them fit what kv_copy_cell
 * and kv_snapshot copy; open the name again for a resized store's geometry. The others describe the
 * store, following a resize first.
 */
/** @{ */
KV_API void    *kv_base(const kv_store *s);        /**< start of the mapping (the header); see layout */
KV_API size_t   kv_map_size(const kv_store *s);    /**< bytes mapped (the whole segment) */
KV_API uint64_t kv_version(const kv_store *s);     /**< writes so far: +1 per successful set or delete */
KV_API uint32_t kv_count(const kv_store *s);       /**< live entries */
KV_API uint32_t kv_max_entries(const kv_store *s); /**< capacity */
KV_API uint32_t kv_key_max(const kv_store *s);     /**< longest key, bytes */
KV_API uint32_t kv_value_max(const kv_store *s);   /**< longest value, bytes */
/** Bytes of the heap that holds keys and values (memory_bytes as created, rounded down to 16; for a
 *  store made without it, the room max_entries + 1 largest entries take). */
KV_API uint64_t kv_memory_bytes(const kv_store *s);
/** Bytes of the heap live entries hold: their chunks, heads and rounding included. Read lock-free: a
 *  write in progress may be counted or not. */
KV_API uint64_t kv_memory_used(const kv_store *s);
KV_API uint64_t kv_lock_recoveries(const kv_store *s); /**< times any process repaired after a dead writer */
/** Milliseconds the write lock has been held by its current holder (at least 1), 0 when it is free. A holder
 *  that died keeps counting until the next locker repairs (kv_repair). Same clock for every process
 *  on the host (CLOCK_MONOTONIC). */
KV_API uint64_t kv_lock_held_ms(const kv_store *s);
KV_API int      kv_readonly(const kv_store *s);    /**< 1 when marked read-only (kv_set_readonly), else 0 */
KV_API uint32_t kv_evict_policy(const kv_store *s); /**< KV_EVICT_NONE or KV_EVICT_LRU */
KV_API uint64_t kv_expired_total(const kv_store *s);   /**< entries reclaimed after they expired, ever */
KV_API uint64_t kv_evictions_total(const kv_store *s); /**< entries evicted to make room, ever */
/** @} */

/** Hash of a key as used by the index (see layout). Exposed so other languages can test theirs. */
KV_API uint32_t kv_hash(const char *key, size_t key_len);

/**
 * @section layout Segment layout (layout version 2)
 *
 * Native byte order (little-endian on every supported host). Offsets in bytes from kv_base(). A
 * segment of layout version 1 (entries holding their key and value inline) is refused with
 * KV_EINCOMPAT: read it with the shmkv that made it, unlink it and create it again.
 *
 * Header:
 * | off | type | field |
 * |-----|------|-------|
 * |   0 | u32  | magic, 0x564B4D53 ("SMKV" in memory) |
 * |   4 | u32  | layout version, 2 |
 * |   8 | u32  | ready: 0x52454459 once the creator has finished; readers wait for it |
 * |  12 | u32  | header size: 640, the offset of the index |
 * |  16 | u32  | sizeof(pthread_mutex_t) of the creator (40 on x86-64 glibc) |
 * |  20 | u32  | max_entries |
 * |  24 | u32  | key_max |
 * |  28 | u32  | value_max |
 * |  32 | u32  | entry size: 64, bytes from one slot to the next |
 * |  36 | u32  | index cells: the smallest power of two >= 2 * max_entries |
 * |  40 | u64  | entries offset: header size + 4 * index cells, rounded up to 64 |
 * |  48 | u64  | total size: heap offset + heap size |
 * |  56 | u32  | seq: the seqlock counter; odd while a write is in progress |
 * |  60 | u32  | entry_count |
 * |  64 | u64  | version |
 * |  72 | u32  | free head: slot + 1 of the first free slot, 0 when none |
 * |  76 | u32  | high water: slots ever used; slots at or above it are free and untouched |
 * |  80 | u64  | lock recoveries |
 * |  88 | i64  | creation time, Unix seconds |
 * |  96 | u64  | ring offset: entries offset + max_entries * 64 |
 * | 104 | u32  | ring cells: KV_RING_CELLS |
 * | 108 | u32  | index seq: the seqlock of the index and the slots' keys; odd while an insert, a
 *               delete or a repair is in progress |
 * | 112 | u64  | lock since: CLOCK_MONOTONIC milliseconds, made odd, when the lock's holder took it;
 *               0 while the lock is free (kv_lock_held_ms) |
 * | 120 | u32  | flags: bit 0 (1) read-only, set by kv_set_readonly: only kv_apply writes; bit 1
 *               (2) superseded: a resize put a copy in its place, open the name again; bit 2 (4)
 *               resizing: a resize is copying it (or died doing so; the next locker settles it);
 *               bit 3 (8) building: a resize's copy not yet in place (meaningless once it is) |
 * | 124 | u32  | reserved |
 * | 128 | ...  | the pthread mutex (process-shared, robust) |
 * | 192 | ...  | undo record: u32 state (1 = armed), u32 slot, u32 entry_count, u32 free head,
 *               u32 high water, u32 reserved, u64 version; its copy of the slot's entry is at 576 |
 * | 224 | u64  | heap offset: ring offset + ring cells * ring cell size, rounded up to 64 |
 * | 232 | u64  | heap size (kv_memory_bytes): memory_bytes rounded down to 16; for a store made
 *               without it, (max_entries + 1) * the fixed chunk size |
 * | 240 | u64  | memory used (kv_memory_used): bytes of the chunks live entries hold |
 * | 248 | u64  | heap free: bytes of the free chunks |
 * | 256 | u32  | fixed chunk size: for a store made without memory_bytes, the size of every chunk,
 *               max(32, align16(8 + key_max + value_max)); else 0 |
 * | 260 | u32  | ring cell size: align8(32 + ring data) |
 * | 264 | u32  | ring data: key and value bytes a ring cell keeps: key_max + value_max, at most
 *               3040 when memory_bytes was given |
 * | 268 | u32  | free-list classes: 32 |
 * | 272 | u64  | compactions: times a set found no free chunk big enough and compacted the heap |
 * | 280 | u64[32] | free-list heads: offset + 1 (from the heap's start) of each class's first free
 *               chunk, 0 when the class has none. Class k holds the free chunks of 2^(k+5) to
 *               2^(k+6) - 1 bytes; class 31 all the larger ones too |
 * | 536 | u32  | eviction policy: 2 (KV_EVICT_LRU) evicts; any other value (1, or 0 in a store made
 *               before policies existed) does not |
 * | 540 | u32  | expire hand: the slot kv_expire looks at next |
 * | 544 | u64  | expired total (kv_expired_total) |
 * | 552 | u64  | evicted total (kv_evictions_total) |
 * | 560 | u32  | evict hand: the slot eviction samples from next |
 * | 564 | ...  | reserved (12 bytes) |
 * | 576 | ...  | the undo record's copy of the entry a write changes (64 bytes) |
 *
 * Index, at the header size: `index cells` u32 cells of open addressing with linear probing. A cell is
 * 0 (empty) or slot + 1. A key's home cell is kv_hash(key) & (cells - 1); a lookup probes forward
 * (wrapping) until it finds the key or an empty cell. Deletion shifts later cells back (no tombstones).
 *
 * Entries, at the entries offset, `max_entries` slots of 64 bytes each:
 * | off | type | field |
 * |-----|------|-------|
 * |   0 | u32  | key length; 0 = free slot |
 * |   4 | u32  | value length |
 * |   8 | u32  | kv_hash(key) |
 * |  12 | u32  | free slots: slot + 1 of the next free slot, 0 = end; live slots: the entry's
 *               seqlock, odd while the entry is rewritten (a new value, or a move of its chunk) |
 * |  16 | i64  | timestamp of the last write, Unix seconds |
 * |  24 | u64  | revision: the store's version after the entry's last write |
 * |  32 | u64  | chunk: offset of its chunk from the heap's start (a multiple of 16) |
 * |  40 | u32  | chunk size, bytes, its head included |
 * |  44 | u32  | last access: CLOCK_REALTIME milliseconds >> 4 (16 ms ticks) of its last write, or
 *               of its last read when the policy is KV_EVICT_LRU, modulo 2^32. A reader stores
 *               it (relaxed, no counter) only when it differs from now's tick. Ages compare
 *               modulo 2^32 (exact up to 2.2 years) |
 * |  48 | u64  | expires at: CLOCK_REALTIME milliseconds from which the entry is absent; 0 = never.
 *               Written with the value, under the entry's counter; a reader that validates a copy
 *               whose expiry is non-zero and <= its clock treats the entry as absent |
 * |  56 | u64  | reserved |
 *
 * Heap, at the heap offset, `heap size` bytes: chunks laid end to end from offset 0, each a multiple
 * of 16 bytes and at least 32, every byte in exactly one chunk. A chunk starts with an 8-byte head:
 * | off | type | field |
 * |-----|------|-------|
 * |   0 | u32  | units: the chunk's size / 16 |
 * |   4 | u32  | tag: bit 31 used; bit 30 the chunk before this one is free; bits 0..29 a used
 *               chunk's owner, slot + 1 of its entry (0 in a free chunk) |
 * A used chunk holds its entry's key bytes at 8, then its value bytes; the rest is padding. A free
 * chunk holds at 8 a u64, offset + 1 of the next chunk of its free list (0 = end), at 16 a u64,
 * offset + 1 of the previous one (0: it is the head), and in its last 8 bytes its size again (a
 * footer, so the chunk after it can find its start). No two free chunks are side by side.
 *
 * Change ring, at the ring offset, `ring cells` records of `ring cell size` bytes; the change that
 * made version r is in cell (r - 1) % ring cells:
 * | off | type | field |
 * |-----|------|-------|
 * |   0 | u64  | revision; 0 while the record is being written |
 * |   8 | i64  | timestamp, Unix seconds |
 * |  16 | u32  | op: 1 set, 2 delete, 3 delete of an expired entry, 4 delete by eviction |
 * |  20 | u32  | key length |
 * |  24 | u32  | value length (0 for a delete) |
 * |  28 | u32  | flags: bit 0 (1) the key and value (more than `ring data` bytes) were not kept:
 *               kv_change answers KV_EEXPIRED for it, and a reader rereads the store; bit 1 (2)
 *               a set with an expiry: 8 more bytes follow the value (counted in `ring data`) |
 * |  32 | u8[] | key bytes, then value bytes, then (bit 1) the u64 expires-at, unaligned |
 * A reader loads the revision (acquire), copies, fences, and loads it again: the copy is valid when
 * both loads give the revision it wanted.
 *
 * Hash (kv_hash): 32-bit FNV-1a over the key bytes (offset basis 2166136261, prime 16777619), then
 * the murmur3 finaliser: h ^= h >> 16; h *= 0x85ebca6b; h ^= h >> 13; h *= 0xc2b2ae35; h ^= h >> 16.
 *
 * Writing: a write puts the new key and value in a fresh chunk first (nobody refers to it yet),
 * then changes the entry under the protocol below, and frees the entry's old chunk only after
 * its counters are even again. So a chunk an entry or the undo record refers to is never freed
 * while `seq` is odd, and a chunk freed under a reader always comes with a step of the counter that
 * reader validates by. The free lists, chunk heads and heap totals are derived from the entries: the
 * next locker after a writer died rebuilds them from the live entries (every byte no live entry
 * holds is free), whatever the writer left half done. A compaction (a set that finds no free chunk
 * big enough while enough bytes are free) moves entries' chunks down, one crash-atomic write each.
 *
 * Reading without the lock: load a counter (acquire); if odd, retry; copy the data; fence; load the
 * counter again; if it changed, discard the copy and retry. Every write makes `seq` odd for its
 * duration: a reader of several entries (a whole-store status) validates with it. A reader of one
 * key validates with two narrower counters, so writes to other keys do not make it retry: `index
 * seq` around its lookup (inserts and deletes move index cells), and the entry's own counter around
 * each comparison of its key and around its copy of the value (a rewrite points the entry at
 * another chunk). Every offset and length read from the segment must be bounds-checked against the
 * geometry before it is followed (an entry's chunk + 8 + key length + value length within the heap
 * size, the lengths within key_max and value_max): the copy may be torn until validated, and the
 * chunk may have been freed and reused meanwhile, which the counter then tells.
 *
 * A reader that finds a counter odd need not wait for the writer (which may be stopped): a write
 * changes one entry only, the undo record's `slot`, and arms the record before it makes any counter
 * odd (counters are made odd with release order). So while `seq` stays at the same odd value, the
 * store as of before the write is readable: every other slot as it stands (validated by its own
 * counter), slot `undo slot` from the undo record's entry copy while the record is armed (state 1)
 * (its chunk is intact: it is freed only after `seq` moves), or as it stands once disarmed (the
 * write is complete, only its counters remain to be ended), and the committed version and entry
 * count from the record (armed) or the header (disarmed). Validate such a read by `seq` unchanged;
 * an entry's own counter may be odd then. A lookup through the index is valid under an odd `index
 * seq` only when it finds the key (a delete in progress moves cells, so "absent" cannot be trusted
 * then).
 */

#ifdef __cplusplus
}
#endif

#endif /* SHARED_MEMORY_KV_H */
