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
} as const;

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
  data: 32,
} as const;

/** Byte offsets of a change record's fields, from the start of its cell. */
export const CHANGE = {
  revision: 0,
  timestamp: 8,
  op: 16,
  keyLen: 20,
  valueLen: 24,
  data: 32,
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
const OP_SET = 1;
const OP_DELETE = 2;

/** Where the undo record keeps its copy of the entry a write in progress changes. */
export const UNDO_ENTRY_OFF = 224;
/** The cell number, for SegmentMemory.open, of that copy. */
export const UNDO_CELL = -2;
const UNDO_ARMED = 1;

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
}

/** Sizes derived from a geometry, computed exactly as the C library does. */
export interface Layout extends Geometry {
  headerSize: number;
  entrySize: number;
  indexCells: number;
  entriesOff: number;
  ringOff: number;
  totalSize: number;
}

const alignUp = (v: number, a: number) => Math.ceil(v / a) * a;

export function layoutOf(g: Geometry): Layout {
  const entrySize = alignUp(ENTRY.data + g.keyMax + g.valueMax, 8);
  const headerSize = alignUp(UNDO_ENTRY_OFF + entrySize, 64);
  let indexCells = 1;
  while (indexCells < 2 * g.maxEntries) indexCells *= 2;
  const entriesOff = alignUp(headerSize + 4 * indexCells, 64);
  const ringOff = entriesOff + g.maxEntries * entrySize;
  return { ...g, headerSize, entrySize, indexCells, entriesOff, ringOff, totalSize: ringOff + RING_CELLS * entrySize };
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
}

/** A write recorded in the segment's change ring, by whichever process made it; key and value as T. */
export interface KvChangeOf<T> {
  revision: number;
  op: "set" | "delete";
  key: T;
  /** The value set; absent for a delete. */
  value?: T;
  timestamp: number;
}

/** A change with its key and value as text. */
export type KvChange = KvChangeOf<string>;

/** One entry: its key, value, the time of its last write and its revision. */
export interface KvEntry {
  key: string;
  value: string;
  timestamp: number;
  revision: number;
}

/** An entry whose value is its bytes as stored, for a value that may not be UTF-8 text (written from C). */
export interface KvBytesEntry {
  key: string;
  value: Uint8Array;
  timestamp: number;
  revision: number;
}

/** An entry with its key and value as the bytes stored (neither need be UTF-8): for a copy that loses nothing. */
export interface KvRawEntry {
  key: Uint8Array;
  value: Uint8Array;
  timestamp: number;
  revision: number;
}

export class SegmentView {
  readonly #head: Uint32Array; // the header's words
  // Where memory.open() makes a cell readable.
  readonly #u8: Uint8Array;
  readonly #u32s: Uint32Array;
  // Strings are decoded from a copy in this small buffer.
  readonly #scratch: Buffer;
  readonly #mask: number;

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
  }

  /**
   * The store's seqlock counter, read atomically so no JIT can hoist it out of a retry loop. Reading
   * a counter begins or ends a read, so entries read before it are read afresh after it.
   */
  seq(): number {
    this.memory.renew();
    return Atomics.load(this.#head, HEADER.seq / 4);
  }

  /** The counter of the index and the slots' keys (inserts, deletes, repairs); see seq(). */
  indexSeq(): number {
    this.memory.renew();
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

  /** The slot holding key (its first `length` bytes), or -1. Bounded, whatever the index holds. */
  find(key: Uint8Array, length: number, hash: number): number {
    const maxEntries = this.layout.maxEntries;
    let pos = hash & this.#mask;
    for (let n = 0; n <= this.#mask; n++, pos = (pos + 1) & this.#mask) {
      const cell = this.memory.indexCell(pos);
      if (cell === 0) return -1;
      const slot = cell - 1;
      if (slot >= maxEntries) continue;
      const at = this.memory.open(slot);
      if (this.#u32(at + ENTRY.hash) !== hash || this.#u32(at) !== length) continue;
      if (this.#equals(at + ENTRY.data, key, length)) return slot;
    }
    return -1;
  }

  /** The value length of a slot, or -1 when it is out of range (a torn read). */
  valueLength(slot: number): number {
    const len = this.#u32(this.memory.open(slot) + ENTRY.valueLen);
    return len <= this.layout.valueMax ? len : -1;
  }

  value(slot: number, length: number): string {
    return this.#decode(this.memory.open(slot) + ENTRY.data + this.layout.keyMax, length);
  }

  /** A copy of the value's `length` bytes in a slot. */
  valueBytes(slot: number, length: number): Uint8Array {
    const at = this.memory.open(slot) + ENTRY.data + this.layout.keyMax;
    return this.#u8.slice(at, at + length);
  }

  /** UTF-8 text of `length` bytes at byte offset `at` (length within the geometry's limits). */
  #decode(at: number, length: number): string {
    const scratch = this.#scratch;
    if (length <= 64) {
      // A loop beats set() for the short strings most keys and values are.
      const u8 = this.#u8;
      for (let i = 0; i < length; i++) scratch[i] = u8[at + i]!;
    } else {
      scratch.set(this.#u8.subarray(at, at + length));
    }
    return scratch.toString("utf8", 0, length);
  }

  /**
   * The entry in a slot, or undefined when the slot is free or holds out-of-range lengths. `key`:
   * the key when the caller knows it already (it found the slot by it), saving its decoding.
   */
  entry(slot: number, key?: string): KvEntry | undefined {
    const at = this.memory.open(slot);
    const keyLen = this.#u32(at);
    const valueLen = this.valueLength(slot);
    if (keyLen === 0 || keyLen > this.layout.keyMax || valueLen < 0) return undefined;
    return {
      key: key ?? this.#decode(at + ENTRY.data, keyLen),
      value: this.value(slot, valueLen),
      timestamp: this.#i64(at + ENTRY.timestamp),
      revision: this.#u64(at + ENTRY.revision),
    };
  }

  /** entry(), with the value's bytes rather than its text. */
  entryBytes(slot: number, key: string): KvBytesEntry | undefined {
    const at = this.memory.open(slot);
    const keyLen = this.#u32(at);
    const valueLen = this.valueLength(slot);
    if (keyLen === 0 || keyLen > this.layout.keyMax || valueLen < 0) return undefined;
    return {
      key,
      value: this.valueBytes(slot, valueLen),
      timestamp: this.#i64(at + ENTRY.timestamp),
      revision: this.#u64(at + ENTRY.revision),
    };
  }

  /** The entry in a slot with its key and value as bytes (copies), exactly as stored; as entry(). */
  rawEntry(slot: number): KvRawEntry | undefined {
    const at = this.memory.open(slot);
    const keyLen = this.#u32(at);
    const valueLen = this.valueLength(slot);
    if (keyLen === 0 || keyLen > this.layout.keyMax || valueLen < 0) return undefined;
    return {
      key: this.#u8.slice(at + ENTRY.data, at + ENTRY.data + keyLen),
      value: this.valueBytes(slot, valueLen),
      timestamp: this.#i64(at + ENTRY.timestamp),
      revision: this.#u64(at + ENTRY.revision),
    };
  }

  #i64(byteOffset: number): number {
    return this.#u32(byteOffset) + (this.#u32(byteOffset + 4) | 0) * TWO_32;
  }

  /** The key in a slot, or undefined when the slot is free or its length is out of range. */
  key(slot: number): string | undefined {
    const at = this.memory.open(slot);
    const keyLen = this.#u32(at);
    if (keyLen === 0 || keyLen > this.layout.keyMax) return undefined;
    return this.#decode(at + ENTRY.data, keyLen);
  }

  /** Whether a cell holds a live entry whose key starts with the bytes `prefix`. */
  hasPrefix(cell: number, prefix: Uint8Array): boolean {
    const at = this.memory.open(cell);
    const keyLen = this.#u32(at);
    return keyLen !== 0 && keyLen <= this.layout.keyMax && keyLen >= prefix.length && this.#equals(at + ENTRY.data, prefix, prefix.length);
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
    if (keyLen > this.layout.keyMax || valueLen > this.layout.valueMax || (op !== OP_SET && op !== OP_DELETE)) return "expired";
    const keyAt = at + CHANGE.data;
    const change: KvChangeOf<T> = {
      revision,
      op: op === OP_SET ? "set" : "delete",
      key: read(keyAt, keyLen),
      timestamp: this.#i64(at + CHANGE.timestamp),
    };
    if (op === OP_SET) change.value = read(keyAt + this.layout.keyMax, valueLen);
    return change;
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
      this.#headU64(HEADER.totalSize) === layout.totalSize
    );
  }
}
