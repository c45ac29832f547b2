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
    // entry: align8(32 + 63 + 255) = 352; header: align64(224 + 352) = 576;
    // index: 32 cells (>= 2 * 10); entries at align64(576 + 128) = 704; the ring after the
    // 10 entries at 704 + 10 * 352 = 4224; total 4224 + 256 * 352.
    expect(layoutOf({ maxEntries: 10, keyMax: 63, valueMax: 255 })).toEqual({
      maxEntries: 10, keyMax: 63, valueMax: 255,
      entrySize: 352, headerSize: 576, indexCells: 32, entriesOff: 704, ringOff: 4224, totalSize: 94336,
    });
  });
});
