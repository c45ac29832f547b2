import { describe, expect, it } from "bun:test";
import { KvStore } from "../src/store.ts";
import { errorOf } from "./helpers/errors.ts";
import { TempStore, uniqueName, unlinkQuietly } from "./helpers/shm.ts";

describe("KvStore.open", () => {
  it("creates a store with the seed's geometry by default", () => {
    using t = new TempStore();
    const s = t.store;
    expect({ created: s.created, max: s.maxEntries, key: s.keyMax, value: s.valueMax, version: s.version, count: s.count })
      .toEqual({ created: true, max: 10, key: 63, value: 255, version: 0, count: 0 });
  });

  it("opens an existing store, adopting its geometry over the options given", () => {
    using t = new TempStore({ maxEntries: 3, keyMax: 8, valueMax: 16 });
    using other = KvStore.open(t.name, { create: true, maxEntries: 100, keyMax: 63, valueMax: 255 });
    expect({ created: other.created, max: other.maxEntries, key: other.keyMax, value: other.valueMax })
      .toEqual({ created: false, max: 3, key: 8, value: 16 });
  });

  it("fails with ENOENT for a missing store without create", () => {
    expect(errorOf(() => KvStore.open(uniqueName())).code).toBe("ENOENT");
  });

  it("fails with EEXIST for an existing store with exclusive", () => {
    using t = new TempStore();
    expect(errorOf(() => KvStore.open(t.name, { create: true, exclusive: true })).code).toBe("EEXIST");
  });

  it("rejects invalid names and options without creating anything", () => {
    for (const name of ["noslash", "/", "/a/b", `/${"n".repeat(255)}`, "/nul\0byte"]) {
      expect(errorOf(() => KvStore.open(name, { create: true })).code).toBe("INVALID_ARGUMENT");
    }
    const name = uniqueName();
    for (const bad of [{ maxEntries: 0 }, { keyMax: 4097 }, { valueMax: 1.5 }, { mode: 0o1000 }, { maxEntries: 2 ** 24 + 1 }]) {
      expect(errorOf(() => KvStore.open(name, { create: true, ...bad })).code).toBe("INVALID_ARGUMENT");
    }
    expect(errorOf(() => KvStore.open(name)).code).toBe("ENOENT");
  });

  it("creates the segment with mode 0600 by default and the mode asked for, whatever the umask", async () => {
    const old = process.umask(0o077);
    try {
      using a = new TempStore();
      using b = new TempStore({ mode: 0o660 });
      const mode = async (n: string) => (await Bun.file(`/dev/shm${n}`).stat()).mode & 0o777;
      expect([await mode(a.name), await mode(b.name)]).toEqual([0o600, 0o660]);
    } finally {
      process.umask(old);
    }
  });
});

describe("KvStore reads and writes", () => {
  it("sets, gets and overwrites values, one version per write", () => {
    using t = new TempStore();
    const s = t.store;
    expect(s.set("alpha", "one")).toBe(1);
    expect(s.set("beta", "two")).toBe(2);
    expect(s.set("alpha", "uno")).toBe(3);
    expect([s.get("alpha"), s.get("beta"), s.get("gamma"), s.version, s.count]).toEqual(["uno", "two", undefined, 3, 2]);
  });

  it("reports each entry's timestamp in Unix seconds and its revision", () => {
    using t = new TempStore();
    const before = Math.floor(Date.now() / 1000);
    t.store.set("k", "v");
    const e = t.store.getEntry("k")!;
    expect(e.timestamp).toBeGreaterThanOrEqual(before);
    expect(e.timestamp).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000));
    expect(e).toEqual({ key: "k", value: "v", timestamp: e.timestamp, revision: 1 });
  });

  it("round-trips UTF-8 and empty values", () => {
    using t = new TempStore();
    const cases = { "ключ": "значение", "🔑/ü": "✓ 🎉", empty: "", "a b\tc": "line1\nline2\0after-nul" };
    for (const [k, v] of Object.entries(cases)) t.store.set(k, v);
    expect(Object.fromEntries(Object.keys(cases).map((k) => [k, t.store.get(k)]))).toEqual(cases);
  });

  it("counts limits in UTF-8 bytes, not characters", () => {
    using t = new TempStore();
    const s = t.store;
    s.set("€".repeat(21), "é".repeat(127)); // 63 and 254 bytes
    expect(s.get("€".repeat(21))).toBe("é".repeat(127));
    expect(errorOf(() => s.set("€".repeat(21) + "x", "v")).code).toBe("KEY_TOO_LONG");
    expect(errorOf(() => s.set("k", "é".repeat(128))).code).toBe("VALUE_TOO_LONG");
    expect(errorOf(() => s.set("k".repeat(10_000), "v")).code).toBe("KEY_TOO_LONG");
    expect(errorOf(() => s.get("k".repeat(64))).code).toBe("KEY_TOO_LONG");
    expect(s.version).toBe(1);
  });

  it("refuses text whose last character crosses the limit, whatever its width", () => {
    using t = new TempStore();
    const s = t.store;
    const fits = { key: `${"k".repeat(60)}€`, value: `${"v".repeat(251)}😀` }; // 63 and 255 bytes
    s.set(fits.key, fits.value);
    expect(s.get(fits.key)).toBe(fits.value);
    for (const key of [`${"k".repeat(61)}€`, `${"k".repeat(62)}😀`, `${"k".repeat(63)}é`]) {
      expect([errorOf(() => s.set(key, "v")).code, errorOf(() => s.get(key)).code]).toEqual(["KEY_TOO_LONG", "KEY_TOO_LONG"]);
    }
    for (const value of [`${"v".repeat(252)}😀`, `${"v".repeat(253)}€`, `${"v".repeat(254)}é`]) {
      expect(errorOf(() => s.set("k", value)).code).toBe("VALUE_TOO_LONG");
    }
    // A lone surrogate is stored as U+FFFD (3 bytes), as TextEncoder would encode it.
    s.set(`${"k".repeat(60)}\ud800`, "lone");
    expect(s.get(`${"k".repeat(60)}\ufffd`)).toBe("lone");
    expect(s.version).toBe(2);
  });

  it("rejects empty keys and keys holding NUL, on reads and writes alike", () => {
    using t = new TempStore();
    for (const key of ["", "a\0b"]) {
      expect(errorOf(() => t.store.set(key, "v")).code).toBe("INVALID_ARGUMENT");
      expect(errorOf(() => t.store.get(key)).code).toBe("INVALID_ARGUMENT");
      expect(errorOf(() => t.store.delete(key)).code).toBe("INVALID_ARGUMENT");
    }
    expect(t.store.version).toBe(0);
  });

  it("fills to capacity, then refuses new keys but still updates existing ones", () => {
    using t = new TempStore();
    for (let i = 0; i < 10; i++) t.store.set(`k${i}`, `v${i}`);
    const err = errorOf(() => t.store.set("one-too-many", "x"));
    expect({ code: err.code, version: t.store.version }).toEqual({ code: "TABLE_FULL", version: 10 });
    t.store.set("k3", "updated");
    expect([t.store.get("k3"), t.store.count]).toEqual(["updated", 10]);
  });

  it("deletes entries, counting a version only when something was removed", () => {
    using t = new TempStore();
    t.store.set("a", "1");
    expect([t.store.delete("a"), t.store.delete("a"), t.store.get("a"), t.store.version, t.store.count])
      .toEqual([true, false, undefined, 2, 0]);
  });

  it("lists entries in slot order: insertion order, freed slots reused", () => {
    using t = new TempStore();
    const s = t.store;
    for (const k of ["a", "b", "c"]) s.set(k, k.toUpperCase());
    s.delete("b");
    s.set("d", "D");
    const st = s.status();
    expect(st).toEqual({
      version: 5,
      entry_count: 3,
      max_entries: 10,
      key_max: 63,
      value_max: 255,
      memory_bytes: 11 * 336, // room for 10 + 1 of the largest entries: chunks of 8 + 63 + 255, rounded to 16
      memory_used: 3 * 336,
      evict: "none",
      entries: ["a", "d", "c"].map((k, i) => ({
        key: k,
        value: k.toUpperCase(),
        timestamp: st.entries[i]!.timestamp,
        revision: ({ a: 1, d: 5, c: 3 } as Record<string, number>)[k]!,
      })),
    });
  });

  it("compare-and-set writes only at the expected revision", () => {
    using t = new TempStore();
    const s = t.store;
    expect(s.setIf("k", "created", 0)).toBe(1);
    expect(errorOf(() => s.setIf("k", "again", 0)).code).toBe("CONFLICT");
    expect(errorOf(() => s.setIf("k", "stale", 7)).code).toBe("CONFLICT");
    expect(s.setIf("k", "next", 1)).toBe(2);
    expect(errorOf(() => s.deleteIf("k", 1)).code).toBe("CONFLICT");
    expect(s.deleteIf("k", 2)).toBe(true);
    expect([s.get("k"), s.version]).toEqual([undefined, 3]);
  });

  it("passes its own integrity check after a churn of writes", () => {
    using t = new TempStore({ maxEntries: 50 });
    for (let i = 0; i < 2000; i++) {
      const k = `k${(i * 7919) % 80}`;
      if (i % 3 === 0) t.store.delete(k);
      else if (t.store.count < 50 || t.store.get(k) !== undefined) t.store.set(k, `v${i}`);
    }
    expect(() => t.store.check()).not.toThrow();
  });
});

describe("KvStore with bytes", () => {
  const key = new Uint8Array([0x6b, 0xff]);
  const value = new Uint8Array([0, 0xff, 0xfe, 0x80]);

  it("writes byte keys and values as they are, and reads them back as stored", () => {
    using t = new TempStore({ maxEntries: 4 });
    const revision = t.store.set(key, value);
    t.store.set("text", "héllo");
    const { items } = t.store.rawEntriesFrom(0, 10);
    const stamp = items[0]!.timestamp;
    expect(items).toEqual([
      { key, value, revision, timestamp: stamp },
      { key: new TextEncoder().encode("text"), value: new TextEncoder().encode("héllo"), revision: 2, timestamp: items[1]!.timestamp },
    ]);
    expect(t.store.changeBytesSince(0)).toEqual({
      version: 2,
      expired: false,
      changes: [
        { revision: 1, op: "set", key, value, timestamp: stamp },
        { revision: 2, op: "set", key: new TextEncoder().encode("text"), value: new TextEncoder().encode("héllo"), timestamp: items[1]!.timestamp },
      ],
    });
    expect([t.store.setIf(key, new Uint8Array(0), revision), t.store.deleteIf(key, revision + 2), t.store.delete(key)]).toEqual([3, true, false]);
  });

  it("refuses byte keys and values over the limits, or a key with a NUL byte, writing nothing", () => {
    using t = new TempStore({ keyMax: 2, valueMax: 2 });
    expect([
      errorOf(() => t.store.set(new Uint8Array(3), "v")).code,
      errorOf(() => t.store.set("k", new Uint8Array(3))).code,
      errorOf(() => t.store.set(new Uint8Array([0x6b, 0]), "v")).code,
    ]).toEqual(["KEY_TOO_LONG", "VALUE_TOO_LONG", "INVALID_ARGUMENT"]);
    expect(t.store.version).toBe(0);
  });
});

describe("KvStore.incr", () => {
  it("adds a number or a bigint and gives the new value as a bigint; get reads the digits", () => {
    using t = new TempStore();
    expect([t.store.incr("n"), t.store.incr("n", 41), t.store.incr("n", -50n)]).toEqual([1n, 42n, -8n]);
    expect(t.store.get("n")).toBe("-8");
    expect(t.store.increment("n", 2n ** 62n)).toEqual({ value: 2n ** 62n - 8n, revision: 4 });
    expect(t.store.getEntry("n")?.revision).toBe(4);
  });

  it("throws NOT_A_NUMBER and ERANGE, writing nothing", () => {
    using t = new TempStore();
    t.store.set("name", "alice");
    t.store.set("max", "9223372036854775807");
    expect([errorOf(() => t.store.incr("name")).code, errorOf(() => t.store.incr("max")).code]).toEqual(["NOT_A_NUMBER", "ERANGE"]);
    expect([t.store.get("name"), t.store.get("max"), t.store.version]).toEqual(["alice", "9223372036854775807", 2]);
  });

  it("refuses an increment that is no integer, or lies beyond the number's or int64's range, before the library sees it", () => {
    using t = new TempStore();
    const codes = [1.5, Number.NaN, 2 ** 53, 2n ** 63n, -(2n ** 63n) - 1n].map((by) => errorOf(() => t.store.incr("n", by)).code);
    expect(codes).toEqual(Array(5).fill("INVALID_ARGUMENT"));
    expect(t.store.incr("n", -(2n ** 63n))).toBe(-(2n ** 63n));
  });
});

describe("KvStore.close", () => {
  it("is idempotent, and every method throws CLOSED afterwards", () => {
    const name = uniqueName();
    const s = KvStore.open(name, { create: true });
    s.set("k", "v");
    s.close();
    s.close();
    const calls: Array<() => unknown> = [
      () => s.get("k"), () => s.getEntry("k"), () => s.set("k", "v"), () => s.delete("k"),
      () => s.status(), () => s.check(), () => s.version, () => s.count, () => s.maxEntries,
    ];
    expect(calls.map((c) => errorOf(c).code)).toEqual(calls.map(() => "CLOSED"));
    expect(s.closed).toBe(true);
    KvStore.unlink(name);
  });

  it("never unlinks: the data is there for the next opener", () => {
    const name = uniqueName();
    {
      using s = KvStore.open(name, { create: true });
      s.set("kept", "yes");
    }
    using again = KvStore.open(name);
    expect(again.get("kept")).toBe("yes");
    unlinkQuietly(name);
  });

  it("unlink removes the name while open mappings keep working", () => {
    using t = new TempStore();
    KvStore.unlink(t.name);
    t.store.set("still", "works");
    expect(t.store.get("still")).toBe("works");
    expect(errorOf(() => KvStore.open(t.name)).code).toBe("ENOENT");
    expect(errorOf(() => KvStore.unlink(t.name)).code).toBe("ENOENT");
  });
});
