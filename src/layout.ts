/**
 * The segment's layout as csrc/shared_memory_kv.h documents it, and a bounds-checked reader over it.
 *
 * A SegmentView reads either the live mapping (lock-free, so what it reads may be torn until the
 * caller validates it with the seqlock) or a snapshot copied under the lock. Every offset it follows
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
} as const;

/** Byte offsets of an entry's fields, from the start of its slot. */
export const ENTRY = {
  keyLen: 0,
  valueLen: 4,
  hash: 8,
  nextFree: 12,
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

/** KV_RING_CELLS: how many recent changes the ring keeps. */
export const RING_CELLS = 256;
const OP_SET = 1;
const OP_DELETE = 2;

const UNDO_ENTRY_OFF = 224;
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

/** One change as read from the ring. */
export interface RawChange {
  revision: number;
  op: "set" | "delete";
  key: string;
  /** The value set; absent for a delete. */
  value?: string;
  timestamp: number;
}

/** One entry as read from a slot. */
export interface RawEntry {
  key: string;
  value: string;
  timestamp: number;
  revision: number;
}

export class SegmentView {
  readonly u8: Uint8Array;
  readonly #text: Buffer; // the same bytes, for decoding UTF-8 without a subarray per read
  readonly u32: Uint32Array;
  readonly #indexAt: number; // u32 index of the first index cell
  readonly #mask: number;

  constructor(
    buffer: ArrayBuffer,
    readonly layout: Layout,
  ) {
    this.u8 = new Uint8Array(buffer, 0, layout.totalSize);
    this.u32 = new Uint32Array(buffer, 0, layout.totalSize / 4);
    this.#text = Buffer.from(buffer, 0, layout.totalSize);
    this.#indexAt = layout.headerSize / 4;
    this.#mask = layout.indexCells - 1;
  }

  /** The seqlock counter, read atomically so no JIT can hoist it out of a retry loop. */
  seq(): number {
    return Atomics.load(this.u32, HEADER.seq / 4);
  }

  u64(byteOffset: number): number {
    const i = byteOffset / 4;
    return this.u32[i]! + this.u32[i + 1]! * TWO_32;
  }

  /** Header fields as they stand (unvalidated). */
  version(): number {
    return this.u64(HEADER.version);
  }

  entryCount(): number {
    return this.u32[HEADER.entryCount / 4]!;
  }

  highWater(): number {
    return Math.min(this.u32[HEADER.highWater / 4]!, this.layout.maxEntries);
  }

  lockRecoveries(): number {
    return this.u64(HEADER.lockRecoveries);
  }

  entryOffset(slot: number): number {
    return this.layout.entriesOff + slot * this.layout.entrySize;
  }

  /** The slot holding key (its first `length` bytes), or -1. Bounded, whatever the index holds. */
  find(key: Uint8Array, length: number, hash: number): number {
    const { u8, u32 } = this;
    const maxEntries = this.layout.maxEntries;
    let pos = hash & this.#mask;
    for (let n = 0; n <= this.#mask; n++, pos = (pos + 1) & this.#mask) {
      const cell = u32[this.#indexAt + pos]!;
      if (cell === 0) return -1;
      const slot = cell - 1;
      if (slot >= maxEntries) continue;
      const at = this.entryOffset(slot);
      if (u32[(at + ENTRY.hash) / 4] !== hash || u32[at / 4] !== length) continue;
      const keyAt = at + ENTRY.data;
      let i = 0;
      while (i < length && u8[keyAt + i] === key[i]) i++;
      if (i === length) return slot;
    }
    return -1;
  }

  /** The value length of a slot, or -1 when it is out of range (a torn read). */
  valueLength(slot: number): number {
    const len = this.u32[(this.entryOffset(slot) + ENTRY.valueLen) / 4]!;
    return len <= this.layout.valueMax ? len : -1;
  }

  value(slot: number, length: number): string {
    const at = this.entryOffset(slot) + ENTRY.data + this.layout.keyMax;
    return this.#text.toString("utf8", at, at + length);
  }

  /** The entry in a slot, or undefined when the slot is free or holds out-of-range lengths. */
  entry(slot: number): RawEntry | undefined {
    const at = this.entryOffset(slot);
    const keyLen = this.u32[at / 4]!;
    const valueLen = this.valueLength(slot);
    if (keyLen === 0 || keyLen > this.layout.keyMax || valueLen < 0) return undefined;
    const keyAt = at + ENTRY.data;
    const tsLow = this.u32[(at + ENTRY.timestamp) / 4]!;
    const tsHigh = this.u32[(at + ENTRY.timestamp) / 4 + 1]! | 0;
    return {
      key: this.#text.toString("utf8", keyAt, keyAt + keyLen),
      value: this.value(slot, valueLen),
      timestamp: tsLow + tsHigh * TWO_32,
      revision: this.u64(at + ENTRY.revision),
    };
  }

  /** Every live entry, in slot order. */
  entries(): RawEntry[] {
    const out: RawEntry[] = [];
    const high = this.highWater();
    for (let slot = 0; slot < high; slot++) {
      const e = this.entry(slot);
      if (e) out.push(e);
    }
    return out;
  }

  /**
   * The change that made version `revision`, or "expired" when its cell holds another (or a
   * half-written) one. The caller must know revision <= the committed version; the cell's revision
   * word, read before and after, validates the copy.
   */
  change(revision: number): RawChange | "expired" {
    const at = this.layout.ringOff + ((revision - 1) % RING_CELLS) * this.layout.entrySize;
    const u32 = this.u32;
    const word = (at + CHANGE.revision) / 4;
    const matches = () => Atomics.load(u32, word) + Atomics.load(u32, word + 1) * TWO_32 === revision;
    if (!matches()) return "expired";
    const keyLen = u32[(at + CHANGE.keyLen) / 4]!;
    const valueLen = u32[(at + CHANGE.valueLen) / 4]!;
    const op = u32[(at + CHANGE.op) / 4]!;
    if (keyLen > this.layout.keyMax || valueLen > this.layout.valueMax || (op !== OP_SET && op !== OP_DELETE)) return "expired";
    const keyAt = at + CHANGE.data;
    const valueAt = keyAt + this.layout.keyMax;
    const change: RawChange = {
      revision,
      op: op === OP_SET ? "set" : "delete",
      key: this.#text.toString("utf8", keyAt, keyAt + keyLen),
      timestamp: this.u32[(at + CHANGE.timestamp) / 4]! + (this.u32[(at + CHANGE.timestamp) / 4 + 1]! | 0) * TWO_32,
    };
    if (op === OP_SET) change.value = this.#text.toString("utf8", valueAt, valueAt + valueLen);
    return matches() ? change : "expired";
  }

  /** The header's own account of its geometry agrees with the one validated at open. */
  matches(layout: Layout): boolean {
    const u32 = this.u32;
    return (
      u32[HEADER.maxEntries / 4] === layout.maxEntries &&
      u32[HEADER.keyMax / 4] === layout.keyMax &&
      u32[HEADER.valueMax / 4] === layout.valueMax &&
      u32[HEADER.headerSize / 4] === layout.headerSize &&
      u32[HEADER.entrySize / 4] === layout.entrySize &&
      u32[HEADER.indexCells / 4] === layout.indexCells &&
      this.u64(HEADER.entriesOff) === layout.entriesOff &&
      this.u64(HEADER.ringOff) === layout.ringOff &&
      u32[HEADER.ringCells / 4] === RING_CELLS &&
      this.u64(HEADER.totalSize) === layout.totalSize
    );
  }
}
