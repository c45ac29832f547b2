/** Eviction: a store made with evict "lru" makes room for a set by evicting the entries used least recently. */
import { describe, expect, it } from "bun:test";
import { KvStore } from "../src/store.ts";
import { errorOf } from "./helpers/errors.ts";
import { READ_PATHS, TempStore, uniqueName } from "./helpers/shm.ts";
import { nextAccessTick, waitFor } from "./helpers/wait.ts";

describe("KvOptions.evict", () => {
  it("is none by default, lru when asked, and kept by a resize that does not name it", () => {
    using plain = new TempStore();
    using lru = new TempStore({ evict: "lru" });
    expect([plain.store.evict, lru.store.evict, plain.store.stats().evict, lru.store.status().evict]).toEqual(["none", "lru", "none", "lru"]);
    KvStore.resize(lru.name, { maxEntries: 20 });
    expect([lru.store.maxEntries, lru.store.evict]).toEqual([20, "lru"]);
    KvStore.resize(plain.name, { evict: "lru" });
    expect(plain.store.evict).toBe("lru");
  });

  it("refuses a policy it does not know, creating nothing", () => {
    const name = uniqueName();
    const error = errorOf(() => KvStore.open(name, { create: true, evict: "fifo" as "lru" }));
    expect([error.code, error.message]).toEqual(["INVALID_ARGUMENT", 'evict must be "none" or "lru", not "fifo"']);
    expect(errorOf(() => KvStore.open(name)).code).toBe("ENOENT");
  });
});

describe("a store that evicts lru", () => {
  it("keeps accepting sets far past max_entries, each eviction a change with reason evicted, counted in stats()", () => {
    using t = new TempStore({ maxEntries: 8, evict: "lru" });
    for (let i = 0; i < 100; i++) t.store.set(`k${i}`, `${i}`);
    expect(t.store.stats()).toMatchObject({ version: 100 + 92, entry_count: 8, evictions: 92, expired: 0, evict: "lru" });
    expect(t.store.get("k99")).toBe("99");
    const { changes } = t.store.changesSince(t.store.version - 10);
    expect(changes.filter((c) => c.op === "delete").every((c) => c.reason === "evicted")).toBe(true);
    expect(changes.filter((c) => c.op === "delete").length).toBe(5);
    t.store.check();
  });

  it("evicts to make room in its memory too, not only for its slots", () => {
    using t = new TempStore({ maxEntries: 64, memoryBytes: 4096, evict: "lru" });
    const value = "v".repeat(200);
    for (let i = 0; i < 100; i++) t.store.set(`k${i}`, value);
    const stats = t.store.stats();
    expect(stats.evictions).toBe(100 - stats.entry_count);
    expect(stats.entry_count).toBeLessThan(64);
    expect(stats.memory_used).toBeLessThanOrEqual(4096);
    expect(t.store.get("k99")).toBe(value);
  });

  it("evicts an expired entry before a live one", async () => {
    using t = new TempStore({ maxEntries: 4, evict: "lru" });
    t.store.set("a", "1");
    t.store.set("b", "2");
    t.store.set("short", "3", { ttl: 30 });
    t.store.set("c", "4");
    const expiresAt = t.store.getEntry("short")!.expiresAt!;
    await waitFor(() => Date.now() >= expiresAt, { what: "short to expire" });
    t.store.set("d", "5");
    expect(t.store.keysFrom(0, 10).items.sort()).toEqual(["a", "b", "c", "d"]);
    expect(t.store.stats()).toMatchObject({ evictions: 0, expired: 1 });
  });
});

describe.each(READ_PATHS)("a store that evicts lru, read %s", (_path, geometry) => {
  it("keeps a key read just before a burst of new keys", async () => {
    using t = new TempStore({ ...geometry, evict: "lru" });
    const n = t.store.maxEntries;
    const burst = Math.floor(n / 2);
    for (let i = 0; i < n; i++) t.store.set(`old${i}`, "v");
    // The read must record a later time than every write of the fill.
    await nextAccessTick();
    // old0, the first written, is the one eviction would take first had the read not been recorded.
    using reader = KvStore.open(t.name);
    expect(reader.get("old0")).toBe("v");
    for (let i = 0; i < burst; i++) t.store.set(`new${i}`, "v");
    expect([t.store.get("old0"), t.store.stats().evictions, t.store.count]).toEqual(["v", burst, n]);
  });
});
