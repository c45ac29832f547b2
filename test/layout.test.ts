import { describe, expect, it } from "bun:test";
import { kvHash, layoutOf } from "../src/layout.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

describe("kvHash", () => {
  // Shared with test/c/test_store.c. Derived independently of both implementations with a few
  // lines of Python: 32-bit FNV-1a, then the murmur3 fmix32 finaliser (csrc/shared_memory_kv.h).
  it("matches the vectors the C tests share", () => {
    expect(["", "a", "foobar", "shmkv", "ключ"].map((s) => kvHash(bytes(s)))).toEqual([
      0xab3e7c0b, 0x1a80b1b3, 0x0c0da6dc, 0x15eddf7e, 0x9aa1b562,
    ]);
  });

  it("hashes only the first `length` bytes", () => {
    expect(kvHash(bytes("foobar-and-more"), 6)).toBe(kvHash(bytes("foobar")));
  });
});

describe("layoutOf", () => {
  it("derives the seed geometry's sizes as the header documents them", () => {
    // header 640; index: 32 cells (>= 2 * 10); entries at align64(640 + 128) = 768, 64 bytes each;
    // the ring after the 10 entries at 768 + 640 = 1408, cells of align8(32 + 63 + 255) = 352;
    // the heap at align64(1408 + 256 * 352) = 91520: 11 chunks of align16(8 + 63 + 255) = 336.
    expect(layoutOf({ maxEntries: 10, keyMax: 63, valueMax: 255 })).toEqual({
      maxEntries: 10, keyMax: 63, valueMax: 255, memoryBytes: 0,
      entrySize: 64, headerSize: 640, indexCells: 32, entriesOff: 768, ringOff: 1408, ringCell: 352, ringData: 318,
      fixedChunk: 336, heapOff: 91520, heapSize: 3696, totalSize: 95216,
    });
  });

  it("gives a store with memoryBytes a heap of that size and a ring of bounded cells", () => {
    // The ring keeps at most 3040 bytes of key and value a change: cells of 3072 bytes.
    expect(layoutOf({ maxEntries: 1000, keyMax: 100, valueMax: 65536, memoryBytes: 1_000_008 })).toEqual({
      maxEntries: 1000, keyMax: 100, valueMax: 65536, memoryBytes: 1_000_008,
      entrySize: 64, headerSize: 640, indexCells: 2048, entriesOff: 8832, ringOff: 72832, ringCell: 3072, ringData: 3040,
      fixedChunk: 0, heapOff: 859264, heapSize: 1_000_000, totalSize: 1_859_264,
    });
  });
});
