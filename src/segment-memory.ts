/**
 * How a SegmentView reaches a segment's bytes: through views of all of it (a segment within
 * VIEW_BUDGET, or a snapshot), or through views of its header and index with each entry copied out
 * as it is read.
 *
 * Why not always views: JavaScriptCore counts an ArrayBuffer over external memory as heap. Beside a
 * view of a 360 MB segment the collector lets hundreds of MB be allocated between collections, so
 * every allocation in the process lands in cold memory, and allocation-heavy code runs several times
 * slower (`BENCH_ONLY=inProcess make bench` shows it at 1,000,000 entries; bench/README.md). Views of
 * at most VIEW_BUDGET bytes leave the collector alone, and copying an entry out (one FFI call) costs
 * about what reading it through a view does.
 */
import { ptr, read, toArrayBuffer, type Pointer } from "bun:ffi";
import type { KvLib } from "./ffi.ts";
import { cellBytes, CHUNK_HEAD, ENTRY, ENTRY_SIZE, RING_CELLS, UNDO_CELL, UNDO_ENTRY_OFF, type Layout, type SegmentMemory } from "./layout.ts";

/** The most bytes of a segment a process views at once: views this small leave the collector alone. */
export const VIEW_BUDGET = 16 << 20;

/** The memory of an open store; undefined when its mapping is not the size its layout says. */
export function memoryOf(lib: KvLib, handle: Pointer, layout: Layout): SegmentMemory | undefined {
  const base = lib.kv_base(handle);
  if (!base || Number(lib.kv_map_size(handle)) !== layout.totalSize) return undefined;
  if (layout.totalSize <= VIEW_BUDGET) return new ViewedMemory(toArrayBuffer(base, 0, layout.totalSize), layout);
  return new CopiedMemory(Number(base), layout, lib, handle);
}

/** Views of the whole segment: the live mapping, or a copy of it. */
export class ViewedMemory implements SegmentMemory {
  readonly head: Uint32Array;
  readonly u8: Uint8Array;
  readonly u32: Uint32Array;
  readonly #indexWord: number;
  // The layout's offsets, as fields: read on every cell a lookup visits.
  readonly #maxEntries: number;
  readonly #entriesOff: number;
  readonly #ringOff: number;
  readonly #ringCell: number;
  readonly #dataOff: number; // where chunk 0's key starts: the heap, past the chunk's head

  constructor(buffer: ArrayBuffer, layout: Layout) {
    this.u8 = new Uint8Array(buffer, 0, layout.totalSize);
    this.head = this.u32 = new Uint32Array(buffer, 0, layout.totalSize / 4);
    this.#indexWord = layout.headerSize / 4;
    this.#maxEntries = layout.maxEntries;
    this.#entriesOff = layout.entriesOff;
    this.#ringOff = layout.ringOff;
    this.#ringCell = layout.ringCell;
    this.#dataOff = layout.heapOff + CHUNK_HEAD;
  }

  indexCell(pos: number): number {
    return this.u32[this.#indexWord + pos]!;
  }

  open(cell: number): number {
    if (cell < this.#maxEntries && cell >= 0) return this.#entriesOff + cell * ENTRY_SIZE;
    return cell === UNDO_CELL ? UNDO_ENTRY_OFF : this.#ringOff + (cell - this.#maxEntries) * this.#ringCell;
  }

  dataAt(_at: number, chunk: number): number {
    return this.#dataOff + chunk;
  }

  counter(cell: number): number {
    // Atomic, so that no JIT hoists it out of a retry loop.
    return Atomics.load(this.u32, (this.open(cell) + ENTRY.seq) / 4);
  }

  renew(): void {}

  touch(cell: number, tick: number): void {
    const word = (this.open(cell) + ENTRY.lastAccess) / 4;
    if (Atomics.load(this.u32, word) !== tick) Atomics.store(this.u32, word, tick);
  }
}

/**
 * A segment beyond VIEW_BUDGET: views of its header and (when within budget) its index; each cell
 * copied by kv_copy_cell, which validates an entry's copy by the entry's counter as kv_get does.
 */
export class CopiedMemory implements SegmentMemory {
  readonly head: Uint32Array;
  readonly u8: Uint8Array;
  readonly u32: Uint32Array;
  readonly #undoCell: number; // kv_copy_cell's number for the undo record's entry
  readonly #index: Uint32Array | undefined;
  readonly #indexAt: number; // its address, for when it is read cell by cell
  readonly #copyAt: number; // the address of u8
  #copied = -1; // the cell u8 holds, -1 when none
  #counter = 1;

  constructor(
    base: number,
    layout: Layout,
    readonly lib: KvLib,
    readonly handle: Pointer,
  ) {
    this.head = new Uint32Array(toArrayBuffer(base as Pointer, 0, layout.headerSize));
    this.#undoCell = layout.maxEntries + RING_CELLS;
    const indexBytes = layout.entriesOff - layout.headerSize;
    this.#indexAt = base + layout.headerSize;
    this.#index = indexBytes <= VIEW_BUDGET ? new Uint32Array(toArrayBuffer(base as Pointer, layout.headerSize, indexBytes)) : undefined;
    this.u8 = new Uint8Array(cellBytes(layout));
    this.u32 = new Uint32Array(this.u8.buffer);
    this.#copyAt = ptr(this.u8);
  }

  dataAt(): number {
    return ENTRY_SIZE;
  }

  indexCell(pos: number): number {
    return this.#index ? this.#index[pos]! : read.u32(this.#indexAt as Pointer, pos * 4);
  }

  open(cell: number): number {
    if (cell === UNDO_CELL) {
      // With its key and value, which only a copy by the library can reach; validated by seq.
      this.lib.kv_copy_cell(this.handle, this.#undoCell, this.#copyAt as Pointer);
      this.#copied = -1;
    } else if (cell !== this.#copied) {
      this.#counter = this.lib.kv_copy_cell(this.handle, cell, this.#copyAt as Pointer);
      this.#copied = cell;
    }
    return 0;
  }

  counter(cell: number): number {
    this.open(cell);
    return this.#counter;
  }

  renew(): void {
    this.#copied = -1;
  }

  /**
   * Compared with the copy (the slot's, as it was just read); stored by the library (kv_touch), as no
   * view of every entry exists and making one per store would cost more than the call.
   */
  touch(cell: number, tick: number): void {
    if (this.counter(cell) & 1 || this.u32[ENTRY.lastAccess / 4] === tick) return;
    this.lib.kv_touch(this.handle, cell);
  }
}

/**
 * Each cell copied under the write lock (kv_read_cell), within the handle's lock timeout: the
 * fallback of a reader that writers overtake again and again, consistent without validation. The
 * header is the live one. `open` throws what the library answers: STORE_BUSY when the lock is held.
 */
export class LockedMemory implements SegmentMemory {
  readonly head: Uint32Array;
  readonly u8: Uint8Array;
  readonly u32: Uint32Array;
  readonly #copyAt: number;
  #copied = -1;

  constructor(
    readonly live: SegmentMemory,
    layout: Layout,
    readonly lib: KvLib,
    readonly handle: Pointer,
    readonly fail: (rc: number) => never,
  ) {
    this.head = live.head;
    this.u8 = new Uint8Array(cellBytes(layout));
    this.u32 = new Uint32Array(this.u8.buffer);
    this.#copyAt = ptr(this.u8);
  }

  dataAt(): number {
    return ENTRY_SIZE;
  }

  /** Not read through: lookups that writers overtake fall back to kv_get_rev instead. */
  indexCell(): number {
    return 0;
  }

  open(cell: number): number {
    if (cell !== this.#copied) {
      const rc = this.lib.kv_read_cell(this.handle, cell, this.#copyAt as Pointer);
      if (rc !== 0) this.fail(rc);
      this.#copied = cell;
    }
    return 0;
  }

  /** A copy taken under the lock needs no validation: its counter is as good as even. */
  counter(): number {
    return 0;
  }

  renew(): void {
    this.#copied = -1;
  }

  touch(cell: number, tick: number): void {
    this.live.touch(cell, tick);
  }
}
