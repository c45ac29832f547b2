/** KvStore's pages (keysFrom, entriesFrom), its stats, and the revision a conflict reports. */
import { describe, expect, it } from "bun:test";
import { KvConflictError, KvError } from "../src/errors.ts";
import { layoutOf } from "../src/layout.ts";
import { TempStore } from "./helpers/shm.ts";

/** The error a call throws (fails the test when it throws nothing). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error("expected an error, nothing was thrown");
}

describe("KvStore.keysFrom and entriesFrom", () => {
  it("give a page of live keys in slot order, and the slot of the next one", () => {
    using t = new TempStore();
    for (const key of ["a", "b", "c", "d"]) t.store.set(key, key.toUpperCase());
    t.store.delete("b");
    expect(t.store.keysFrom(0, 2)).toEqual({ version: 5, entry_count: 3, items: ["a", "c"], next: 3 });
    expect(t.store.keysFrom(3, 2)).toEqual({ version: 5, entry_count: 3, items: ["d"], next: undefined });
  });

  it("keep only the keys with the prefix, and give whole entries", () => {
    using t = new TempStore();
    for (const key of ["x1", "y1", "x2"]) t.store.set(key, "v");
    expect(t.store.entriesFrom(0, 10, "x")).toEqual({
      version: 3,
      entry_count: 3,
      items: [
        { key: "x1", value: "v", timestamp: expect.any(Number), revision: 1 },
        { key: "x2", value: "v", timestamp: expect.any(Number), revision: 3 },
      ],
      next: undefined,
    });
  });

  it("refuse a negative slot or a limit below 1", () => {
    using t = new TempStore();
    for (const [from, limit] of [[-1, 1], [0, 0], [0.5, 1]] as const) {
      expect((thrown(() => t.store.keysFrom(from, limit)) as KvError).code).toBe("INVALID_ARGUMENT");
    }
  });
});

describe("KvStore.stats", () => {
  it("gives counts, the segment's size, the memory and the lock's state, from the header alone", () => {
    using t = new TempStore({ maxEntries: 4 });
    t.store.set("key", "value");
    t.store.set("é", "");
    const layout = layoutOf({ maxEntries: 4, keyMax: 63, valueMax: 255 });
    expect(t.store.stats()).toEqual({
      version: 2,
      entry_count: 2,
      max_entries: 4,
      segment_bytes: layout.totalSize,
      lock_recoveries: 0,
      lock_held_ms: 0,
      // Without memoryBytes every chunk is the largest entry's: 5 of them, 2 held.
      memory_bytes: 5 * layout.fixedChunk,
      memory_used: 2 * layout.fixedChunk,
      evictions: 0,
      expired: 0,
      evict: "none",
    });
  });

  it("counts the memory entries hold, chunk heads and rounding included, in a store with memoryBytes", () => {
    using t = new TempStore({ maxEntries: 4, memoryBytes: 4096 + 8 });
    t.store.set("key", "value"); // 8 + 3 + 5 = 16 bytes: a chunk of the smallest size, 32
    t.store.set("k2", "v".repeat(100)); // 8 + 2 + 100 = 110: 112
    const { memory_bytes, memory_used } = t.store.stats();
    expect({ memory_bytes, memory_used }).toEqual({ memory_bytes: 4096, memory_used: 32 + 112 });
    t.store.delete("key");
    expect(t.store.memoryUsed).toBe(112);
  });
});

describe("KvStore.setIf and deleteIf", () => {
  it("report the revision they found in a KvConflictError", () => {
    using t = new TempStore();
    t.store.set("k", "one");
    t.store.set("k", "two");
    const errors = [
      thrown(() => t.store.setIf("k", "x", 1)),
      thrown(() => t.store.setIf("k", "x", 0)),
      thrown(() => t.store.deleteIf("k", 1)),
      thrown(() => t.store.setIf("absent", "x", 5)),
    ] as KvConflictError[];
    expect(errors.every((e) => e instanceof KvConflictError && e.code === "CONFLICT")).toBe(true);
    expect(errors.map((e) => [e.revision, e.message])).toEqual([
      [2, 'cannot set "k": it is at revision 2 (expected revision 1)'],
      [2, 'cannot set "k": it exists (revision 2)'],
      [2, 'cannot delete "k": it is at revision 2 (expected revision 1)'],
      [0, 'cannot set "absent": it does not exist (expected revision 5)'],
    ]);
  });
});
