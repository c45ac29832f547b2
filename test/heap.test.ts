/**
 * A store made with memoryBytes, from the binding and over HTTP: values in proportion to their size
 * (bigger than 1 MiB too), read back through every read path, a full heap refused with a message
 * that says how to grow the store, and a store whose file stays within its bound.
 */
import { describe, expect, it } from "bun:test";
import { statSync } from "node:fs";
import { KvError, RC } from "../src/errors.ts";
import { createApp } from "../src/http/app.ts";
import { VIEW_BUDGET } from "../src/segment-memory.ts";
import { KvStore } from "../src/store.ts";
import { answer, postSet } from "./helpers/http.ts";
import { TempStore } from "./helpers/shm.ts";

/** The bytes an entry's chunk takes: an 8-byte head, its key and value, rounded up to 16 (32 at least). */
const chunk = (key: string, value: string) => Math.max(32, Math.ceil((8 + key.length + value.length) / 16) * 16);

describe("a store with memoryBytes", () => {
  it.each([
    ["viewed whole", 1 << 20],
    ["copied entry by entry", VIEW_BUDGET + (4 << 20)],
  ])("holds values of any size up to valueMax, each taking what it needs (%s)", (_, memoryBytes) => {
    using t = new TempStore({ maxEntries: 100, keyMax: 16, valueMax: 3 << 20, memoryBytes });
    const values = { tiny: "", small: "s".repeat(20), mid: "m".repeat(5000), big: "b".repeat(700_000) };
    for (const [key, value] of Object.entries(values)) t.store.set(key, value);
    t.store.set("mid", "M".repeat(3000)); // a rewrite frees the old chunk
    const expected = { ...values, mid: "M".repeat(3000) };
    expect(Object.keys(expected).map((key) => t.store.get(key))).toEqual(Object.values(expected));
    expect(t.store.status().entries.map((e) => [e.key, e.value.length])).toEqual(Object.entries(expected).map(([k, v]) => [k, v.length]));
    expect({ memoryBytes: t.store.memoryBytes, memoryUsed: t.store.memoryUsed }).toEqual({
      memoryBytes,
      memoryUsed: Object.entries(expected).reduce((sum, [k, v]) => sum + chunk(k, v), 0),
    });
    t.store.check();
  });

  it("takes values above 1 MiB, which a store without memoryBytes refuses", () => {
    using t = new TempStore({ maxEntries: 4, keyMax: 8, valueMax: 4 << 20, memoryBytes: 8 << 20 });
    const big = "é".repeat(1_500_000); // 3,000,000 bytes
    t.store.set("big", big);
    expect(t.store.get("big") === big).toBe(true);
    // Too big for the change ring: a follower is told to reread the store.
    expect(t.store.changesSince(0)).toEqual({ version: 1, changes: [], expired: true });
    expect(() => new TempStore({ valueMax: (1 << 20) + 1 })).toThrow(KvError);
  });

  it("refuses a set with no room, writing nothing, and says how to grow the store", () => {
    using t = new TempStore({ maxEntries: 100, keyMax: 8, valueMax: 3000, memoryBytes: 8192 });
    let n = 0;
    let refused: unknown;
    try {
      for (; n < 100; n++) t.store.set(`k${n}`, "v".repeat(1000));
    } catch (e) {
      refused = e;
    }
    const { version, memoryUsed } = { version: t.store.version, memoryUsed: t.store.memoryUsed };
    expect(refused).toEqual(
      new KvError(
        "TABLE_FULL",
        `cannot set "k${n}": the store is full: its memory has no room for ${2 + 1000} more bytes (${memoryUsed} of 8192 in use); ` +
          `grow it with shmkv resize --name ${t.name} --memory 16384`,
        RC.TABLE_FULL,
      ),
    );
    expect({ version: t.store.version, count: t.store.count, got: t.store.get(`k${n}`) }).toEqual({ version, count: n, got: undefined });
    t.store.check();
  });

  it("answers 507 over HTTP with that detail", async () => {
    using t = new TempStore({ maxEntries: 10, keyMax: 8, valueMax: 9000, memoryBytes: 8192 });
    const app = createApp(t.store);
    expect(await answer(app.handle(postSet({ key: "huge", value: "x".repeat(8500) })))).toEqual({
      status: 507,
      body: {
        code: "TABLE_FULL",
        detail: `cannot set "huge": the store is full: its memory has no room for 8504 more bytes (0 of 8192 in use); grow it with shmkv resize --name ${t.name} --memory 16384`,
      },
    });
  });

  it("keeps its file within memoryBytes + 96 bytes an entry + 1 MiB", () => {
    using t = new TempStore({ maxEntries: 50_000, keyMax: 4096, valueMax: 1 << 26, memoryBytes: 1 << 24 });
    expect(statSync(`/dev/shm${t.name}`).size).toBeLessThanOrEqual((1 << 24) + 96 * 50_000 + (1 << 20));
  });

  it("refuses a memoryBytes out of range, creating nothing", () => {
    for (const memoryBytes of [4095, 2 ** 35 + 1, 1.5]) {
      expect(() => KvStore.open("/shmkv-heap-never", { create: true, memoryBytes })).toThrow(
        new KvError("INVALID_ARGUMENT", `memoryBytes must be 0 or an integer from 4096 to ${2 ** 35}, not ${memoryBytes}`),
      );
    }
  });
});
