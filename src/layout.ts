/**
 * The segment's layout as csrc/shared_memory_kv.h documents it, and a bounds-checked reader over it.
 *
 * A SegmentView reads either the live segment (lock-free, so what it reads may be torn until the
 * caller validates it with the seqlock) or a snapshot copied under the lock, through a SegmentMemory
 * (views of it all, or copies of one entry at a time: see src/segment-memory.ts). Every offset it follows
 * is derived from the geometry validated at open, never from bytes in the segment, so a torn or
 * hostile segment can yield wrong data (caught by validation) but never a read out of bounds.
 */
/** Byte offsets of the header's fields. */
export const HEADER = {
  magic: 0,
  layoutVersion: 4,
  ready: 8,
  headerSize: 12,
  mutexSize: 16,
  maxEntries: 20,
  keyMax: 24,
  valueMax: 28,
  entrySize: 32,
  indexCells: 36,
  entriesOff: 40,
  totalSize: 48,
  seq: 56,
  entryCount: 60,
  version: 64,
  freeHead: 72,
  highWater: 76,
  lockRecoveries: 80,
  created: 88,
  ringOff: 96,
  ringCells: 104,
  indexSeq: 108,
  lockSince: 112,
  flags: 120,
  undoState: 192,
  undoSlot: 196,
  undoEntryCount: 200,
  undoVersion: 216,
  heapOff: 224,
  heapSize: 232,
  memoryUsed: 240,
  heapFree: 248,
  fixedChunk: 256,
  ringCellSize: 260,
  ringData: 264,
  heapClasses: 268,
  compactions: 272,
  /** The eviction policy (EVICT): 0 or 1 none, 2 lru. 0 in a store made before eviction. */
  evictPolicy: 536,
  /** Entries reclaimed because they expired, and evicted to make room (u64 each, ever, this segment). */
  expiredTotal: 544,
  evictedTotal: 552,
} as const;

/** The header's eviction policies (KV_EVICT_NONE, KV_EVICT_LRU); 0, a store made before them, is none. */
export const EVICT = { none: 1, lru: 2 } as const;
export type EvictPolicy = keyof typeof EVICT;

/** Byte offsets of an entry's fields, from the start of its slot. */
export const ENTRY = {
  keyLen: 0,
  valueLen: 4,
  hash: 8,
  /** Free slots: the next free slot + 1. Live ones: the entry's own seqlock counter. */
  nextFree: 12,
  seq: 12,
  timestamp: 16,
  revision: 24,
  /** Offset of its chunk from the heap's start; the key and value follow the chunk's head. */
  chunk: 32,
  chunkSize: 40,
  /** The time of its last write or read (when the store evicts lru): Unix milliseconds >> 4, mod 2^32. */
  lastAccess: 44,
  /** Unix milliseconds at which it expires (u64); 0: never. */
  expiresAt: 48,
} as const;

/** Bytes of every slot; a copy of a cell (kv_copy_cell) has the entry's key and value after them. */
export const ENTRY_SIZE = 64;
/** Bytes of a heap chunk's head, before its key and value. */
export const CHUNK_HEAD = 8;
const CHUNK_ALIGN = 16;
const CHUNK_MIN = 32;
const HEADER_SIZE = 640;
/** Key + value bytes a ring cell keeps when the store has memory_bytes (KV_RING_DATA_MAX). */
const RING_DATA_MAX = 3040;

/** Byte offsets of a change record's fields, from the start of its cell. */
export const CHANGE = {
  revision: 0,
  timestamp: 8,
  op: 16,
  keyLen: 20,
  valueLen: 24,
  /** CHANGE_FLAG's bits. */
  flags: 28,
  data: 32,
} as const;

/** Bits of a change record's flags. */
export const CHANGE_FLAG = {
  /** The change was too big for the cell, which keeps its lengths only (KV_CHANGE_UNKEPT). */
  unkept: 1,
  /** A set with an expiry: its 8 bytes (u64 little-endian, unaligned) follow the value (KV_CHANGE_EXPIRES). */
  expires: 2,
} as const;

/** Bits of the header's flags word. */
export const FLAG = {
  readOnly: 1,
  /** A resize put a copy in place of the segment: open the name again. */
  superseded: 2,
  /** A resize is copying the segment; once its copy is renamed over the name, it takes over. */
  resizing: 4,
} as const;

/** KV_RING_CELLS: how many recent changes the ring keeps. */
export const RING_CELLS = 256;
/** A change record's ops (KV_CHANGE_*): a set, and the three kinds of delete. */
export const OP = { set: 1, delete: 2, expired: 3, evicted: 4 } as const;

/** Where the undo record keeps its copy of the entry a write in progress changes. */
export const UNDO_ENTRY_OFF = 576;
/** The cell number, for SegmentMemory.open, of that copy. */
export const UNDO_CELL = -2;
const UNDO_ARMED = 1;

/** What find() gives when a rewrite overlapped its comparison of a key: it must be retried. */
export const TORN_SLOT = -2;

/**
 * What a read of an entry gives when the entry has expired (its expires_at has passed): absent, once
 * the read is validated like any other.
 */
export const EXPIRED_ENTRY = Symbol("expired entry");
export type ExpiredEntry = typeof EXPIRED_ENTRY;

/** What a read gives when a write overlapped it: it must be retried. */
export const TORN = Symbol("torn");
export type Torn = typeof TORN;

/** The store's counters as of its last committed write. */
export interface Committed {
  version: number;
  entryCount: number;
}

const TWO_32 = 4294967296;

export interface Geometry {
  maxEntries: number;
  keyMax: number;
  valueMax: number;
  /** Bytes of the heap; 0 (the default): room for maxEntries + 1 of the largest entries, every chunk that size. */
  memoryBytes?: number;
}

/** Sizes derived from a geometry, computed exactly as the C library does. */
export interface Layout extends Required<Geometry> {
  headerSize: number;
  entrySize: number;
  indexCells: number;
  entriesOff: number;
  ringOff: number;
  /** Bytes of a change-ring cell, and the key + value bytes it keeps. */
  ringCell: number;
  ringData: number;
  /** The size of every chunk (a store made without memoryBytes), else 0. */
  fixedChunk: number;
  heapOff: number;
  heapSize: number;
  totalSize: number;
}

const alignUp = (v: number, a: number) => Math.ceil(v / a) * a;

/** The chunk that holds `bytes` of key and value, its head included (chunk_bytes in C). */
export function chunkBytes(bytes: number): number {
  return Math.max(CHUNK_MIN, alignUp(CHUNK_HEAD + bytes, CHUNK_ALIGN));
}

export function layoutOf(geometry: Geometry): Layout {
  const g = { memoryBytes: 0, ...geometry };
  let indexCells = 1;
  while (indexCells < 2 * g.maxEntries) indexCells *= 2;
  const entriesOff = alignUp(HEADER_SIZE + 4 * indexCells, 64);
  const ringOff = entriesOff + g.maxEntries * ENTRY_SIZE;
  const largest = chunkBytes(g.keyMax + g.valueMax);
  const fixedChunk = g.memoryBytes ? 0 : largest;
  const heapSize = g.memoryBytes ? g.memoryBytes - (g.memoryBytes % CHUNK_ALIGN) : (g.maxEntries + 1) * largest;
  const ringData = g.memoryBytes ? Math.min(g.keyMax + g.valueMax, RING_DATA_MAX) : g.keyMax + g.valueMax;
  const ringCell = alignUp(CHANGE.data + ringData, 8);
  const heapOff = alignUp(ringOff + RING_CELLS * ringCell, 64);
  return {
    ...g,
    headerSize: HEADER_SIZE,
    entrySize: ENTRY_SIZE,
    indexCells,
    entriesOff,
    ringOff,
    ringCell,
    ringData,
    fixedChunk,
    heapOff,
    heapSize,
    totalSize: heapOff + heapSize,
  };
}

/** Bytes a copy of one cell takes (kv_copy_cell, kv_read_cell): an entry, its key and its value. */
export function cellBytes(layout: Layout): number {
  return alignUp(ENTRY_SIZE + layout.keyMax + layout.valueMax, 8); // whole words for the u32 view
}

/** kv_hash: 32-bit FNV-1a over the bytes, then the murmur3 finaliser. */
export function kvHash(bytes: Uint8Array, length = bytes.length): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** How a SegmentView reaches the segment's bytes (the implementations are in src/segment-memory.ts). */
export interface SegmentMemory {
  /** The header's words. */
  readonly head: Uint32Array;
  /** What `open` makes a cell readable in. */
  readonly u8: Uint8Array;
  readonly u32: Uint32Array;
  /**
   * Where, in u8, the key and value of the entry opened at `at` are, given the low word of its
   * chunk's offset (the chunk already checked to lie within the heap): in the heap, which a view
   * reaches only below 4 GiB, or after the entry in a copy.
   */
  dataAt(at: number, chunkLow: number): number;
  /** Index cell `pos`: 0 when empty, else slot + 1. */
  indexCell(pos: number): number;
  /**
   * Make a cell readable: slot `cell` when below maxEntries, else ring cell `cell - maxEntries`, and
   * UNDO_CELL for the undo record's copy of an entry. Returns the byte offset in u8/u32 where the
   * cell starts.
   */
  open(cell: number): number;
  /** The own counter of the entry in slot `cell` (odd while it is written), as `open` reads it. */
  counter(cell: number): number;
  /** A new read begins (or ends): nothing read before may be reused. */
  renew(): void;
  /**
   * Record a read of the entry in slot `cell` at `tick` (ENTRY.lastAccess) unless it holds that tick
   * already: a relaxed store under no counter, only a hint for eviction. The slot must have just been
   * opened and validated.
   */
  touch(cell: number, tick: number): void;
}

/** A write recorded in the segment's change ring, by whichever process made it; key and value as T. */
export interface KvChangeOf<T> {
  revision: number;
  op: "set" | "delete";
  key: T;
  /** The value set; absent for a delete. */
  value?: T;
  timestamp: number;
  /** A delete the store made itself: the entry had expired, or was evicted to make room. Absent otherwise. */
  reason?: "expired" | "evicted";
  /** A set with an expiry: when the entry expires, in Unix milliseconds. */
  expiresAt?: number;
}

/** A change with its key and value as text. */
export type KvChange = KvChangeOf<string>;

/** One entry: its key, value, the time of its last write (Unix seconds), its revision and its expiry. */
export interface KvEntry {
  key: string;
  value: string;
  timestamp: number;
  revision: number;
  /** When it expires, in Unix milliseconds; absent when it never does. */
  expiresAt?: number;
}

/** An entry whose value is its bytes as stored, for a value that may not be UTF-8 text (written from C). */
export interface KvBytesEntry {
  key: string;
  value: Uint8Array;
  timestamp: number;
  revision: number;
  /** When it expires, in Unix milliseconds; absent when it never does. */
  expiresAt?: number;
}

/** An entry with its key and value as the bytes stored (neither need be UTF-8): for a copy that loses nothing. */
export interface KvRawEntry {
  key: Uint8Array;
  value: Uint8Array;
  timestamp: number;
  revision: number;
  /** When it expires, in Unix milliseconds; absent when it never does. */
  expiresAt?: number;
}

export class SegmentView {
  readonly #head: Uint32Array; // the header's words
  // Where memory.open() makes a cell readable.
  readonly #u8: Uint8Array;
  readonly #u32s: Uint32Array;
  // Strings are decoded from a copy in this small buffer.
  readonly #scratch: Buffer;
  readonly #mask: number;
  // The lengths #data last checked, so that what is decoded is what was bounds-checked.
  #keyLen = 0;
  #valueLen = 0;
  // The geometry #data checks against, as fields: it runs on every lookup.
  readonly #keyMax: number;
  readonly #valueMax: number;
  readonly #heapSize: number;
  /** The entry counter find() read before the comparison that found its slot: validate by it. */
  foundCounter = 0;
  // Where find() found the key's bytes, so that reading the value there does not check the chunk
  // again: valid for that slot until the next read begins (seq(), indexSeq()).
  #foundSlot = -1;
  #foundAt = 0;
  #foundData = 0;
  #foundValueLen = 0;

  constructor(
    /** The live segment, or a snapshot of it. */
    readonly memory: SegmentMemory,
    readonly layout: Layout,
  ) {
    this.#head = memory.head;
    this.#u8 = memory.u8;
    this.#u32s = memory.u32;
    this.#scratch = Buffer.allocUnsafe(Math.max(layout.keyMax, layout.valueMax));
    this.#mask = layout.indexCells - 1;
    this.#keyMax = layout.keyMax;
    this.#valueMax = layout.valueMax;
    this.#heapSize = layout.heapSize;
  }

  /**
   * The store's seqlock counter, read atomically so no JIT can hoist it out of a retry loop. Reading
   * a counter begins or ends a read, so entries read before it are read afresh after it.
   */
  seq(): number {
    this.memory.renew();
    this.#foundSlot = -1;
    return Atomics.load(this.#head, HEADER.seq / 4);
  }

  /** The counter of the index and the slots' keys (inserts, deletes, repairs); see seq(). */
  indexSeq(): number {
    this.memory.renew();
    this.#foundSlot = -1;
    return Atomics.load(this.#head, HEADER.indexSeq / 4);
  }

  /** A live entry's own counter (rewrites of its value). */
  entrySeq(slot: number): number {
    return this.memory.counter(slot);
  }

  #u32(at: number): number {
    return this.#u32s[at >>> 2]!;
  }

  #u64(at: number): number {
    return this.#u32(at) + this.#u32(at + 4) * TWO_32;
  }

  #headU64(byteOffset: number): number {
    return this.#head[byteOffset / 4]! + this.#head[byteOffset / 4 + 1]! * TWO_32;
  }

  /** Header fields as they stand (unvalidated). */
  version(): number {
    return this.#headU64(HEADER.version);
  }

  entryCount(): number {
    return this.#head[HEADER.entryCount / 4]!;
  }

  highWater(): number {
    return Math.min(this.#head[HEADER.highWater / 4]!, this.layout.maxEntries);
  }

  lockRecoveries(): number {
    return this.#headU64(HEADER.lockRecoveries);
  }

  /** The header's flags (FLAG), as the last writer published them. */
  flags(): number {
    return Atomics.load(this.#head, HEADER.flags / 4);
  }

  /** Bytes of the heap live entries hold (a write in progress may be counted or not). */
  memoryUsed(): number {
    return this.#headU64(HEADER.memoryUsed);
  }

  /** The store's eviction policy. */
  evictPolicy(): EvictPolicy {
    return this.#head[HEADER.evictPolicy / 4] === EVICT.lru ? "lru" : "none";
  }

  /** Entries reclaimed because they expired, ever (as it stands). */
  expiredTotal(): number {
    return this.#headU64(HEADER.expiredTotal);
  }

  /** Entries evicted to make room, ever (as it stands). */
  evictedTotal(): number {
    return this.#headU64(HEADER.evictedTotal);
  }

  /**
   * The version and entry count as of the last committed write, or TORN when a write began or ended
   * meanwhile. Never waits for a writer: while one is in the middle of a write (even one stopped
   * there), its armed undo record holds the counters from before it.
   */
  committed(): Committed | Torn {
    const seq = this.seq();
    const undone = (seq & 1) === 1 && this.#undoArmed();
    const version = undone ? this.#headU64(HEADER.undoVersion) : this.version();
    const entryCount = this.#head[(undone ? HEADER.undoEntryCount : HEADER.entryCount) / 4]!;
    return this.seq() === seq ? { version, entryCount } : TORN;
  }

  /**
   * `read` applied to slot `slot` as of the last committed write, or TORN when a write overlapped.
   * `read` is given the cell to read: the slot itself, or UNDO_CELL while an uncommitted write to the
   * slot is in progress (the undo record's copy is the slot as it was). So a write in progress, even
   * one whose writer is stopped, makes no reader wait: every other slot is as it stands, and this one
   * is in the record. An entry is validated by the index's counter (inserts and deletes) and its own
   * (rewrites of its value), so writes to other keys' values do not disturb it.
   */
  readSlot<T>(slot: number, read: (cell: number) => T): T | Torn {
    const index = this.indexSeq();
    if (!(index & 1)) {
      if (this.keyLength(slot) === 0) {
        const free = read(slot);
        return this.indexSeq() === index ? free : TORN;
      }
      const counter = this.entrySeq(slot);
      if (!(counter & 1)) {
        const entry = read(slot);
        return this.entrySeq(slot) === counter && this.indexSeq() === index ? entry : TORN;
      }
    }
    return this.#duringWrite(slot, read);
  }

  /** readSlot while a write is in progress: valid while the store's counter stays at its odd value. */
  #duringWrite<T>(slot: number, read: (cell: number) => T): T | Torn {
    const seq = this.seq();
    if (!(seq & 1)) return TORN; // it has just ended: read again the usual way
    const result = read(this.cellOf(slot));
    return this.seq() === seq ? result : TORN;
  }

  /**
   * The cell that holds slot `slot` as of the last committed write: the undo record's copy while a
   * write to it is armed, else the slot. For a caller that validates with seq(), odd, unchanged.
   */
  cellOf(slot: number): number {
    return slot === this.#head[HEADER.undoSlot / 4] && this.#undoArmed() ? UNDO_CELL : slot;
  }

  #undoArmed(): boolean {
    return Atomics.load(this.#head, HEADER.undoState / 4) === UNDO_ARMED;
  }

  /** The key length in a cell: 0 for a free slot. */
  keyLength(cell: number): number {
    return this.#u32(this.memory.open(cell) + ENTRY.keyLen);
  }

  /** Whether the `length` bytes at `at` equal the first `length` of `bytes`. */
  #equals(at: number, bytes: Uint8Array, length: number): boolean {
    const u8 = this.#u8;
    for (let i = 0; i < length; i++) if (u8[at + i] !== bytes[i]) return false;
    return true;
  }

  /**
   * Where the key and value of the entry opened at `at` are (see SegmentMemory.dataAt), or -1 when
   * its chunk and lengths do not fit the heap: bytes anyone can write are checked before followed.
   */
  #data(at: number): number {
    // The offset's two words apart: an index computed from a double makes every access through it
    // slow, and a heap that can be viewed is far below 4 GiB (its high word is 0).
    const low = this.#u32(at + ENTRY.chunk);
    const high = this.#u32(at + ENTRY.chunk + 4);
    const keyLen = (this.#keyLen = this.#u32(at + ENTRY.keyLen));
    const valueLen = (this.#valueLen = this.#u32(at + ENTRY.valueLen));
    if (keyLen > this.#keyMax || valueLen > this.#valueMax) return -1;
    const end = (high === 0 ? low : low + high * TWO_32) + CHUNK_HEAD + keyLen + valueLen;
    return end > this.#heapSize ? -1 : this.memory.dataAt(at, low);
  }

  /**
   * The slot holding key (its first `length` bytes), -1 when absent, or TORN_SLOT when a rewrite
   * overlapped a comparison: a key lives in its entry's chunk, which a rewrite replaces under the
   * entry's own counter, so each comparison is validated by it. A comparison that fails is
   * validated here; the one that finds the key, by the caller, against foundCounter, after it has
   * read the entry (one validation covers both). Bounded, whatever the index holds.
   * `duringWrite`: the caller validates by the store's counter, odd and unchanged (no chunk is
   * freed while it is odd), so an entry's odd counter does not matter.
   */
  find(key: Uint8Array, length: number, hash: number, duringWrite = false): number {
    const maxEntries = this.layout.maxEntries;
    let pos = hash & this.#mask;
    for (let n = 0; n <= this.#mask; n++, pos = (pos + 1) & this.#mask) {
      const cell = this.memory.indexCell(pos);
      if (cell === 0) return -1;
      const slot = cell - 1;
      if (slot >= maxEntries) continue;
      const at = this.memory.open(slot);
      if (this.#u32(at + ENTRY.hash) !== hash || this.#u32(at) !== length) continue;
      const counter = this.memory.counter(slot);
      const data = this.#data(at);
      const same = data >= 0 && this.#keyLen === length && this.#equals(data, key, length);
      if (same && (duringWrite || !(counter & 1))) {
        this.foundCounter = counter;
        this.#foundSlot = slot;
        this.#foundAt = at;
        this.#foundData = data + length;
        this.#foundValueLen = this.#valueLen;
        return slot;
      }
      if (!duringWrite && (counter & 1 || this.memory.counter(slot) !== counter)) return TORN_SLOT;
    }
    return -1;
  }

  /**
   * When the entry opened at `at` expires, in Unix milliseconds; 0 when never. Two u32 halves, exact
   * below 2^53 ms (no BigInt).
   */
  #expiresAt(at: number): number {
    return this.#u32(at + ENTRY.expiresAt) + this.#u32(at + ENTRY.expiresAt + 4) * TWO_32;
  }

  /** Whether the entry opened at `at` has expired. The clock is read only for an entry that expires. */
  #expired(at: number): boolean {
    return (this.#u32(at + ENTRY.expiresAt) | this.#u32(at + ENTRY.expiresAt + 4)) !== 0 && Date.now() >= this.#expiresAt(at);
  }

  /** The value in a slot; undefined when its chunk is out of range (a torn read). */
  value(slot: number): string | undefined | ExpiredEntry {
    if (slot === this.#foundSlot) {
      return this.#expired(this.#foundAt) ? EXPIRED_ENTRY : this.#decode(this.#foundData, this.#foundValueLen);
    }
    const at = this.memory.open(slot);
    const data = this.#data(at);
    if (data < 0) return undefined;
    return this.#expired(at) ? EXPIRED_ENTRY : this.#decode(data + this.#keyLen, this.#valueLen);
  }

  /** Record a read of the entry in slot `slot`, just read and validated, for lru eviction. */
  touch(slot: number): void {
    this.memory.touch(slot, (Date.now() / 16) >>> 0);
  }

  /** UTF-8 text of `length` bytes at byte offset `at` (length within the geometry's limits). */
  #decode(at: number, length: number): string {
    const scratch = this.#scratch;
    if (length <= 64) {
      // A loop beats set() for the short strings most keys and values are; it also tells whether
      // they are ASCII, which Bun decodes faster as latin1 (the same characters).
      const u8 = this.#u8;
      let bits = 0;
      for (let i = 0; i < length; i++) bits |= scratch[i] = u8[at + i]!;
      if (bits < 0x80) return scratch.toString("latin1", 0, length);
    } else {
      scratch.set(this.#u8.subarray(at, at + length));
    }
    return scratch.toString("utf8", 0, length);
  }

  /**
   * The entry in a slot, undefined when the slot is free or holds out-of-range lengths, EXPIRED_ENTRY
   * when it has expired. `key`: the key when the caller knows it already (it found the slot by it),
   * saving its decoding.
   */
  entry(slot: number, key?: string): KvEntry | undefined | ExpiredEntry {
    const at = this.memory.open(slot);
    const data = this.#data(at);
    const keyLen = this.#keyLen;
    if (keyLen === 0 || data < 0) return undefined;
    if (this.#expired(at)) return EXPIRED_ENTRY;
    const entry: KvEntry = {
      key: key ?? this.#decode(data, keyLen),
      value: this.#decode(data + keyLen, this.#valueLen),
      timestamp: this.#i64(at + ENTRY.timestamp),
      revision: this.#u64(at + ENTRY.revision),
    };
    return this.#withExpiry(entry, at);
  }

  /** entry(), with the value's bytes (a copy, from its chunk) rather than its text. */
  entryBytes(slot: number, key: string): KvBytesEntry | undefined | ExpiredEntry {
    const raw = this.rawEntry(slot);
    if (raw === undefined || raw === EXPIRED_ENTRY) return raw;
    return { ...raw, key };
  }

  /** The entry in a slot with its key and value as bytes (copies), exactly as stored; as entry(). */
  rawEntry(slot: number): KvRawEntry | undefined | ExpiredEntry {
    const at = this.memory.open(slot);
    const data = this.#data(at);
    const keyLen = this.#keyLen;
    if (keyLen === 0 || data < 0) return undefined;
    if (this.#expired(at)) return EXPIRED_ENTRY;
    const valueAt = data + keyLen;
    const entry: KvRawEntry = {
      key: this.#u8.slice(data, valueAt),
      value: this.#u8.slice(valueAt, valueAt + this.#valueLen),
      timestamp: this.#i64(at + ENTRY.timestamp),
      revision: this.#u64(at + ENTRY.revision),
    };
    return this.#withExpiry(entry, at);
  }

  /** `entry` with its expiresAt when the entry opened at `at` expires (absent when it never does). */
  #withExpiry<T extends { expiresAt?: number }>(entry: T, at: number): T {
    const expiresAt = this.#expiresAt(at);
    if (expiresAt !== 0) entry.expiresAt = expiresAt;
    return entry;
  }

  #i64(byteOffset: number): number {
    return this.#u32(byteOffset) + (this.#u32(byteOffset + 4) | 0) * TWO_32;
  }

  /** The key in a slot, undefined when the slot is free or its chunk is out of range; EXPIRED_ENTRY as entry(). */
  key(slot: number): string | undefined | ExpiredEntry {
    const at = this.memory.open(slot);
    const data = this.#data(at);
    if (this.#keyLen === 0 || data < 0) return undefined;
    return this.#expired(at) ? EXPIRED_ENTRY : this.#decode(data, this.#keyLen);
  }

  /** Whether a cell holds a live entry whose key starts with the bytes `prefix`. */
  hasPrefix(cell: number, prefix: Uint8Array): boolean {
    const data = this.#data(this.memory.open(cell));
    const keyLen = this.#keyLen;
    return data >= 0 && keyLen !== 0 && keyLen >= prefix.length && this.#equals(data, prefix, prefix.length);
  }

  /**
   * The change that made version `revision`, or "expired" when its cell holds another one. The
   * caller must know revision <= the committed version (see committed()). The record's revision is
   * its own seqlock: read before and after the copy, it must be the one wanted both times.
   */
  change(revision: number): KvChange | "expired" {
    return this.#change(revision, (at, length) => this.#decode(at, length));
  }

  /** change(), with the key and value as the bytes stored (copies). */
  changeBytes(revision: number): KvChangeOf<Uint8Array> | "expired" {
    return this.#change(revision, (at, length) => this.#u8.slice(at, at + length));
  }

  #change<T>(revision: number, read: (at: number, length: number) => T): KvChangeOf<T> | "expired" {
    const cell = this.layout.maxEntries + ((revision - 1) % RING_CELLS);
    const change = this.#changeIn(cell, revision, read);
    this.memory.renew();
    const at = this.memory.open(cell) + CHANGE.revision;
    const after = Atomics.load(this.#u32s, at >>> 2) + Atomics.load(this.#u32s, (at >>> 2) + 1) * TWO_32;
    return after === revision ? change : "expired";
  }

  #changeIn<T>(cell: number, revision: number, read: (at: number, length: number) => T): KvChangeOf<T> | "expired" {
    const at = this.memory.open(cell);
    if (this.#u64(at + CHANGE.revision) !== revision) return "expired";
    const keyLen = this.#u32(at + CHANGE.keyLen);
    const valueLen = this.#u32(at + CHANGE.valueLen);
    const op = this.#u32(at + CHANGE.op);
    const flags = this.#u32(at + CHANGE.flags);
    const expires = flags === CHANGE_FLAG.expires && op === OP.set;
    // A change too big for its cell (unkept) is known by its outcome only, and so is one this reader
    // cannot read (a flag or an op it does not know): the reader rereads.
    if ((flags !== 0 && !expires) || keyLen + valueLen + (expires ? 8 : 0) > this.layout.ringData || op < OP.set || op > OP.evicted) {
      return "expired";
    }
    const keyAt = at + CHANGE.data;
    const change: KvChangeOf<T> = {
      revision,
      op: op === OP.set ? "set" : "delete",
      key: read(keyAt, keyLen),
      timestamp: this.#i64(at + CHANGE.timestamp),
    };
    if (op === OP.set) change.value = read(keyAt + keyLen, valueLen);
    if (expires) change.expiresAt = this.#unalignedU64(keyAt + keyLen + valueLen);
    if (op === OP.expired) change.reason = "expired";
    if (op === OP.evicted) change.reason = "evicted";
    return change;
  }

  /** The u64 (little-endian, within 2^53) at byte offset `at`, whatever its alignment. */
  #unalignedU64(at: number): number {
    const u8 = this.#u8;
    const low = (u8[at]! | (u8[at + 1]! << 8) | (u8[at + 2]! << 16) | (u8[at + 3]! << 24)) >>> 0;
    const high = (u8[at + 4]! | (u8[at + 5]! << 8) | (u8[at + 6]! << 16) | (u8[at + 7]! << 24)) >>> 0;
    return low + high * TWO_32;
  }

  /** The header's own account of its geometry agrees with the one validated at open. */
  matches(layout: Layout): boolean {
    const u32 = this.#head;
    return (
      u32[HEADER.maxEntries / 4] === layout.maxEntries &&
      u32[HEADER.keyMax / 4] === layout.keyMax &&
      u32[HEADER.valueMax / 4] === layout.valueMax &&
      u32[HEADER.headerSize / 4] === layout.headerSize &&
      u32[HEADER.entrySize / 4] === layout.entrySize &&
      u32[HEADER.indexCells / 4] === layout.indexCells &&
      this.#headU64(HEADER.entriesOff) === layout.entriesOff &&
      this.#headU64(HEADER.ringOff) === layout.ringOff &&
      u32[HEADER.ringCells / 4] === RING_CELLS &&
      this.#headU64(HEADER.totalSize) === layout.totalSize &&
      this.#headU64(HEADER.heapOff) === layout.heapOff &&
      this.#headU64(HEADER.heapSize) === layout.heapSize &&
      u32[HEADER.fixedChunk / 4] === layout.fixedChunk &&
      u32[HEADER.ringCellSize / 4] === layout.ringCell &&
      u32[HEADER.ringData / 4] === layout.ringData
    );
  }
}
