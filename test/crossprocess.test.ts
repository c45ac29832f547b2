import { describe, expect, it } from "bun:test";
import { join } from "node:path";
import { kvHash } from "../src/layout.ts";
import { KvStore } from "../src/store.ts";
import { BUILD, bunFixture, checksummed, kvtool, kvtoolAsync, kvtoolSetBytes, verifyChecksummed, type Ran } from "./helpers/kvtool.ts";
import { READ_PATHS, TempStore } from "./helpers/shm.ts";

/** Run test/fixtures/writer.ts in a child bun process. */
function bunWriter(name: string, id: number, nkeys: number, count: number, env: Record<string, string> = {}): Promise<Ran> {
  return bunFixture("writer.ts", [name, `${id}`, `${nkeys}`, `${count}`], env);
}

describe("one segment, C and Bun", () => {
  it("sees writes both ways", () => {
    using t = new TempStore();
    t.store.set("from-bun", "héllo C");
    expect(kvtool(t.name, ["get", "from-bun"])).toEqual({ exitCode: 0, signalCode: null, stdout: "héllo C", stderr: "" });
    expect(kvtool(t.name, ["set", "from-c", "hello Bun"]).exitCode).toBe(0);
    expect(t.store.getEntry("from-c")).toEqual({ key: "from-c", value: "hello Bun", timestamp: expect.any(Number), revision: 2 });
    expect(kvtool(t.name, ["del", "from-bun"]).exitCode).toBe(0);
    expect([t.store.get("from-bun"), t.store.version]).toEqual([undefined, 3]);
  });

  it("shares the hash: the binding's kv_hash equals the library's on random keys", () => {
    const { kvLib } = require("../src/ffi.ts") as typeof import("../src/ffi.ts");
    const lib = kvLib();
    for (let i = 0; i < 2000; i++) {
      const bytes = crypto.getRandomValues(new Uint8Array(1 + (i % 70)));
      expect(kvHash(bytes)).toBe(lib.kv_hash(bytes, bytes.length));
    }
  });
});

describe.each(READ_PATHS)("a value a C program stored as bytes, in a segment %s", (_, geometry) => {
  it("reads back byte for byte through getEntryBytes, and as text with U+FFFD through getEntry", () => {
    using t = new TempStore(geometry);
    const bytes = new Uint8Array([0x00, 0xff, 0x41, 0xe2, 0x82, 0xac, 0x80]); // NUL, a bad byte, "A", "€", a stray continuation
    expect(kvtoolSetBytes(t.name, "bin", bytes).exitCode).toBe(0);
    const { value, ...rest } = t.store.getEntryBytes("bin")!;
    expect({ bytes: [...value], rest, text: t.store.getEntry("bin")?.value, missing: t.store.getEntryBytes("nokey") }).toEqual({
      bytes: [...bytes],
      rest: { key: "bin", timestamp: expect.any(Number), revision: 1 },
      text: "\u0000\uFFFDA€\uFFFD",
      missing: undefined,
    });
  });
});

describe.each(READ_PATHS)("concurrent processes, a segment %s", (_, geometry) => {
  it("never shows a torn value, and version counts every successful write", async () => {
    using t = new TempStore(geometry);
    const writers = [
      kvtoolAsync(t.name, ["writer", "1", "8", "20000"]),
      kvtoolAsync(t.name, ["writer", "2", "8", "20000"]),
      bunWriter(t.name, 3, 8, 20000),
    ];
    const cReader = kvtoolAsync(t.name, ["reader", "8", "300000"]);
    let done = false;
    const all = Promise.all(writers).finally(() => (done = true));
    let reads = 0;
    const torn: string[] = [];
    while (!done) {
      for (let i = 0; i < 500; i++) {
        const v = t.store.get(`k${i % 8}`);
        if (v === undefined) continue;
        reads++;
        if (!verifyChecksummed(v, kvHash)) torn.push(v);
      }
      await new Promise(setImmediate); // let the child-process promises settle
    }
    const results = await all;
    const [cr] = [await cReader];
    expect(results.map((r) => [r.exitCode, r.stderr])).toEqual([[0, ""], [0, ""], [0, ""]]);
    expect(torn).toEqual([]);
    expect(reads).toBeGreaterThan(0);
    expect(cr.exitCode).toBe(0); // the C reader verifies checksums too and fails on a torn one
    const acknowledged = results.reduce((n, r) => n + Number(r.stdout), 0);
    expect(t.store.version).toBe(acknowledged);
    expect(() => t.store.check()).not.toThrow();
  });
});

describe("a writer killed while it holds the lock", () => {
  // Fault points (csrc/shared_memory_kv.c, KV_FAULT): 1 lock taken, 2 undo armed, 3 seq odd,
  // 4 value half copied (into its new chunk), 5 index changed, 6 version bumped, 7 undo disarmed,
  // 8 seq even, 9 a free chunk split (the allocation, before 1), 10 the old chunk being merged
  // with its free neighbours (after 8).
  const ops = {
    insert: { args: ["set", "new", "fresh-value"], key: "new", before: undefined, after: "fresh-value", points: [1, 2, 3, 4, 5, 6, 7, 8, 9] },
    update: { args: ["set", "old", "a-much-longer-replacement-value"], key: "old", before: "original", after: "a-much-longer-replacement-value", points: [1, 2, 3, 4, 6, 7, 8, 9, 10] },
    delete: { args: ["del", "old"], key: "old", before: "original", after: undefined, points: [1, 2, 3, 5, 6, 7, 8, 10] },
  } as const;

  for (const [op, c] of Object.entries(ops)) {
    for (const point of c.points) {
      it(`blocks no one and leaves the old or new entry (${op}, fault point ${point})`, () => {
        using t = new TempStore();
        t.store.set("old", "original");
        const died = kvtool(t.name, [...c.args], point);
        expect(died.signalCode).toBe("SIGKILL");
        const started = performance.now();
        t.store.set("after", "recovered");
        expect(performance.now() - started).toBeLessThan(1000);
        expect(() => t.store.check()).not.toThrow();
        // Points 1-6 and 9 die before the write is complete: rolled back. 7, 8 and 10 after: kept.
        const complete = point === 7 || point === 8 || point === 10;
        expect({ value: t.store.get(c.key), version: t.store.version, recoveries: t.store.lockRecoveries })
          .toEqual({ value: complete ? c.after : c.before, version: complete ? 3 : 2, recoveries: 1 });
      });
    }
  }

  it("is recovered the same when the writer is a Bun process", async () => {
    using t = new TempStore({ maxEntries: 16 });
    t.store.set("k0", checksummed("original", kvHash));
    const died = await bunWriter(t.name, 9, 8, 100, {
      KV_LIB_PATH: join(BUILD, "libshared_memory_kv_fault.so"),
      KV_FAULT_POINT: "4", // mid value copy
    });
    expect(died.signalCode).toBe("SIGKILL");
    t.store.set("after", "x");
    expect(() => t.store.check()).not.toThrow();
    expect([verifyChecksummed(t.store.get("k0")!, kvHash), t.store.lockRecoveries]).toEqual([true, 1]);
  });

  // A dead writer's undone write must never be seen, even before the repair; its completed one must.
  for (const [point, seen] of [[4, "original"], [6, "original"], [7, "new-value"]] as const) {
    it.each(READ_PATHS)(`shows readers only what the repair will keep, before it runs (fault point ${point}, a segment %s)`, (_, geometry) => {
      using t = new TempStore(geometry);
      t.store.set("old", "original");
      expect(kvtool(t.name, ["set", "old", "new-value"], point).signalCode).toBe("SIGKILL");
      expect(t.store.get("old")).toBe(seen);
      expect(t.store.status().entries.map((e) => e.value)).toEqual([seen]);
    });
  }
});
