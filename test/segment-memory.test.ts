import { heapStats } from "bun:jsc";
import { describe, expect, it } from "bun:test";
import { VIEW_BUDGET } from "../src/segment-memory.ts";
import type { KvStore } from "../src/store.ts";
import { TempStore } from "./helpers/shm.ts";

const SMALL = { keyMax: 16, valueMax: 16 };
/** 64-byte entries: 300,000 make 19 MB, beyond VIEW_BUDGET, with an index of 4 MB, within it (and a heap of 1 MiB). */
const ENTRIES_COPIED = { maxEntries: 300_000, ...SMALL, memoryBytes: 1 << 20 };
/** 2,100,000 entries: an index of 8,388,608 cells (32 MB), beyond VIEW_BUDGET too. */
const INDEX_READ_BY_CELL = { maxEntries: 2_100_000, ...SMALL, memoryBytes: 1 << 20 };

/** The memory JavaScriptCore counts as heap beyond its cells, after a full collection. */
function extraMemory(): number {
  Bun.gc(true);
  return heapStats().extraMemorySize;
}

function withoutTimestamp<T extends { timestamp: number }>(entry: T | undefined): Omit<T, "timestamp"> | undefined {
  if (!entry) return entry;
  const { timestamp: _, ...rest } = entry;
  return rest;
}

/** The same writes, and everything each read method then answers (timestamps, sizes and memory aside). */
function story(s: KvStore) {
  s.set("a", "1");
  s.set("b", "two");
  s.set("prefix/x", "é".repeat(8));
  s.delete("a");
  s.set("b", "2");
  s.set("prefix/y", "v".repeat(16));
  s.set("a", "back");
  const { entries, version, entry_count } = s.status();
  const { segment_bytes: _, max_entries: __, memory_bytes: ___, memory_used: ____, ...stats } = s.stats();
  return {
    gets: ["a", "b", "prefix/x", "prefix/y", "missing"].map((k) => s.get(k)),
    entry: withoutTimestamp(s.getEntry("b")),
    status: { version, entry_count, entries: entries.map(withoutTimestamp) },
    keys: [s.keysFrom(0, 1, "prefix/"), s.keysFrom(0, 10)],
    entries: s.entriesFrom(0, 10).items.map(withoutTimestamp),
    changes: s.changesSince(2).changes.map(withoutTimestamp),
    stats,
  };
}

describe("a segment beyond VIEW_BUDGET", () => {
  it.each([
    ["entries copied", ENTRIES_COPIED],
    ["entries copied, index read cell by cell", INDEX_READ_BY_CELL],
  ])("reads what a segment viewed whole reads (%s)", (_, geometry) => {
    using whole = new TempStore({ maxEntries: 64, ...SMALL });
    using beyond = new TempStore(geometry);
    const expected = story(whole.store);
    expect(expected.gets).toEqual(["back", "2", "é".repeat(8), "v".repeat(16), undefined]);
    expect(story(beyond.store)).toEqual(expected);
  });

  it.each([
    ["entries copied", ENTRIES_COPIED],
    ["entries copied, index read cell by cell", INDEX_READ_BY_CELL],
  ])("weighs on the JavaScript heap's accounting by at most VIEW_BUDGET (%s)", (_, geometry) => {
    const before = extraMemory();
    using t = new TempStore(geometry);
    t.store.set("k", "v");
    expect(t.store.get("k")).toBe("v");
    expect(extraMemory() - before).toBeLessThan(VIEW_BUDGET);
  });
});

describe("a segment within VIEW_BUDGET", () => {
  it("is viewed whole: the accounting grows by its size", () => {
    const before = extraMemory();
    // 64 B slots: 7.7 MB, 1 MB of index, a heap of 120,001 chunks of 48 B: 5.8 MB
    using t = new TempStore({ maxEntries: 120_000, ...SMALL });
    t.store.set("k", "v");
    expect(extraMemory() - before).toBeGreaterThan(12 << 20);
  });
});
