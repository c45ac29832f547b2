/** Expiry: entries set with a ttl are absent to every reader once it passes, and expire() reclaims them. */
import { describe, expect, it } from "bun:test";
import { KvStore, TTL_MAX_MS } from "../src/store.ts";
import { errorOf } from "./helpers/errors.ts";
import { whileStopped } from "./helpers/kvtool.ts";
import { READ_PATHS, TempStore } from "./helpers/shm.ts";
import { waitFor } from "./helpers/wait.ts";

/** A ttl short enough to wait for, long enough that a read right after the set comes before it. */
const TTL = 40;

/** Wait until `key` reads as absent; fails if it does so before `expiresAt`. */
async function expired(store: KvStore, key: string, expiresAt: number): Promise<void> {
  await waitFor(
    () => {
      const gone = store.get(key) === undefined;
      if (gone) expect(Date.now()).toBeGreaterThanOrEqual(expiresAt);
      return gone;
    },
    { what: `${key} to expire` },
  );
}

describe.each(READ_PATHS)("KvStore expiry, read %s", (_path, geometry) => {
  it("reads an entry set with a ttl until it expires, then as absent, through every handle and every read", async () => {
    using t = new TempStore(geometry);
    using other = KvStore.open(t.name);
    t.store.set("stays", "1");
    const before = Date.now();
    const revision = t.store.set("goes", "2", { ttl: TTL });
    const after = Date.now();
    const entry = t.store.getEntry("goes")!;
    expect(entry).toEqual({ key: "goes", value: "2", timestamp: entry.timestamp, revision, expiresAt: entry.expiresAt! });
    expect(entry.expiresAt).toBeGreaterThanOrEqual(before + TTL);
    expect(entry.expiresAt).toBeLessThanOrEqual(after + TTL);
    expect([other.get("goes"), other.getEntryBytes("goes")?.expiresAt, t.store.keysFrom(0, 10).items]).toEqual(["2", entry.expiresAt, ["stays", "goes"]]);

    await expired(other, "goes", entry.expiresAt!);
    const stays = { key: "stays", value: "1", timestamp: t.store.getEntry("stays")!.timestamp, revision: 1 };
    for (const store of [t.store, other]) {
      expect([store.get("goes"), store.getEntry("goes"), store.getEntryBytes("goes")]).toEqual([undefined, undefined, undefined]);
      expect(store.keysFrom(0, 10).items).toEqual(["stays"]);
      expect(store.entriesFrom(0, 10).items).toEqual([stays]);
      expect(store.rawEntriesFrom(0, 10).items.map((e) => e.key)).toEqual([new TextEncoder().encode("stays")]);
      expect(store.status().entries).toEqual([stays]);
    }
    // Absent, but its slot and bytes are held until a writer reclaims them.
    expect(t.store.count).toBe(2);
  });

  it("reads an entry a stopped writer is rewriting from the undo record until it expires, then as absent", async () => {
    using t = new TempStore(geometry);
    using busy = KvStore.open(t.name, { lockTimeoutMs: 0 });
    // Long enough to outlast starting and stopping the writer.
    t.store.set("k", "old", { ttl: 400 });
    const expiresAt = t.store.getEntry("k")!.expiresAt!;
    // The entry rewritten, the undo record armed.
    const { exitCode } = await whileStopped(t.name, ["set", "k", "new"], 6, async () => {
      expect(t.store.getEntry("k")).toEqual({ key: "k", value: "old", timestamp: expect.any(Number), revision: 1, expiresAt });
      expect(() => busy.expire()).toThrow(expect.objectContaining({ code: "STORE_BUSY" }));
      await expired(t.store, "k", expiresAt);
      expect([t.store.getEntryBytes("k"), t.store.keysFrom(0, 10).items]).toEqual([undefined, []]);
    });
    expect(exitCode).toBe(0);
    expect(t.store.getEntry("k")).toEqual({ key: "k", value: "new", timestamp: expect.any(Number), revision: 2 });
  });
});

describe("KvStore.set with a ttl", () => {
  it("gives a plain set an entry that never expires, clearing the ttl an entry had", () => {
    using t = new TempStore();
    t.store.set("k", "1", { ttl: 60_000 });
    expect(t.store.getEntry("k")!.expiresAt).toBeGreaterThan(Date.now());
    t.store.set("k", "2");
    expect(t.store.getEntry("k")).toEqual({ key: "k", value: "2", timestamp: t.store.getEntry("k")!.timestamp, revision: 2 });
    t.store.set("k", "3", { ttl: undefined });
    expect(t.store.getEntry("k")!.expiresAt).toBeUndefined();
  });

  it("rounds a fraction of a millisecond up to a whole one", () => {
    using t = new TempStore();
    const before = Date.now();
    t.store.set("k", "v", { ttl: 60_000.2 });
    const expiresAt = t.store.getEntry("k")!.expiresAt!;
    expect(Number.isInteger(expiresAt)).toBe(true);
    expect(expiresAt).toBeGreaterThanOrEqual(before + 60_001);
  });

  it("refuses a ttl that is not a positive number of milliseconds within TTL_MAX_MS, writing nothing", () => {
    using t = new TempStore();
    for (const ttl of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, TTL_MAX_MS + 1, "10" as unknown as number]) {
      const error = errorOf(() => t.store.set("k", "v", { ttl }));
      expect([error.code, error.message]).toEqual([
        "INVALID_ARGUMENT",
        `ttl must be a positive number of milliseconds, at most ${TTL_MAX_MS} (leave it out for an entry that never expires), not ${String(ttl)}`,
      ]);
      expect(errorOf(() => t.store.setIf("k", "v", 0, { ttl })).code).toBe("INVALID_ARGUMENT");
      expect(errorOf(() => t.store.incr("n", 1, { ttl })).code).toBe("INVALID_ARGUMENT");
    }
    expect(t.store.version).toBe(0);
  });

  it("lets setIf expecting revision 0 create a key whose entry has expired, with a ttl of its own", async () => {
    using t = new TempStore();
    t.store.setIf("lock", "a", 0, { ttl: TTL });
    expect(() => t.store.setIf("lock", "b", 0)).toThrow("it exists (revision 1)");
    await expired(t.store, "lock", t.store.getEntry("lock")!.expiresAt!);
    const revision = t.store.setIf("lock", "b", 0, { ttl: 60_000 });
    expect(t.store.getEntry("lock")).toMatchObject({ value: "b", revision });
    expect(t.store.getEntry("lock")!.expiresAt).toBeGreaterThan(Date.now());
  });
});

describe("KvStore.incr with a ttl", () => {
  it("creates an expiring counter, keeps its expiry on later increments, and counts from 0 once it has expired", async () => {
    using t = new TempStore();
    expect(t.store.incr("hits", 1, { ttl: TTL })).toBe(1n);
    const expiresAt = t.store.getEntry("hits")!.expiresAt!;
    expect(t.store.increment("hits", 2, { ttl: 60_000 }).value).toBe(3n);
    expect(t.store.incr("hits")).toBe(4n);
    expect(t.store.getEntry("hits")).toMatchObject({ value: "4", expiresAt });
    await expired(t.store, "hits", expiresAt);
    expect(t.store.incr("hits", 5)).toBe(5n);
    expect(t.store.getEntry("hits")!.expiresAt).toBeUndefined();
  });
});

describe("KvStore.expire", () => {
  it("reclaims expired entries only, each a change with reason expired, counted in stats()", async () => {
    using t = new TempStore({ maxEntries: 4 });
    t.store.set("a", "1", { ttl: TTL });
    t.store.set("b", "2");
    const expiresAt = t.store.getEntry("a")!.expiresAt!;
    expect(t.store.expire()).toBe(0);
    await expired(t.store, "a", expiresAt);
    expect([t.store.count, t.store.stats().expired]).toEqual([2, 0]);
    expect(t.store.expire()).toBe(1);
    expect(t.store.expire()).toBe(0);
    expect(t.store.stats()).toMatchObject({ version: 3, entry_count: 1, expired: 1, evictions: 0 });
    const { changes } = t.store.changesSince(0);
    expect(changes.map(({ timestamp, ...change }) => change)).toEqual([
      { revision: 1, op: "set", key: "a", value: "1", expiresAt },
      { revision: 2, op: "set", key: "b", value: "2" },
      { revision: 3, op: "delete", key: "a", reason: "expired" },
    ]);
  });

  it("looks at no more slots than it is given, going on from where it stopped", async () => {
    using t = new TempStore({ maxEntries: 8 });
    for (let i = 0; i < 8; i++) t.store.set(`k${i}`, "v", { ttl: TTL });
    await expired(t.store, "k7", t.store.getEntry("k7")!.expiresAt!);
    expect([t.store.expire(3), t.store.expire(3), t.store.expire(3), t.store.expire(3)]).toEqual([3, 3, 2, 0]);
    expect(t.store.count).toBe(0);
  });

  it("refuses a max that is not an integer from 1 to 2^32 - 1", () => {
    using t = new TempStore();
    for (const max of [0, -1, 1.5, 2 ** 32]) expect(errorOf(() => t.store.expire(max)).code).toBe("INVALID_ARGUMENT");
  });
});

describe("KvStore.apply with an expiry", () => {
  it("writes the entry with the expiry given, and refuses one that is no Unix millisecond", async () => {
    using t = new TempStore();
    const expiresAt = Date.now() + TTL;
    expect(t.store.apply("set", "k", "v", 5, 100, expiresAt)).toBe(true);
    expect(t.store.getEntry("k")).toEqual({ key: "k", value: "v", timestamp: 100, revision: 5, expiresAt });
    for (const bad of [-1, 1.5, Number.NaN]) expect(errorOf(() => t.store.apply("set", "k", "v", 6, 100, bad)).code).toBe("INVALID_ARGUMENT");
    await expired(t.store, "k", expiresAt);
  });

  it("applies \"expired\" as a delete with reason expired, of a key held or not", () => {
    using t = new TempStore();
    t.store.apply("set", "k", "v", 5, 100, Date.now() + 60_000);
    expect([t.store.apply("expired", "k", "", 6, 101), t.store.apply("expired", "never-held", "", 7, 102)]).toEqual([true, true]);
    expect({ k: t.store.getEntry("k"), version: t.store.version, changes: t.store.changesSince(5).changes }).toEqual({
      k: undefined,
      version: 7,
      changes: [
        { revision: 6, op: "delete", key: "k", timestamp: 101, reason: "expired" },
        { revision: 7, op: "delete", key: "never-held", timestamp: 102, reason: "expired" },
      ],
    });
  });
});
