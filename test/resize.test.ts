/** Resizing a store (kv_resize, KvStore.resize, shmkv resize): nothing is lost, everyone follows. */
import { describe, expect, it } from "bun:test";
import { existsSync, statSync } from "node:fs";
import { main } from "../src/cli.ts";
import { ChangeFeed, type FeedEvent } from "../src/feed.ts";
import { StoreSlot } from "../src/http/store-slot.ts";
import { kvHash } from "../src/layout.ts";
import { startServer, type Logger } from "../src/server.ts";
import { KvStore } from "../src/store.ts";
import type { KvError } from "../src/errors.ts";
import { LIMITS } from "../src/limits.ts";
import { bunFixture, checksummed, kvtool, kvtoolAsync, verifyChecksummed, whileStopped, type Ran } from "./helpers/kvtool.ts";
import { READ_PATHS, TempStore, uniqueName, unlinkQuietly } from "./helpers/shm.ts";
import { waitFor } from "./helpers/wait.ts";

const inode = (name: string) => statSync(`/dev/shm${name}`).ino;

/** Every entry with its revision and timestamp, in key order. */
function entries(store: KvStore) {
  return store.status().entries.sort((a, b) => a.key.localeCompare(b.key));
}

describe.each(READ_PATHS)("a store %s", (_, geometry) => {
  it("follows a resize made by another process: entries, revisions, timestamps, version and changes carry over", () => {
    using t = new TempStore(geometry);
    for (const key of ["a", "b", "c"]) t.store.set(key, `value of ${key}`);
    t.store.delete("b");
    const before = { entries: entries(t.store), version: t.store.version, changes: t.store.changesSince(0) };
    const oldInode = inode(t.name);
    const grown = geometry.maxEntries + 10;
    expect(kvtool(t.name, ["resize", `${grown}`, "0", "300"])).toEqual({ exitCode: 0, signalCode: null, stdout: "", stderr: "" });
    expect(inode(t.name)).not.toBe(oldInode);
    expect(t.store.identity?.ino).toBe(inode(t.name));
    expect({ entries: entries(t.store), version: t.store.version, changes: t.store.changesSince(0) }).toEqual(before);
    expect([t.store.maxEntries, t.store.valueMax]).toEqual([grown, 300]);
    expect(t.store.set("d", "x".repeat(300))).toBe(before.version + 1);
    expect(kvtool(t.name, ["get", "d"]).stdout).toBe("x".repeat(300));
    t.store.check();
  });
});

describe("KvStore.resize", () => {
  it("gives up with STORE_BUSY past its lockTimeoutMs while a writer holds the lock, and refuses a negative one", async () => {
    using t = new TempStore();
    const attempt = (lockTimeoutMs: number) => {
      try {
        KvStore.resize(t.name, { maxEntries: 20, lockTimeoutMs });
        return "resized";
      } catch (error) {
        return (error as KvError).code;
      }
    };
    await whileStopped(t.name, ["set", "held", "x"], 4, () =>
      expect([attempt(20), attempt(0), attempt(-1), t.store.maxEntries]).toEqual(["STORE_BUSY", "STORE_BUSY", "INVALID_ARGUMENT", 10]),
    );
    expect([attempt(20), t.store.maxEntries]).toEqual(["resized", 20]);
  });

  it("refuses a geometry that cannot hold the data, saying why, and changes nothing", () => {
    using t = new TempStore();
    t.store.set("a-long-key", "v");
    t.store.set("k", "a longer value");
    const oldInode = inode(t.name);
    const refusal = (options: Parameters<typeof KvStore.resize>[1]) => {
      try {
        KvStore.resize(t.name, options);
        return "resized";
      } catch (error) {
        const { code, message } = error as { code: string; message: string };
        return { code, message };
      }
    };
    expect([refusal({ maxEntries: 1 }), refusal({ keyMax: 5 }), refusal({ valueMax: 4 })]).toEqual([
      { code: "TABLE_FULL", message: `cannot resize ${t.name}: it holds 2 entries, more than max_entries 1; nothing changed` },
      { code: "KEY_TOO_LONG", message: `cannot resize ${t.name}: its longest key is 10 bytes, more than key_max 5; nothing changed` },
      { code: "VALUE_TOO_LONG", message: `cannot resize ${t.name}: its longest value is 14 bytes, more than value_max 4; nothing changed` },
    ]);
    expect(inode(t.name)).toBe(oldInode);
    expect(existsSync(`/dev/shm${t.name}.resize`)).toBe(false);
    expect([t.store.maxEntries, t.store.version, t.store.get("k")]).toEqual([10, 2, "a longer value"]);
  });

  it("keeps a replica read-only", () => {
    using t = new TempStore();
    t.store.setReadOnly(true);
    t.store.apply("set", "a", "1", 5, 100);
    KvStore.resize(t.name, { maxEntries: 20 });
    expect([t.store.readOnly, t.store.maxEntries, t.store.version]).toEqual([true, 20, 5]);
    expect(() => t.store.set("b", "2")).toThrow(expect.objectContaining({ code: "READ_ONLY" }));
  });

  it("leaves the store as it was, and usable, when the resizer is killed mid-copy", () => {
    using t = new TempStore();
    t.store.set("a", "1");
    const oldInode = inode(t.name);
    expect(kvtool(t.name, ["resize", "64", "0", "0"], 20).signalCode).toBe("SIGKILL");
    // The next writer repairs (the dead resizer held the lock), which removes its copy.
    t.store.set("b", "2");
    expect([inode(t.name), existsSync(`/dev/shm${t.name}.resize`), t.store.maxEntries]).toEqual([oldInode, false, 10]);
    expect([t.store.get("a"), t.store.get("b"), t.store.version]).toEqual(["1", "2", 2]);
    t.store.check();
  });
});

const NKEYS = 200;
const TOTAL = 3 * NKEYS;
// A heap: each entry's chunk is 32 bytes (8 of head, a key of 6 and a value of 18 at most, rounded up),
// so 24 KiB holds them with room for the new chunk of the rewrite in progress.
const THROUGH_RESIZES = [
  { store: "without memoryBytes", options: {}, resizes: [[`${4 * TOTAL}`, "0", "0"], [`${TOTAL}`, "0", "0"]] },
  {
    store: "with memoryBytes, its heap grown then shrunk close to its data",
    options: { memoryBytes: 24 * 1024 },
    resizes: [[`${4 * TOTAL}`, "0", "0", `${256 * 1024}`], [`${TOTAL}`, "0", "0", `${24 * 1024}`]],
  },
];

describe.each(THROUGH_RESIZES)("writers and readers, C and Bun, running through a grow and a shrink to just fit, a store $store", ({ options, resizes }) => {
  it("lose no acknowledged write, see no torn or older value, and get no error", async () => {
    const nkeys = NKEYS;
    const prefixes = ["b0", "c1", "c2"];
    const writes = { b0: 200_000, c1: 500_000, c2: 500_000 } as Record<string, number>;
    const total = TOTAL;
    using t = new TempStore({ maxEntries: total, keyMax: 16, valueMax: 40, ...options });
    const firstInode = inode(t.name);
    const running = new Set(prefixes);
    const writer = (prefix: string, started: Promise<Ran>) => started.finally(() => running.delete(prefix));
    // The Bun writer first (it starts slower), then the C writers and reader once it is writing.
    const writers = [writer("b0", bunFixture("sequence.ts", [t.name, "b0", `${nkeys}`, `${writes.b0}`]))];
    await waitFor(() => t.store.get("b0-0"), { what: "the Bun writer to start" });
    writers.push(...["c1", "c2"].map((p) => writer(p, kvtoolAsync(t.name, ["sequence", p, `${nkeys}`, `${writes[p]}`]))));
    const cReader = kvtoolAsync(t.name, ["monotone", "b0", `${nkeys}`, "2000000"]);
    // This process reads too, between its own awaits, and checks the same two properties.
    const last = new Map<string, number>();
    const problems: string[] = [];
    const readSome = () => {
      for (let i = 0; i < 400; i++) {
        const key = `c1-${i % nkeys}`;
        const value = t.store.get(key);
        if (value === undefined) continue;
        if (!verifyChecksummed(value, kvHash)) problems.push(`torn ${value}`);
        const seen = Number(value.slice(value.indexOf(":") + 1, value.indexOf("#")));
        if (seen < (last.get(key) ?? -1)) problems.push(`${key} went back to ${seen}`);
        last.set(key, seen);
      }
      return true;
    };
    const resizedWhileWriting: string[][] = [];
    await waitFor(() => readSome() && t.store.get("c1-0") && t.store.get("c2-0"), { what: "the C writers to start" });
    for (const geometry of resizes) {
      const resize = kvtoolAsync(t.name, ["resize", ...geometry]);
      while (!Bun.peek.status(resize).startsWith("fulfilled")) {
        readSome();
        await Bun.sleep(0); // let the resizer's exit in
      }
      expect((await resize).exitCode).toBe(0);
      resizedWhileWriting.push([...running]);
    }
    const results = await Promise.all(writers);
    expect(results.map((r) => [r.exitCode, r.stdout.trim(), r.stderr])).toEqual(prefixes.map((p) => [0, `${writes[p]}`, ""]));
    const reader = await cReader;
    expect([reader.exitCode, reader.stdout.trim().split(" ").slice(1)]).toEqual([0, ["0", "0"]]);
    expect(problems).toEqual([]);
    // The test means something only if the resizes overlapped the writes.
    expect(resizedWhileWriting).toEqual([prefixes, prefixes]);
    expect(inode(t.name)).not.toBe(firstInode);
    const version = prefixes.reduce((sum, p) => sum + writes[p]!, 0);
    expect([t.store.maxEntries, t.store.count, t.store.version, t.store.memoryOption]).toEqual([total, total, version, options.memoryBytes ?? 0]);
    t.store.check();
    // Every key holds its last write: no acknowledged write was lost to an old segment.
    const wrong = prefixes.flatMap((prefix) =>
      Array.from({ length: nkeys }, (_, k) => [`${prefix}-${k}`, checksummed(`${prefix}:${writes[prefix]! - nkeys + k}`, kvHash)]).filter(
        ([key, value]) => t.store.get(key!) !== value,
      ),
    );
    expect(wrong).toEqual([]);
  });
});

describe("following a resize, above the store", () => {
  it("a change feed carries on with the same revisions, and no resync", async () => {
    using t = new TempStore();
    t.store.set("before", "1");
    const feed = new ChangeFeed(t.store, 2);
    const events: FeedEvent[] = [];
    const stop = feed.subscribe(0, (e) => events.push(e));
    await waitFor(() => events.length === 1);
    expect(kvtool(t.name, ["resize", "50", "0", "0"]).exitCode).toBe(0);
    expect(kvtool(t.name, ["set", "after", "2"]).exitCode).toBe(0);
    await waitFor(() => events.length >= 2);
    stop();
    expect(events.map((e) => (e.type === "change" ? [e.change.revision, e.change.key] : e))).toEqual([
      [1, "before"],
      [2, "after"],
    ]);
  });

  it("a server's store slot keeps its store, which follows, instead of reattaching as to a replaced segment", () => {
    using t = new TempStore();
    t.store.set("k", "v");
    using slot = StoreSlot.opening(() => KvStore.open(t.name));
    const store = slot.current;
    expect(kvtool(t.name, ["resize", "30", "0", "0"]).exitCode).toBe(0);
    slot.recheck();
    expect([slot.reattached, slot.current === store, store?.maxEntries, store?.get("k")]).toEqual([undefined, true, 30, "v"]);
  });

  it("a server's store slot reattaches, not throws, when the resized segment was unlinked before its store followed", () => {
    using t = new TempStore();
    using slot = StoreSlot.opening(() => KvStore.open(t.name), { retryMs: 60_000 });
    expect(kvtool(t.name, ["resize", "30", "0", "0"]).exitCode).toBe(0);
    KvStore.unlink(t.name);
    slot.recheck();
    expect([slot.reattached?.reason, slot.current]).toEqual([`/dev/shm${t.name} was unlinked`, undefined]);
  });

  it("a server started with another geometry warns, naming both and the resize command, and changes nothing", async () => {
    const name = uniqueName();
    try {
      KvStore.open(name, { create: true }).close();
      const errors: string[] = [];
      const log: Logger = { info: () => {}, error: (line) => void errors.push(line) };
      const server = startServer({ host: "127.0.0.1", port: 0, name, create: { maxEntries: 1000 }, maxBodyBytes: 1024, logRequests: false }, log);
      await server.abort();
      expect(errors).toEqual([
        `warning: ${name} exists with 10 entries, 63 bytes of key, 255 bytes of value; asked for 1000 entries: the existing ` +
          `segment is used as it is (to change it, keeping every entry: shmkv resize --name ${name} --max-entries 1000)`,
      ]);
      using store = KvStore.open(name);
      expect(store.maxEntries).toBe(10);
    } finally {
      unlinkQuietly(name);
    }
  });
});

describe("shmkv resize", () => {
  async function cli(argv: string[], env: Record<string, string> = {}) {
    const run = { code: -1, out: [] as string[], err: [] as string[] };
    run.code = await main(argv, env, { out: (t) => void run.out.push(t), err: (t) => void run.err.push(t) });
    return run;
  }

  it("grows the store in place, keeping its entries, and ignores KV_MAX_ENTRIES", async () => {
    using t = new TempStore();
    t.store.set("k", "v");
    const env = { KV_SHM_NAME: t.name, KV_MAX_ENTRIES: "7" };
    expect(await cli(["resize", "--max-entries", "1000", "--value-max", "1024"], env)).toEqual({
      code: 0,
      out: [
        `${t.name} resized: 10 entries, keys up to 63 bytes, values up to 255 bytes, memory 3696 bytes -> 1000 entries, ` +
          "keys up to 63 bytes, values up to 1024 bytes, memory 1105104 bytes; 1 entries kept, version 1",
      ],
      err: [],
    });
    expect([t.store.maxEntries, t.store.valueMax, t.store.get("k")]).toEqual([1000, 1024, "v"]);
  });

  it("takes a --value-max beyond the heapless limit for a store that keeps its heap, and refuses it for one without", async () => {
    using heap = new TempStore({ memoryBytes: 4 * 2 ** 20 });
    using plain = new TempStore();
    const longest = String(LIMITS.valueMax + 1);
    const grown = await cli(["resize", "--value-max", longest], { KV_SHM_NAME: heap.name });
    const refused = await cli(["resize", "--value-max", longest], { KV_SHM_NAME: plain.name });
    expect({ grown: [grown.code, heap.store.valueMax, heap.store.memoryBytes], refused: [refused.code, plain.store.valueMax] }).toEqual({
      grown: [0, LIMITS.valueMax + 1, 4 * 2 ** 20],
      refused: [2, 255],
    });
  });

  it("says why a geometry cannot hold the store, with exit status 1", async () => {
    using t = new TempStore();
    t.store.set("a", "1");
    t.store.set("b", "2");
    expect(await cli(["resize", "--max-entries", "1", "--json"], { KV_SHM_NAME: t.name })).toEqual({
      code: 1,
      out: [],
      err: [JSON.stringify({ detail: `cannot resize ${t.name}: it holds 2 entries, more than max_entries 1; nothing changed`, code: "TABLE_FULL" })],
    });
  });

  it("--memory grows the heap, shrinks it to just fit the entries, and refuses less, saying what they need", async () => {
    using t = new TempStore({ maxEntries: 16, valueMax: 5000, memoryBytes: 8192 });
    const values = { a: "x".repeat(3000), b: "y".repeat(1500), c: "z" };
    for (const [key, value] of Object.entries(values)) t.store.set(key, value);
    // 8 bytes of head, key and value, rounded up to 16: 3024 + 1520 + 32.
    const need = 3024 + 1520 + 32;
    const env = { KV_SHM_NAME: t.name };
    expect((await cli(["resize", "--memory", "1M", "--value-max", "200000"], env)).code).toBe(0);
    t.store.set("big", "w".repeat(150_000));
    expect([t.store.memoryBytes, t.store.valueMax, t.store.get("big")]).toEqual([2 ** 20, 200_000, "w".repeat(150_000)]);
    t.store.delete("big");
    const refused = await cli(["resize", "--memory", `${need - 16}`, "--json"], env);
    expect(refused).toEqual({
      code: 1,
      out: [],
      err: [
        JSON.stringify({
          detail: `cannot resize ${t.name}: its entries need ${need} bytes of memory (chunk heads and rounding included), more than --memory ${need - 16}; nothing changed`,
          code: "TABLE_FULL",
        }),
      ],
    });
    expect(t.store.memoryBytes).toBe(2 ** 20);
    expect((await cli(["resize", "--memory", `${need}`], env)).code).toBe(0);
    expect([t.store.memoryBytes, t.store.memoryUsed]).toEqual([need, need]);
    expect(Object.fromEntries(t.store.status().entries.map((e) => [e.key, e.value]))).toEqual(values);
    expect(kvtool(t.name, ["check"]).exitCode).toBe(0);
    // Full to the byte: a set says so, and how to grow it.
    expect(() => t.store.set("d", "1")).toThrow(`grow it with shmkv resize --name ${t.name} --memory`);
  });

  it("set on an existing store with another geometry warns and leaves it as it is", async () => {
    using t = new TempStore();
    const run = await cli(["set", "k", "v", "--max-entries", "1000"], { KV_SHM_NAME: t.name });
    expect(run).toEqual({
      code: 0,
      out: ["Key 'k' set successfully"],
      err: [
        `shmkv: warning: ${t.name} exists with 10 entries, 63 bytes of key, 255 bytes of value; asked for 1000 entries: the ` +
          `existing segment is used as it is (to change it, keeping every entry: shmkv resize --name ${t.name} --max-entries 1000)`,
      ],
    });
    expect(t.store.maxEntries).toBe(10);
  });

  it("set with another --memory warns, a size that rounds to the store's own does not", async () => {
    using t = new TempStore({ memoryBytes: 8192 });
    const env = { KV_SHM_NAME: t.name };
    expect((await cli(["set", "k", "v", "--memory", "8200"], env)).err).toEqual([]);
    expect((await cli(["set", "k", "v", "--memory", "9K"], env)).err).toEqual([
      `shmkv: warning: ${t.name} exists with 10 entries, 63 bytes of key, 255 bytes of value, 8192 bytes of memory; asked ` +
        `for 9216 bytes of memory: the existing segment is used as it is (to change it, keeping every entry: shmkv resize ` +
        `--name ${t.name} --memory 9216)`,
    ]);
    expect(t.store.memoryBytes).toBe(8192);
  });
});
