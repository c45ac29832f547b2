/**
 * KvStore: a typed handle on one shmkv segment. Reads go straight to the mapping (lock-free,
 * validated by the seqlock); writes call the C library, which takes the lock.
 */
import { constants } from "node:os";
import { codeOf, KvConflictError, KvError, RC } from "./errors.ts";
import { kvLib, type KvLib, type Pointer } from "./ffi.ts";
import { read as readPointer } from "bun:ffi";
import { closeSync, openSync, readSync } from "node:fs";
import {
  chunkBytes,
  EVICT,
  EXPIRED_ENTRY,
  FLAG,
  HEADER,
  layoutOf,
  OP,
  RING_CELLS,
  SegmentView,
  kvHash,
  TORN,
  TORN_SLOT,
  type Committed,
  type EvictPolicy,
  type ExpiredEntry,
  type KvBytesEntry,
  type KvChange,
  type KvChangeOf,
  type KvEntry,
  type KvRawEntry,
  type Torn,
} from "./layout.ts";
import { LockedMemory, memoryOf } from "./segment-memory.ts";
import { mappedIdentity, namedIdentity, type FileIdentity } from "./segment-identity.ts";
import { CONTROL_CHARACTER, LIMITS, READ_ATTEMPTS } from "./limits.ts";
import { untrustedMessage } from "./segment-owner.ts";

/** Geometry and permissions of a segment this open creates. Ignored when it exists. */
export interface KvOptions {
  maxEntries?: number;
  keyMax?: number;
  valueMax?: number;
  /** File mode bits, e.g. 0o660. Default 0o600, whatever the umask. */
  mode?: number;
  /**
   * Bytes for keys and values together (LIMITS.memoryMin..LIMITS.memory). Default: room for
   * maxEntries entries of keyMax + valueMax bytes. With it, valueMax (up to LIMITS.valueMaxMemory)
   * only bounds one value, and a set that finds no room throws FULL.
   */
  memoryBytes?: number;
  /**
   * What a set that finds the store full does: "none" (the default) throws TABLE_FULL; "lru" evicts
   * entries until it fits, expired ones first, else the least recently read or written of a sample.
   * A resize given it changes the store's policy; without it, keeps it.
   */
  evict?: EvictPolicy;
}

/** What KvStore.resize takes: the new geometry, and how long to wait for the write lock. */
export interface ResizeOptions extends KvOptions {
  /**
   * Milliseconds to wait for the write lock before throwing STORE_BUSY, nothing changed. Default: no
   * limit (a writer stopped inside the lock would stall the resize); 0 waits as little as it can.
   */
  lockTimeoutMs?: number;
}

/** Options of a write (set, setIf, incr, increment). */
export interface WriteOptions {
  /**
   * Milliseconds until the entry expires (a positive number up to TTL_MAX_MS; a fraction counts as a
   * whole millisecond); from then on it is absent to every reader. Absent: it never expires (a set
   * without a ttl clears the entry's expiry; an increment keeps an existing counter's).
   */
  ttl?: number;
}

export interface OpenOptions extends KvOptions {
  /** Create the segment when it is missing (default false). */
  create?: boolean;
  /** With create: fail with EEXIST when it exists. */
  exclusive?: boolean;
  /**
   * Milliseconds a call may wait for the write lock before it throws STORE_BUSY: writes, and reads
   * that writers overtake again and again. Default: no limit. 0 never waits, for an event loop that
   * must not stall on a writer stopped inside the lock (it retries later instead).
   */
  lockTimeoutMs?: number;
  /**
   * Refuse (UNTRUSTED) a segment that another user owns or that others may write (KV_CHECK_OWNER);
   * with create, a mode that lets others write is INVALID_ARGUMENT. Default false.
   */
  checkOwner?: boolean;
}

export type { EvictPolicy, KvBytesEntry, KvChange, KvChangeOf, KvEntry, KvRawEntry };

/**
 * The longest ttl, in milliseconds (about 142,000 years): an expiry within it stays a whole number
 * of milliseconds that a JavaScript number holds exactly.
 */
export const TTL_MAX_MS = 2 ** 52;

/** A key or a value: text (written as UTF-8) or the bytes themselves. */
export type KvData = string | Uint8Array;

export interface KvChanges<T = string> {
  /** The store's version when read: every change up to it is in `changes` (unless expired). */
  version: number;
  /** The changes after the revision asked for, oldest first. */
  changes: KvChangeOf<T>[];
  /** True when the ring no longer holds them all: reread the store (status) instead. */
  expired: boolean;
}

/** One page of a listing, read as one consistent state. */
export interface KvPage<T> {
  version: number;
  entry_count: number;
  items: T[];
  /** The slot to go on from, where the next matching entry is; undefined when there is none. */
  next: number | undefined;
}

/** The figures /metrics reports, read as one consistent state. */
export interface KvStats {
  version: number;
  entry_count: number;
  max_entries: number;
  /** The size of the mapping, in bytes. */
  segment_bytes: number;
  lock_recoveries: number;
  /** Milliseconds the write lock has been held by its current holder; 0 when it is free. */
  lock_held_ms: number;
  /** Bytes of the heap for keys and values, and those live entries hold (chunk rounding included). */
  memory_bytes: number;
  memory_used: number;
  /** Entries evicted to make room, and reclaimed because they expired, ever (by every process). */
  evictions: number;
  expired: number;
  evict: EvictPolicy;
}

export interface KvStatus {
  version: number;
  entry_count: number;
  max_entries: number;
  key_max: number;
  value_max: number;
  memory_bytes: number;
  memory_used: number;
  evict: EvictPolicy;
  entries: KvEntry[];
}

const KV_CREATE = 1;
const KV_EXCL = 2;
const KV_CHECK_OWNER = 4;
/**
 * Bytes a scratch buffer has beyond the limit: room for one more character of UTF-8 (up to 4
 * bytes), so that text over the limit always writes more bytes than the limit.
 */
const OVERFLOW_ROOM = 4;
/** KV_MAGIC: "SMKV", the first word of every shmkv segment. */
const MAGIC = 0x564b4d53;
/** KV_ANY_REVISION: no condition on the write. */
const ANY_REVISION = 0xffff_ffff_ffff_ffffn;

/** kv_apply's op for each kind of change (KV_CHANGE_SET, KV_CHANGE_DELETE, KV_CHANGE_EXPIRED, KV_APPLY_VERSION). */
const APPLY_OPS = { set: OP.set, delete: OP.delete, expired: OP.expired, version: 0 } as const;

const { ENOENT, EEXIST, EACCES } = constants.errno;
const utf8 = new TextEncoder();

function cString(s: string): Uint8Array {
  return utf8.encode(`${s}\0`);
}

function checkName(name: string): void {
  if (typeof name !== "string" || CONTROL_CHARACTER.test(name)) {
    throw new KvError("INVALID_ARGUMENT", `invalid store name ${JSON.stringify(name)}`);
  }
}

function fail(lib: KvLib, rc: number, context: string): never {
  throw new KvError(codeOf(rc), `${context}: ${lib.kv_strerror(rc)}`, rc);
}

/** memoryBytes as kv_options takes it: 0 (the default), or LIMITS.memoryMin..LIMITS.memory. */
function memoryOption(value: number | undefined): number {
  if (value === undefined || value === 0) return 0;
  if (!Number.isSafeInteger(value) || value < LIMITS.memoryMin || value > LIMITS.memory) {
    throw new KvError("INVALID_ARGUMENT", `memoryBytes must be 0 or an integer from ${LIMITS.memoryMin} to ${LIMITS.memory}, not ${value}`);
  }
  return value;
}

function u32Option(name: string, value: number | undefined, max: number): number {
  if (value === undefined) return 0;
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new KvError("INVALID_ARGUMENT", `${name} must be an integer from 1 to ${max}, not ${value}`);
  }
  return value;
}

/** The evict option as kv_options takes it: 0 when not given, else EVICT's number. */
function evictOption(value: EvictPolicy | undefined): number {
  if (value === undefined) return 0;
  if (!Object.hasOwn(EVICT, value)) {
    throw new KvError("INVALID_ARGUMENT", `evict must be "none" or "lru", not ${JSON.stringify(value)}`, RC.INVALID_ARGUMENT);
  }
  return EVICT[value];
}

/** The longest lock timeout the library takes (an int32 of milliseconds). */
const INT32_MAX = 2 ** 31 - 1;

/**
 * A resize's lock timeout as kv_options takes it: 0 for none (wait as long as it takes), else at
 * least 1 ms (0 there would mean no limit), at most what an int32 holds.
 */
function lockTimeoutOption(value: number | undefined): number {
  if (value === undefined) return 0;
  if (!(value >= 0)) throw new KvError("INVALID_ARGUMENT", `lockTimeoutMs must be 0 or more, not ${value}`, RC.INVALID_ARGUMENT);
  return Math.min(Math.max(1, Math.ceil(value)), INT32_MAX);
}

/** kv_options for kv_open and kv_resize (which alone takes a lock timeout): 0 for a field not given. */
function optionsOf(options: KvOptions, valueLimit: number, lockTimeoutMs?: number): Uint32Array {
  const memoryBytes = memoryOption(options.memoryBytes);
  // kv_options: four u32 fields, memory_bytes as a u64 (two words, low first), evict, lock_timeout_ms.
  return new Uint32Array([
    u32Option("maxEntries", options.maxEntries, LIMITS.maxEntries),
    u32Option("keyMax", options.keyMax, LIMITS.keyMax),
    u32Option("valueMax", options.valueMax, valueLimit),
    u32Option("mode", options.mode, LIMITS.mode),
    memoryBytes % 2 ** 32,
    Math.floor(memoryBytes / 2 ** 32),
    evictOption(options.evict),
    lockTimeoutOption(lockTimeoutMs),
  ]);
}

/** A write's ttl as the library takes it: whole milliseconds (a fraction rounded up), 0 for none. */
function ttlOf(options: WriteOptions | undefined): number {
  const ttl = options?.ttl;
  if (ttl === undefined) return 0;
  if (typeof ttl !== "number" || !(ttl > 0) || ttl > TTL_MAX_MS) {
    throw new KvError(
      "INVALID_ARGUMENT",
      `ttl must be a positive number of milliseconds, at most ${TTL_MAX_MS} (leave it out for an entry that never expires), not ${String(ttl)}`,
      RC.INVALID_ARGUMENT,
    );
  }
  return Math.ceil(ttl);
}

/** How a store opens its name again, to follow a resize. */
interface Reopen {
  flags: number;
  lockTimeoutMs: number | undefined;
}

/** Everything that exists only while the store is open. */
interface Open {
  lib: KvLib;
  handle: Pointer;
  view: SegmentView;
  /** The same segment, each cell read under the lock: the fallback of reads writers keep overtaking. */
  locked: SegmentView;
  key: Buffer; // scratch: the current key's UTF-8 bytes (see OVERFLOW_ROOM)
  value: Buffer; // scratch: the current value's UTF-8 bytes
  out: Uint32Array; // a u64 out-parameter of the C calls, read as two words (no BigInt)
  /** The store evicts lru: reads record their access. */
  lru: boolean;
}

export class KvStore implements Disposable {
  #open: Open | undefined;
  #retries = 0;
  #identity: FileIdentity | undefined;
  readonly #reopen: Reopen;

  private constructor(
    readonly name: string,
    /** True when this open created the segment. */
    readonly created: boolean,
    open: Open,
    reopen: Reopen,
  ) {
    this.#open = open;
    this.#reopen = reopen;
  }

  /**
   * Open the store called `name` ("/name"). With `create`, make it when missing, with the given
   * geometry; an existing store keeps its own. Throws a KvError: ENOENT, EEXIST, EACCES,
   * INCOMPATIBLE, NOT_READY, INVALID_ARGUMENT, LIBRARY_MISSING, ...
   */
  static open(name: string, options: OpenOptions = {}): KvStore {
    const lib = kvLib();
    checkName(name);
    const opts = optionsOf(options, options.memoryBytes ? LIMITS.valueMaxMemory : LIMITS.valueMax);
    const out = new BigUint64Array(1);
    const cname = cString(name);
    const check = options.checkOwner ? KV_CHECK_OWNER : 0;
    // Open first, so we know whether this call is the one that created the segment.
    let created = false;
    let rc = options.exclusive ? -ENOENT : lib.kv_open(cname, check, opts, out);
    if (rc === -ENOENT && options.create) {
      rc = lib.kv_open(cname, KV_CREATE | KV_EXCL | check, opts, out);
      created = rc === 0;
      if (rc === -EEXIST && !options.exclusive) {
        // Another process created it between our two calls.
        rc = lib.kv_open(cname, check, opts, out);
      }
    }
    if (rc !== 0) failOpen(lib, rc, name);
    const reopen = { flags: check, lockTimeoutMs: options.lockTimeoutMs };
    return new KvStore(name, created, attach(lib, name, Number(out[0]) as Pointer, reopen), reopen);
  }

  /**
   * Give the store `name` a new geometry (kv_resize): a new segment takes its place with every entry,
   * revision and timestamp, the version and the recent changes; a field not given keeps the store's
   * own (memoryBytes too: every value moves into a heap of that size). Every process that has it
   * open follows on its next call. When the new geometry cannot hold the data, throws TABLE_FULL (too
   * many entries, or more bytes than memoryBytes), KEY_TOO_LONG or VALUE_TOO_LONG saying what does
   * not fit, and nothing changes. Blocks until the copy is done (writers wait for it; readers do not),
   * and first for the write lock, up to `options.lockTimeoutMs` (STORE_BUSY past it).
   */
  static resize(name: string, options: ResizeOptions): void {
    const lib = kvLib();
    checkName(name);
    // Its value limit is the library's to check: a store with memory takes longer values.
    const rc = lib.kv_resize(cString(name), optionsOf(options, LIMITS.valueMaxMemory, options.lockTimeoutMs));
    if (rc === 0) return;
    if (rc === RC.TABLE_FULL || rc === RC.KEY_TOO_LONG || rc === RC.VALUE_TOO_LONG) {
      throw new KvError(codeOf(rc), `cannot resize ${name}: ${misfit(name, rc, options)}; nothing changed`, rc);
    }
    if (rc === -EEXIST) {
      throw new KvError("EEXIST", `cannot resize ${name}: another store is called ${name}.resize, the name a resize builds its copy under`, rc);
    }
    fail(lib, rc, `cannot resize ${name}`);
  }

  /** Remove the name `name`. Processes that have it open keep their mapping. */
  static unlink(name: string): void {
    const lib = kvLib();
    checkName(name);
    const rc = lib.kv_unlink(cString(name));
    if (rc !== 0) fail(lib, rc, `cannot unlink ${name}`);
  }

  get closed(): boolean {
    return this.#open === undefined;
  }

  /**
   * Device and inode of the segment this handle maps, read from the mapping itself (Linux): after
   * following a resize, the new segment's. When a resize cannot be followed (its segment was unlinked
   * since), the segment the store still has: a watcher then sees the name lead elsewhere, never throws.
   */
  get identity(): FileIdentity | undefined {
    const open = this.#open;
    try {
      return this.#mapped(this.#live());
    } catch (error) {
      if (!open || !(error instanceof KvError)) throw error;
      return this.#mapped(open);
    }
  }

  get maxEntries(): number {
    return this.#live().view.layout.maxEntries;
  }

  /** The longest key, in UTF-8 bytes. */
  get keyMax(): number {
    return this.#live().view.layout.keyMax;
  }

  /** The longest value, in UTF-8 bytes. */
  get valueMax(): number {
    return this.#live().view.layout.valueMax;
  }

  /** Successful writes (sets and deletes) since the store was created. */
  get version(): number {
    return this.#committed().version;
  }

  get count(): number {
    return this.#committed().entryCount;
  }

  /** Times any process repaired the store after a writer died holding the lock. */
  get lockRecoveries(): number {
    return this.#live().view.lockRecoveries();
  }

  /** Bytes of the heap that holds keys and values. */
  get memoryBytes(): number {
    return this.#live().view.layout.heapSize;
  }

  /** The memoryBytes the store was made with; 0 when without (room for every entry at its largest). */
  get memoryOption(): number {
    return this.#live().view.layout.memoryBytes;
  }

  /** Bytes of the heap live entries hold, chunk heads and rounding included. */
  get memoryUsed(): number {
    return this.#live().view.memoryUsed();
  }

  /** The store's eviction policy (see KvOptions.evict). */
  get evict(): EvictPolicy {
    return this.#live().view.evictPolicy();
  }

  /** Milliseconds the write lock has been held by its current holder (any process); 0 when free. */
  get lockHeldMs(): number {
    const { lib, handle } = this.#live();
    return Number(lib.kv_lock_held_ms(handle));
  }

  /** The value of `key`, or undefined (also once it has expired). Never waits for the write lock. */
  get(key: string): string | undefined {
    return this.#lookup(key, readValue, (entry) => decoded(entry).value);
  }

  /** The value of `key` with its timestamp, revision and expiry, or undefined. */
  getEntry(key: string): KvEntry | undefined {
    return this.#lookup(key, readEntry, decoded);
  }

  /**
   * getEntry with the value's bytes as stored, for values that may not be UTF-8 text (a C writer
   * may store any bytes; getEntry would replace what does not decode).
   */
  getEntryBytes(key: string): KvBytesEntry | undefined {
    return this.#lookup(key, readEntryBytes, (entry) => entry);
  }

  /**
   * Insert or replace `key`, expiring after `options.ttl` milliseconds if given (else never: a set
   * clears an expiry). Returns the entry's new revision (the store's new version).
   */
  set(key: KvData, value: KvData, options?: WriteOptions): number {
    return this.#set(key, value, ANY_REVISION, options);
  }

  /**
   * Compare-and-set: write only when the entry is at `expectedRevision` (0: only when absent; an
   * expired entry is absent). Returns the new revision; otherwise throws a KvConflictError (CONFLICT,
   * with the revision found) and writes nothing. `options` as set's.
   */
  setIf(key: KvData, value: KvData, expectedRevision: number, options?: WriteOptions): number {
    return this.#set(key, value, BigInt(expectedRevision), options);
  }

  /** Remove `key`. Returns false when it was not there. */
  delete(key: KvData): boolean {
    return this.#delete(key, ANY_REVISION);
  }

  /**
   * Add `by` (default 1; negative subtracts) to the integer `key` holds, atomically across every
   * process, and return the new value. The value is kept as decimal digits (get reads "42"); a
   * missing (or expired) key counts as 0. `by` is a safe integer number or any int64 bigint; the
   * result is a bigint, exact over the whole int64 range. `options.ttl` applies only when the
   * increment creates the key: an existing counter keeps its expiry (as Redis INCR). Throws
   * NOT_A_NUMBER (the value is not such an integer), ERANGE (the sum leaves int64), and what set
   * throws; nothing is written then.
   */
  incr(key: string, by: number | bigint = 1, options?: WriteOptions): bigint {
    return this.increment(key, by, options).value;
  }

  /** Like incr, also giving the revision the increment gave the entry. */
  increment(key: string, by: number | bigint = 1, options?: WriteOptions): { value: bigint; revision: number } {
    const open = this.#live();
    const delta = int64Of(by);
    const ttl = ttlOf(options);
    const length = this.#encodeKey(open, key, false);
    const result = new BigInt64Array(1);
    const rc = open.lib.kv_incr_ttl(open.handle, open.key, length, delta, ttl, result, open.out);
    if (rc === RC.TABLE_FULL) throw this.#full(key, length + 20); // 20: the longest int64's digits
    if (rc !== 0) fail(open.lib, rc, `cannot increment ${quoted(key)} by ${delta}`);
    return { value: result[0]!, revision: revisionOf(open.out) };
  }

  /** Remove `key` only when it is at `expectedRevision`; throws a KvConflictError otherwise. */
  deleteIf(key: KvData, expectedRevision: number): boolean {
    return this.#delete(key, BigInt(expectedRevision));
  }

  /**
   * Mark the segment read-only for direct writers (a replica's), or writable again. While it is,
   * set, setIf, delete and deleteIf throw READ_ONLY, in every process; apply still writes.
   */
  setReadOnly(readOnly: boolean): void {
    const { lib, handle } = this.#live();
    const rc = lib.kv_set_readonly(handle, readOnly ? 1 : 0);
    if (rc !== 0) fail(lib, rc, `cannot mark ${this.name} ${readOnly ? "read-only" : "writable"}`);
  }

  /** True when the segment is marked read-only for direct writers (a replica's). */
  get readOnly(): boolean {
    const { lib, handle } = this.#live();
    return lib.kv_readonly(handle) !== 0;
  }

  /**
   * Write a change made elsewhere with its own revision, timestamp and expiry (Unix milliseconds, 0
   * for none; a set's only) (a replicator's or a restore's write): the store's version becomes
   * `revision`. Returns false, writing nothing, when the store is already at that revision or past
   * it. "expired" is a delete with reason "expired" (the entry's expiry passed where it was made);
   * "version" only moves the version.
   */
  apply(op: "set" | "delete" | "expired" | "version", key: KvData, value: KvData, revision: number, timestamp: number, expiresAt = 0): boolean {
    if (!Number.isSafeInteger(expiresAt) || expiresAt < 0) {
      throw new KvError("INVALID_ARGUMENT", `expiresAt must be Unix milliseconds (a whole number >= 0; 0 for none), not ${expiresAt}`, RC.INVALID_ARGUMENT);
    }
    const open = this.#live();
    const keyLength = op === "version" ? 0 : this.#encodeKey(open, key, false);
    const valueLength = op === "set" ? this.#encodeValue(open, value) : 0;
    const rc = open.lib.kv_apply(open.handle, APPLY_OPS[op], open.key, keyLength, open.value, valueLength, revision, timestamp, expiresAt);
    if (rc === RC.CONFLICT) return false;
    if (rc !== 0) fail(open.lib, rc, `cannot apply revision ${revision} to ${this.name}`);
    return true;
  }

  /**
   * Reclaim expired entries: look at up to `max` slots (1..2^32 - 1), from where the last look
   * stopped, going round, and delete those that have expired, each recorded as a delete with reason
   * "expired". Returns how many it reclaimed. An expired entry is absent to every reader already;
   * this frees its room and tells watchers. Takes the write lock within the handle's lock timeout
   * (STORE_BUSY when held longer: with lockTimeoutMs 0, it never waits).
   */
  expire(max = 1024): number {
    if (!Number.isInteger(max) || max < 1 || max > 2 ** 32 - 1) {
      throw new KvError("INVALID_ARGUMENT", `max must be an integer from 1 to ${2 ** 32 - 1}, not ${max}`, RC.INVALID_ARGUMENT);
    }
    const { lib, handle } = this.#live();
    const rc = lib.kv_expire(handle, max);
    if (rc < 0) fail(lib, rc, `cannot reclaim the expired entries of ${this.name}`);
    return rc;
  }

  /** Throw what a set of `key` to `value` (a delete, without a value) would throw for their sizes. */
  checkWrite(key: string, value?: string): void {
    const open = this.#live();
    this.#encodeKey(open, key, true);
    if (value !== undefined) this.#encodeValue(open, value);
  }

  /**
   * Version, counts and every entry in slot order. Each entry is read whole (never torn), and the
   * version and counts are those when the read began: every write up to that version is in the
   * entries, and writes made during the read may be too. Never waits for a writer.
   */
  status(): KvStatus {
    const { version, entryCount } = this.#committed();
    const { layout } = this.#live().view;
    const { items } = this.entriesFrom(0, Number.MAX_SAFE_INTEGER);
    return {
      version,
      entry_count: entryCount,
      max_entries: layout.maxEntries,
      key_max: layout.keyMax,
      value_max: layout.valueMax,
      memory_bytes: layout.heapSize,
      memory_used: this.memoryUsed,
      evict: this.evict,
      entries: items,
    };
  }

  /**
   * The keys from slot `from` on, in slot order: at most `limit` of them (only those starting with
   * `prefix`), and where the next page starts. An entry that stays in the store keeps its slot, so
   * paging by `next` neither skips nor repeats it, whatever is written between pages. `budget`
   * bounds the slots looked at (so a caller can cut a long scan into slices): a page that ran out
   * of it has `next` where it stopped, with fewer than `limit` items, maybe none.
   */
  keysFrom(from: number, limit: number, prefix = "", budget = Number.MAX_SAFE_INTEGER): KvPage<string> {
    return this.#page(from, limit, prefix, budget, (view, cell) => view.key(cell));
  }

  /** Like entriesFrom, with each key and value as the bytes stored (for a copy that loses nothing). */
  rawEntriesFrom(from: number, limit: number, budget = Number.MAX_SAFE_INTEGER): KvPage<KvRawEntry> {
    return this.#page(from, limit, "", budget, (view, cell) => view.rawEntry(cell));
  }

  /** Like keysFrom, with the whole entries. */
  entriesFrom(from: number, limit: number, prefix = "", budget = Number.MAX_SAFE_INTEGER): KvPage<KvEntry> {
    return this.#page(from, limit, prefix, budget, (view, cell) => view.entry(cell));
  }

  /** Counts, sizes and the lock's state (by every process), as /metrics reports them. O(1). */
  stats(): KvStats {
    const { version, entryCount } = this.#committed();
    const { view } = this.#live();
    const { layout } = view;
    return {
      version,
      entry_count: entryCount,
      max_entries: layout.maxEntries,
      segment_bytes: layout.totalSize,
      lock_recoveries: this.lockRecoveries,
      lock_held_ms: this.lockHeldMs,
      memory_bytes: layout.heapSize,
      memory_used: this.memoryUsed,
      evictions: view.evictedTotal(),
      expired: view.expiredTotal(),
      evict: view.evictPolicy(),
    };
  }

  /**
   * The changes made after revision `since`, by any process, as recorded in the change ring (the
   * last 256 writes). Lock-free. See src/feed.ts to follow them as they happen.
   */
  changesSince(since: number): KvChanges {
    return this.#changesSince(since, (view, revision) => view.change(revision));
  }

  /** changesSince, with each key and value as the bytes stored. */
  changeBytesSince(since: number): KvChanges<Uint8Array> {
    return this.#changesSince(since, (view, revision) => view.changeBytes(revision));
  }

  #changesSince<T>(since: number, read: (view: SegmentView, revision: number) => KvChangeOf<T> | "expired"): KvChanges<T> {
    const version = this.version;
    if (since >= version) return { version, changes: [], expired: false };
    if (version - since > RING_CELLS || since < 0) return { version, changes: [], expired: true };
    const changes: KvChangeOf<T>[] = [];
    const { view } = this.#live();
    for (let revision = since + 1; revision <= version; revision++) {
      const change = read(view, revision);
      if (change === "expired") return { version, changes, expired: true };
      changes.push(change);
    }
    return { version, changes, expired: false };
  }

  /** Lock-free reads that had to be retried because a write overlapped them (this process). */
  get readRetries(): number {
    return this.#retries;
  }

  /** Verify every invariant of the segment; throws CORRUPT naming the first broken one. */
  check(): void {
    const { lib, handle } = this.#live();
    const rc = lib.kv_check(handle);
    if (rc === RC.CORRUPT) {
      throw new KvError("CORRUPT", `${this.name} is corrupt: ${lib.kv_check_detail(handle)}`, rc);
    }
    if (rc !== 0) fail(lib, rc, `cannot check ${this.name}`);
  }

  /** Unmap the store (never unlinks). Idempotent; afterwards every other method throws CLOSED. */
  close(): void {
    const open = this.#open;
    if (!open) return;
    this.#open = undefined; // drop the views first: the memory behind them is about to go
    open.lib.kv_close(open.handle);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** The open store, moved on to the segment a resize put in place of this one, if any. */
  #live(): Open {
    const open = this.#open;
    if (!open) throw new KvError("CLOSED", `store ${this.name} is closed`);
    return open.view.flags() & (FLAG.superseded | FLAG.resizing) ? this.#follow(open) : open;
  }

  #mapped(open: Open): FileIdentity | undefined {
    this.#identity ??= mappedIdentity(Number(open.lib.kv_base(open.handle)));
    return this.#identity;
  }

  /**
   * Follow a resize (see "Following a resize" in the header): when the segment is marked superseded,
   * or is being resized and the name already leads to the copy, open the name again and use that.
   * The old handle is closed once the current call is over, never during it: a caller up the stack
   * may still hold its views, and reading an ArrayBuffer after munmap kills the process.
   */
  #follow(open: Open): Open {
    if (!(open.view.flags() & FLAG.superseded)) {
      const named = namedIdentity(this.name);
      const mapped = this.#mapped(open);
      if (!named || !mapped || (named.ino === mapped.ino && named.dev === mapped.dev)) return open;
    }
    const { lib } = open;
    const out = new BigUint64Array(1);
    const rc = lib.kv_open(cString(this.name), this.#reopen.flags, null, out);
    if (rc !== 0) failOpen(lib, rc, this.name);
    const next = attach(lib, this.name, Number(out[0]) as Pointer, this.#reopen);
    const was = this.#mapped(open);
    const now = mappedIdentity(Number(lib.kv_base(next.handle)));
    if (was && now && was.ino === now.ino && was.dev === now.dev) {
      lib.kv_close(next.handle); // nothing has read through its views yet
      throw new KvError("CORRUPT", `${this.name} is damaged: its header says a resize replaced it, but its name still leads to it`, RC.CORRUPT);
    }
    this.#open = next;
    this.#identity = now;
    queueMicrotask(() => lib.kv_close(open.handle));
    return this.#live();
  }

  /**
   * Find `key` and `read` its slot, lock-free, retrying while writes overlap; `read` gives
   * undefined for what cannot be a consistent entry, EXPIRED_ENTRY for an expired one (absent). A
   * write in progress (even a stopped one) is read around (#lookupDuringWrite). After READ_ATTEMPTS,
   * ask the library, which reads under the lock within the handle's lock timeout (and so also
   * repairs after a dead writer); `fromLocked` shapes its answer. In a store that evicts lru, a key
   * found records its access.
   */
  #lookup<T>(
    key: string,
    read: (view: SegmentView, slot: number, key: string) => T | undefined | ExpiredEntry,
    fromLocked: (entry: KvBytesEntry) => T,
  ): T | undefined {
    const open = this.#live();
    const length = this.#encodeKey(open, key, true);
    const hash = kvHash(open.key, length);
    const view = open.view;
    // Validated by the index's counter and the entry's own, not the store's: a write to another
    // key does not make this read retry.
    for (let attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
      const before = view.indexSeq();
      const slot = before & 1 ? -1 : view.find(open.key, length, hash);
      if (before & 1 || slot === TORN_SLOT) {
        // an insert or a delete is in progress (read around it, below), or a rewrite overlapped
      } else if (slot < 0) {
        if (view.indexSeq() === before) return undefined;
      } else {
        // Even: find() took it before comparing the key, so this validates the comparison too.
        const entryBefore = view.foundCounter;
        const result = read(view, slot, key);
        if (result !== undefined && view.entrySeq(slot) === entryBefore) {
          // Recorded before the index's counter is read again, which makes a copied entry's copy
          // stale: a mistaken record (the index moved meanwhile) is a harmless hint.
          if (open.lru && result !== EXPIRED_ENTRY) view.touch(slot);
          if (view.indexSeq() === before) return result === EXPIRED_ENTRY ? undefined : result;
        }
      }
      const around = lookupDuringWrite(view, open.key, length, hash, open.lru, (cell) => read(view, cell, key));
      if (around !== TORN) return around;
      this.#retries++;
    }
    const entry = this.#getLocked(open, key, length);
    return entry && fromLocked(entry);
  }

  /** The counters as of the last committed write (see SegmentView.committed). */
  #committed(): Committed {
    const { view } = this.#live();
    return this.#retrying(() => view.committed());
  }

  /**
   * `read` until no write overlaps it. When writers overtake it READ_ATTEMPTS times in a row, read
   * `underLock` instead, within the handle's lock timeout (STORE_BUSY when the lock is held longer).
   * Without one (the header's counters), ask the library to repair (a writer that died in the
   * middle of a write leaves its counters odd) and try again: STORE_BUSY when writers still keep
   * overtaking, CORRUPT when no write happened at all and the read still fails.
   */
  #retrying<T>(read: () => T | Torn, underLock?: () => T): T {
    const { view } = this.#live();
    for (let round = 0; round < 2; round++) {
      for (let attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
        const result = read();
        if (result !== TORN) return result;
        this.#retries++;
      }
      if (underLock) return underLock();
      if (round === 0) this.#repair();
    }
    const seq = view.seq();
    const result = read();
    if (result !== TORN) return result;
    if (view.seq() === seq) {
      throw new KvError("CORRUPT", `${this.name} is damaged: its counters say a write is in progress, and none is (check names the damage)`, RC.CORRUPT);
    }
    throw new KvError("STORE_BUSY", `cannot read ${this.name}: writers overtook every attempt`, RC.STORE_BUSY);
  }

  #repair(): void {
    const { lib, handle } = this.#live();
    const rc = lib.kv_repair(handle);
    if (rc !== 0) fail(lib, rc, `cannot read ${this.name} (the write lock has been held for ${this.lockHeldMs} ms)`);
  }

  #page<T>(
    from: number,
    limit: number,
    prefix: string,
    budget: number,
    read: (view: SegmentView, cell: number) => T | undefined | ExpiredEntry,
  ): KvPage<T> {
    if (!Number.isInteger(from) || from < 0 || !Number.isInteger(limit) || limit < 1 || typeof prefix !== "string" || !(budget >= 1)) {
      throw new KvError("INVALID_ARGUMENT", "from must be an integer >= 0, limit an integer >= 1, prefix a string, budget >= 1");
    }
    const { version, entryCount } = this.#committed();
    const { view, locked } = this.#live();
    const bytes = utf8.encode(prefix);
    const items: T[] = [];
    const high = view.highWater();
    const end = Math.min(high, from + budget);
    const readMatch = (v: SegmentView, cell: number) => (v.hasPrefix(cell, bytes) ? read(v, cell) : undefined);
    const readLive = (cell: number) => readMatch(view, cell);
    for (let slot = from; slot < end; slot++) {
      const item = this.#retrying(
        () => view.readSlot(slot, readLive),
        () => {
          locked.memory.renew();
          return readMatch(locked, slot);
        },
      );
      if (item === undefined || item === EXPIRED_ENTRY) continue;
      if (items.length === limit) return { version, entry_count: entryCount, items, next: slot };
      items.push(item);
    }
    return { version, entry_count: entryCount, items, next: end < high ? end : undefined };
  }

  /** The key's bytes into the scratch buffer (a get allocates only the string it returns); returns their count. */
  #encodeKey(open: Open, key: KvData, validate: boolean): number {
    const written = encodeInto(open.key, key, open.view.layout.keyMax, "key");
    if (written > open.view.layout.keyMax) {
      throw new KvError("KEY_TOO_LONG", `key longer than ${open.view.layout.keyMax} bytes`, RC.KEY_TOO_LONG);
    }
    // The C library checks these on writes; reads never reach it.
    if (validate && (written === 0 || (typeof key === "string" ? key.includes("\0") : key.includes(0)))) {
      throw new KvError("INVALID_ARGUMENT", "the key must be non-empty and hold no NUL byte", RC.INVALID_ARGUMENT);
    }
    return written;
  }

  #encodeValue(open: Open, value: KvData): number {
    const written = encodeInto(open.value, value, open.view.layout.valueMax, "value");
    if (written > open.view.layout.valueMax) {
      throw new KvError("VALUE_TOO_LONG", `value longer than ${open.view.layout.valueMax} bytes`, RC.VALUE_TOO_LONG);
    }
    return written;
  }

  #set(key: KvData, value: KvData, expected: bigint, options: WriteOptions | undefined): number {
    const open = this.#live();
    const ttl = ttlOf(options);
    const keyLength = this.#encodeKey(open, key, false);
    const valueLength = this.#encodeValue(open, value);
    const rc = open.lib.kv_set_if_ttl(open.handle, open.key, keyLength, open.value, valueLength, expected, ttl, open.out);
    if (rc === RC.CONFLICT) throw conflict("set", key, expected, open.out);
    if (rc === RC.TABLE_FULL) throw this.#full(key, keyLength + valueLength);
    if (rc !== 0) fail(open.lib, rc, `cannot set ${quoted(key)}`);
    return revisionOf(open.out);
  }

  /** The TABLE_FULL of a write of `bytes` of key and value: which limit it met, and how to grow it. */
  #full(key: KvData, bytes: number): KvError {
    const { layout } = this.#live().view;
    const why =
      this.count >= layout.maxEntries && this.get(typeof key === "string" ? key : Buffer.from(key).toString("utf8")) === undefined
        ? `all ${layout.maxEntries} entries are in use; grow it with shmkv resize --name ${this.name} --max-entries ${2 * layout.maxEntries}`
        : `its memory has no room for ${bytes} more bytes (${this.memoryUsed} of ${layout.heapSize} in use); ` +
          `grow it with shmkv resize --name ${this.name} --memory ${Math.max(2 * layout.heapSize, LIMITS.memoryMin)}`;
    return new KvError("TABLE_FULL", `cannot set ${quoted(key)}: the store is full: ${why}`, RC.TABLE_FULL);
  }

  #delete(key: KvData, expected: bigint): boolean {
    const open = this.#live();
    const length = this.#encodeKey(open, key, false);
    const rc = open.lib.kv_delete_if(open.handle, open.key, length, expected, open.out);
    if (rc === RC.NOT_FOUND) return false;
    if (rc === RC.CONFLICT) throw conflict("delete", key, expected, open.out);
    if (rc !== 0) fail(open.lib, rc, `cannot delete ${quoted(key)}`);
    return true;
  }

  /** The read under the lock, for when writers overlap every lock-free attempt. */
  #getLocked(open: Open, key: string, length: number): KvBytesEntry | undefined {
    const { lib, handle } = open;
    // kv_meta, as words: u64 value_len, i64 timestamp, u64 revision, u64 expires_at_ms.
    const meta = new Uint32Array(8);
    const rc = lib.kv_get_meta(handle, open.key, length, open.value, open.value.length, meta);
    if (rc === RC.NOT_FOUND) return undefined;
    if (rc !== 0) fail(lib, rc, `cannot get ${quoted(key)}`);
    const entry: KvBytesEntry = {
      key,
      value: new Uint8Array(open.value.subarray(0, meta[0]!)), // a copy: the scratch is reused
      timestamp: meta[2]! + (meta[3]! | 0) * 2 ** 32,
      revision: u64Of(meta, 4),
    };
    const expiresAt = u64Of(meta, 6);
    if (expiresAt !== 0) entry.expiresAt = expiresAt;
    return entry;
  }
}

/**
 * A lookup while a write is in progress (an odd counter): valid while the store's counter stays at
 * its odd value, as the header's "Reading without the lock" tells. The key's slot is read from the
 * undo record while the write to it is uncommitted. Absence is trusted only when the index is not
 * being changed (a delete moves its cells). Gives what `read` gives, undefined for absent, or TORN.
 */
function lookupDuringWrite<T>(
  view: SegmentView,
  key: Uint8Array,
  length: number,
  hash: number,
  lru: boolean,
  read: (cell: number) => T | undefined | ExpiredEntry,
): T | undefined | Torn {
  const seq = view.seq();
  if (!(seq & 1)) return TORN;
  const index = view.indexSeq();
  const slot = view.find(key, length, hash, true);
  let result: T | undefined | Torn = TORN;
  if (slot >= 0) {
    const cell = view.cellOf(slot);
    // The undo record's copy of a slot an insert is filling is a free slot: the key is absent.
    const found = view.keyLength(cell) === 0 ? undefined : (read(cell) ?? TORN);
    result = found === EXPIRED_ENTRY ? undefined : found;
    if (lru && result !== undefined && result !== TORN) view.touch(slot);
  } else if (!(index & 1)) {
    result = undefined;
  }
  return view.seq() === seq && view.indexSeq() === index ? result : TORN;
}

/** The value in a slot: what get() reads (the only string it decodes). */
function readValue(view: SegmentView, slot: number): string | undefined | ExpiredEntry {
  return view.value(slot);
}

function readEntry(view: SegmentView, slot: number, key: string): KvEntry | undefined | ExpiredEntry {
  return view.entry(slot, key);
}

/**
 * `data` into a scratch buffer (which has OVERFLOW_ROOM beyond `max`); returns its byte count, which is
 * over `max` when it does not fit. Buffer#write, unlike TextEncoder#encodeInto, allocates nothing.
 */
function encodeInto(scratch: Buffer, data: KvData, max: number, what: string): number {
  if (typeof data === "string") return scratch.write(data);
  if (!(data instanceof Uint8Array)) throw new KvError("INVALID_ARGUMENT", `the ${what} must be a string or bytes`);
  if (data.length > max) return data.length;
  scratch.set(data);
  return data.length;
}

/** A key as messages quote it: JSON text (bytes as their UTF-8 reading). */
function quoted(key: KvData): string {
  return JSON.stringify(typeof key === "string" ? key : Buffer.from(key).toString("utf8"));
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** An increment as int64: a safe integer number or a bigint within int64; INVALID_ARGUMENT otherwise. */
export function int64Of(by: number | bigint): bigint {
  if (typeof by === "number" && Number.isSafeInteger(by)) return BigInt(by);
  if (typeof by === "bigint" && by >= INT64_MIN && by <= INT64_MAX) return by;
  throw new KvError("INVALID_ARGUMENT", `an increment must be an integer within int64 (as a number, within ±(2^53 − 1)), not ${String(by)}`, RC.INVALID_ARGUMENT);
}

function readEntryBytes(view: SegmentView, slot: number, key: string): KvBytesEntry | undefined | ExpiredEntry {
  return view.entryBytes(slot, key);
}

/** An entry read as bytes, its value decoded as UTF-8 text (what does not decode becomes U+FFFD). */
function decoded(entry: KvBytesEntry): KvEntry {
  return { ...entry, value: Buffer.from(entry.value.buffer, entry.value.byteOffset, entry.value.byteLength).toString("utf8") };
}

/** The u64 (within 2^53) in words `at` (low) and `at + 1` (high). */
function u64Of(words: Uint32Array, at: number): number {
  return words[at]! + words[at + 1]! * 4294967296;
}

function revisionOf(out: Uint32Array): number {
  return u64Of(out, 0);
}

/** The CONFLICT of a conditional write, with the revision the library found (in `out`). */
function conflict(action: string, key: KvData, expected: bigint, out: Uint32Array): KvConflictError {
  const found = revisionOf(out);
  const state = found === 0 ? "it does not exist" : expected === 0n ? `it exists (revision ${found})` : `it is at revision ${found}`;
  const wanted = expected === 0n ? "" : ` (expected revision ${expected})`;
  return new KvConflictError(`cannot ${action} ${quoted(key)}: ${state}${wanted}`, found);
}

/** Views of the segment a handle maps (the one it was opened on, whatever resizes come later). */
function attach(lib: KvLib, name: string, handle: Pointer, reopen: Reopen): Open {
  if (reopen.lockTimeoutMs !== undefined) lib.kv_set_lock_timeout(handle, Math.min(Math.trunc(reopen.lockTimeoutMs), INT32_MAX));
  // A store made without memory_bytes has every chunk one size (the header says which).
  const fixedChunk = readPointer.u32(lib.kv_base(handle)!, HEADER.fixedChunk);
  const layout = layoutOf({
    maxEntries: lib.kv_max_entries(handle),
    keyMax: lib.kv_key_max(handle),
    valueMax: lib.kv_value_max(handle),
    memoryBytes: fixedChunk ? 0 : Number(lib.kv_memory_bytes(handle)),
  });
  const memory = memoryOf(lib, handle, layout);
  const view = memory && new SegmentView(memory, layout);
  if (!view || !view.matches(layout)) {
    lib.kv_close(handle);
    throw new KvError("INCOMPATIBLE", `cannot open ${name}: the mapping disagrees with its geometry`, RC.INCOMPATIBLE);
  }
  const locked = new SegmentView(new LockedMemory(memory, layout, lib, handle, (rc) => fail(lib, rc, `cannot read ${name}`)), layout);
  return {
    lib,
    handle,
    view,
    locked,
    key: Buffer.alloc(layout.keyMax + OVERFLOW_ROOM),
    value: Buffer.alloc(layout.valueMax + OVERFLOW_ROOM),
    out: new Uint32Array(2),
    lru: view.evictPolicy() === "lru",
  };
}

/** What of the store `name` a resize to `options` could not hold, for the error that refuses it. */
function misfit(name: string, rc: number, options: KvOptions): string {
  using store = KvStore.open(name);
  const { items } = store.rawEntriesFrom(0, Number.MAX_SAFE_INTEGER);
  if (rc === RC.TABLE_FULL) {
    if (options.maxEntries !== undefined && store.count > options.maxEntries) {
      return `it holds ${store.count} entries, more than max_entries ${options.maxEntries}`;
    }
    // Else its bytes: only a memory given to the resize can be too small (the store's own holds them).
    const needed = items.reduce((sum, entry) => sum + chunkBytes(entry.key.length + entry.value.length), 0);
    return `its entries need ${needed} bytes of memory (chunk heads and rounding included), more than --memory ${options.memoryBytes}`;
  }
  let longest = 0;
  for (const entry of items) longest = Math.max(longest, (rc === RC.KEY_TOO_LONG ? entry.key : entry.value).length);
  return rc === RC.KEY_TOO_LONG
    ? `its longest key is ${longest} bytes, more than key_max ${options.keyMax}`
    : `its longest value is ${longest} bytes, more than value_max ${options.valueMax}`;
}

function failOpen(lib: KvLib, rc: number, name: string): never {
  if (rc === -EACCES) {
    throw new KvError(
      "EACCES",
      `permission denied opening /dev/shm${name}: run as its owner, or have its owner widen its mode ` +
        `(e.g. chmod 0660 /dev/shm${name} and share its group)`,
      rc,
    );
  }
  if (rc === RC.UNTRUSTED) throw new KvError("UNTRUSTED", untrustedMessage(name), rc);
  if (rc === RC.INCOMPATIBLE && layoutVersionOf(name) === 1) {
    throw new KvError(
      "INCOMPATIBLE",
      `cannot open ${name}: it is a store of layout 1, made by an older shmkv; this one reads layout 2 ` +
        `(values in a heap). Dump it with the shmkv that made it (shmkv dump FILE --name ${name}), ` +
        `unlink it (rm /dev/shm${name}), and restore it with this one (shmkv restore FILE --name ${name})`,
      rc,
    );
  }
  fail(lib, rc, `cannot open ${name}`);
}

/** The layout version a shmkv segment's header states, or undefined (not one, or unreadable). */
function layoutVersionOf(name: string): number | undefined {
  const head = new Uint32Array(2);
  try {
    const fd = openSync(`/dev/shm${name}`, "r");
    try {
      if (readSync(fd, head, 0, 8, 0) !== 8) return undefined;
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
  return head[HEADER.magic / 4] === MAGIC ? head[HEADER.layoutVersion / 4] : undefined;
}
