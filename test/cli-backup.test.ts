/** `shmkv dump` and `shmkv restore`: a store as JSON lines and back, byte for byte. */
import { afterEach, describe, expect, it } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KvStore } from "../src/store.ts";
import { BUILD } from "./helpers/kvtool.ts";
import { ROOT } from "./helpers/server-process.ts";
import { cli } from "./helpers/cli.ts";
import { TempStore, uniqueName, unlinkQuietly } from "./helpers/shm.ts";

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

function tempStore(options = {}): TempStore {
  const temp = new TempStore(options);
  cleanups.push(() => temp[Symbol.dispose]());
  return temp;
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "shmkv-backup-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const bytes = (...values: number[]) => new Uint8Array(values);
/** Values that text would lose: bytes that are not UTF-8, NUL, a leading BOM, nothing at all. */
const AWKWARD: [string | Uint8Array, string | Uint8Array][] = [
  ["text", "héllo ✓"],
  [bytes(0x6b, 0xff), bytes(0x00, 0xff, 0xfe, 0x80)],
  ["nul", "a\0b"],
  ["bom", "\ufeffstarts with a BOM"],
  ["empty", ""],
  ["control", "line\nbreak\x7f"],
];

/** Every entry of a store, keys and values as bytes, with revisions and timestamps, in revision order. */
function contents(store: KvStore) {
  const { items } = store.rawEntriesFrom(0, Number.MAX_SAFE_INTEGER);
  return { version: store.version, entries: items.sort((a, b) => a.revision - b.revision) };
}

describe("shmkv dump", () => {
  it("prints a header line, then every entry in revision order; bytes that are not UTF-8 as base64", async () => {
    const temp = tempStore({ maxEntries: 4, keyMax: 8, valueMax: 16 });
    temp.store.set("b", "two");
    temp.store.set(bytes(0x6b, 0xff), bytes(0x00, 0xff));
    temp.store.set("gone", "x");
    temp.store.delete("gone");
    const stamp = temp.store.getEntry("b")!.timestamp;
    const run = await cli(["dump", "--name", temp.name]);
    expect(run).toEqual({
      code: 0,
      out: [
        [
          `{"format":"shmkv-dump","version":1,"store":"${temp.name}","store_version":4,"entry_count":2,"max_entries":4,"key_max":8,"value_max":16}`,
          `{"key":"b","value":"two","revision":1,"timestamp":${stamp}}`,
          `{"key":"a/8=","key_encoding":"base64","value":"AP8=","value_encoding":"base64","revision":2,"timestamp":${stamp}}`,
        ].join("\n"),
      ],
      err: [],
    });
  });

  it("writes FILE whole, readable by its owner only, and says what it wrote", async () => {
    const temp = tempStore();
    temp.store.set("k", "v");
    const file = join(tempDir(), "store.jsonl");
    writeFileSync(file, "an older dump\n");
    expect(await cli(["dump", file, "--name", temp.name])).toEqual({
      code: 0,
      out: [`dumped 1 entries of ${temp.name} (version 1) to ${file}`],
      err: [],
    });
    expect(readFileSync(file, "utf8").split("\n").slice(1)).toEqual([`{"key":"k","value":"v","revision":1,"timestamp":${temp.store.getEntry("k")!.timestamp}}`, ""]);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it("is one state of the store while a C writer keeps writing: the last write of every key, none missing", async () => {
    const keys = 200;
    const temp = tempStore({ maxEntries: keys });
    for (let i = 0; i < keys; i++) temp.store.set(`k${i}`, "seed");
    // One writer, keys in turn: at any version V the entries hold exactly the revisions V-199..V.
    const writer = Bun.spawn([join(BUILD, "kvtool"), temp.name, "writer", "1", String(keys), "100000000"], { stdout: "ignore" });
    cleanups.push(() => writer.kill("SIGKILL"));
    const versions = new Set<number>();
    const problems: string[] = [];
    while (versions.size < 40) {
      const run = await cli(["dump", "--name", temp.name]);
      const [header, ...lines] = run.out[0]!.split("\n").map((line) => JSON.parse(line));
      const revisions = lines.map((entry: { revision: number }) => entry.revision);
      const expected = Array.from({ length: keys }, (_, i) => header.store_version - keys + 1 + i);
      if (JSON.stringify(revisions) !== JSON.stringify(expected)) problems.push(`at ${header.store_version}: ${revisions}`);
      if (header.store_version > keys) versions.add(header.store_version);
    }
    expect(writer.exitCode).toBeNull(); // it was writing all along
    expect(problems).toEqual([]);
  });
});

describe("shmkv dump and restore of entries that expire", () => {
  it("keep each entry's expiry, to the millisecond, and a store's eviction policy", async () => {
    const source = tempStore({ evict: "lru" });
    source.store.set("forever", "1");
    source.store.set("later", "2", { ttl: 60_000 });
    source.store.incr("counter", 5, { ttl: 120_000 });
    const file = join(tempDir(), "dump.jsonl");
    expect((await cli(["dump", file, "--name", source.name])).code).toBe(0);
    const [header, ...lines] = readFileSync(file, "utf8").trimEnd().split("\n").map((line) => JSON.parse(line));
    expect([header.evict, lines.map((line) => line.expires_at)]).toEqual([
      "lru",
      [undefined, source.store.getEntry("later")!.expiresAt! / 1000, source.store.getEntry("counter")!.expiresAt! / 1000],
    ]);
    const target = uniqueName();
    cleanups.push(() => unlinkQuietly(target));
    expect((await cli(["restore", file, "--name", target])).code).toBe(0);
    using restored = KvStore.open(target);
    expect(contents(restored)).toEqual(contents(source.store));
  });

  it("leave out the entries whose expiry has passed: a dump's, and a restore's", async () => {
    const now = Date.now();
    const header = `{"format":"shmkv-dump","version":1,"store":"/x","store_version":3,"entry_count":3,"max_entries":2,"key_max":63,"value_max":8}`;
    const entry = (key: string, revision: number, expiresAt?: number) =>
      JSON.stringify({ key, value: "v", revision, timestamp: 1, ...(expiresAt ? { expires_at: expiresAt / 1000 } : {}) });
    const file = join(tempDir(), "dump.jsonl");
    // Three keys for a store of two: the one that has expired takes no room.
    writeFileSync(file, `${[header, entry("gone", 1, now - 1000), entry("kept", 2, now + 60_000), entry("forever", 3)].join("\n")}\n`);
    const target = uniqueName();
    cleanups.push(() => unlinkQuietly(target));
    expect((await cli(["restore", file, "--name", target])).code).toBe(0);
    using restored = KvStore.open(target);
    expect(restored.rawEntriesFrom(0, 10).items.map(({ key, revision, expiresAt }) => [Buffer.from(key).toString(), revision, expiresAt])).toEqual([
      ["kept", 2, now + 60_000],
      ["forever", 3, undefined],
    ]);
    expect(restored.version).toBe(3);
  });

  it("give an entry restored as a new write the time it has left to live", async () => {
    const source = tempStore();
    source.store.set("later", "2", { ttl: 60_000 });
    const expiresAt = source.store.getEntry("later")!.expiresAt!;
    const file = join(tempDir(), "dump.jsonl");
    await cli(["dump", file, "--name", source.name]);
    const target = tempStore();
    target.store.set("already", "here");
    target.store.set("more", "here");
    expect((await cli(["restore", file, "--name", target.name])).code).toBe(0);
    const restored = target.store.getEntry("later")!;
    expect(restored).toMatchObject({ value: "2", revision: 3 });
    // The library adds the time left to its own clock, read a moment after ours.
    expect(restored.expiresAt! - expiresAt).toBeWithin(0, 1000);
  });
});

describe("shmkv restore", () => {
  it("reproduces a dump byte for byte in a new store, with its geometry, revisions, timestamps and version", async () => {
    const source = tempStore({ maxEntries: 12, keyMax: 16, valueMax: 64 });
    for (const [key, value] of AWKWARD) source.store.set(key, value);
    source.store.set("deleted", "x");
    source.store.delete("deleted");
    const file = join(tempDir(), "dump.jsonl");
    expect((await cli(["dump", file, "--name", source.name])).code).toBe(0);
    const target = uniqueName();
    cleanups.push(() => unlinkQuietly(target));
    expect(await cli(["restore", file, "--name", target])).toEqual({
      code: 0,
      out: [`restored ${AWKWARD.length} entries into ${target} (version ${AWKWARD.length + 2}; revisions and timestamps as dumped)`],
      err: [],
    });
    using restored = KvStore.open(target);
    expect({ geometry: [restored.maxEntries, restored.keyMax, restored.valueMax], ...contents(restored) }).toEqual({
      geometry: [12, 16, 64],
      ...contents(source.store),
    });
    // And its dump is the same file, but for the store's name.
    const again = await cli(["dump", "--name", target]);
    expect(`${again.out[0]}\n`).toBe(readFileSync(file, "utf8").replace(source.name, target));
  });

  it("keeps a store's memory: set --memory makes it, the dump's header names it, restore creates the store with it", async () => {
    const name = uniqueName();
    cleanups.push(() => unlinkQuietly(name));
    const made = await cli(["set", "small", "s", "--name", name, "--max-entries", "8", "--value-max", "2000000", "--memory", "4M"]);
    expect(made.code).toBe(0);
    const source = KvStore.open(name);
    cleanups.push(() => source.close());
    source.set("big", "b".repeat(1_500_000));
    const file = join(tempDir(), "dump.jsonl");
    expect((await cli(["dump", file, "--name", name])).code).toBe(0);
    const header = JSON.parse(readFileSync(file, "utf8").split("\n")[0]!);
    expect([header.value_max, header.memory_bytes]).toEqual([2_000_000, 4 * 2 ** 20]);
    const target = uniqueName();
    cleanups.push(() => unlinkQuietly(target));
    expect((await cli(["restore", file, "--name", target])).code).toBe(0);
    using restored = KvStore.open(target);
    expect({ geometry: [restored.maxEntries, restored.valueMax, restored.memoryBytes], ...contents(restored) }).toEqual({
      geometry: [8, 2_000_000, 4 * 2 ** 20],
      ...contents(source),
    });
  });

  it("with --replace empties the store first; without, keeps the entries the dump does not have", async () => {
    const source = tempStore();
    source.store.set("a", "from the dump");
    const file = join(tempDir(), "dump.jsonl");
    await cli(["dump", file, "--name", source.name]);
    const target = tempStore();
    target.store.set("a", "old");
    target.store.set("other", "kept");
    expect((await cli(["restore", file, "--name", target.name])).out).toEqual([
      `restored 1 entries into ${target.name} (version 3; new revisions: the store was at version 2, not below the dump's first revision)`,
    ]);
    expect(target.store.status().entries.map(({ key, value }) => [key, value])).toEqual([["a", "from the dump"], ["other", "kept"]]);
    expect((await cli(["restore", file, "--name", target.name, "--replace"])).out).toEqual([
      `restored 1 entries into ${target.name}, after deleting 2 (version 6; new revisions: the store was at version 5, not below the dump's first revision)`,
    ]);
    expect(target.store.status().entries.map(({ key, value }) => [key, value])).toEqual([["a", "from the dump"]]);
  });

  it("refuses a malformed file naming its line, and changes nothing", async () => {
    const target = tempStore({ maxEntries: 2, valueMax: 8 });
    target.store.set("keep", "me");
    const before = contents(target.store);
    const header = (entries: number) =>
      `{"format":"shmkv-dump","version":1,"store":"/x","store_version":9,"entry_count":${entries},"max_entries":2,"key_max":63,"value_max":8}`;
    const entry = (key: string, revision: number, extra = "") => `{"key":"${key}","value":"v","revision":${revision},"timestamp":1${extra}}`;
    const dir = tempDir();
    const cases: [string, string][] = [
      ["", "the file is empty: a dump starts with its header line"],
      ['{"hello":1}\n', 'line 1: not a shmkv dump of version 1 (its header must have "format":"shmkv-dump","version":1)'],
      [`${header(2)}\n${entry("a", 1)}\n{"key":\n`, "line 3: not JSON (JSON Parse error: Unexpected EOF)"],
      [`${header(1)}\n${entry("a", 1, ',"ttl":5')}\n`, 'line 2: unknown field "ttl"'],
      [`${header(1)}\n{"key":"a","value":"%%","value_encoding":"base64","revision":1,"timestamp":1}\n`, "line 2: value is not base64"],
      [`${header(1)}\n${entry("a", 1, ',"expires_at":0')}\n`, "line 2: expires_at must be a positive number (Unix seconds, to the millisecond) when present"],
      [`${header(1).replace("}", ',"evict":"fifo"}')}\n${entry("a", 1)}\n`, 'line 1: evict must be "lru" when present'],
      [`${header(2)}\n${entry("a", 1)}\n${entry("a", 2)}\n`, "line 3: the same key or revision as line 2"],
      [`${header(1)}\n${entry("a", 10)}\n`, "line 2: revision must be a whole number from 1 to the dump's store_version, 9"],
      [`${header(3)}\n${entry("a", 1)}\n${entry("b", 2)}\n`, "line 3: the dump ends after 2 entries, its header says 3 (a truncated file?)"],
      [`${header(1)}\n{"key":"a","value":"nine bytes","revision":1,"timestamp":1}\n`, "line 2: the value is 10 bytes, over the store's 8 (--value-max when restore creates it)"],
      [`${header(2)}\n${entry("a", 1)}\n${entry("b", 2)}\n`, "the store would need 3 entries and holds at most 2 (--max-entries when restore creates it, or --replace)"],
    ];
    const results = [];
    for (const [i, [text]] of cases.entries()) {
      const file = join(dir, `bad-${i}.jsonl`);
      writeFileSync(file, text);
      const run = await cli(["restore", file, "--name", target.name]);
      results.push({ code: run.code, err: run.err });
    }
    expect(results).toEqual(
      cases.map(([, message], i) => ({
        code: 1,
        err: [`shmkv: ${i >= 10 ? "" : `${join(dir, `bad-${i}.jsonl`)}: `}${message}; nothing was restored`],
      })),
    );
    expect(contents(target.store)).toEqual(before);
  });

  it("reads the dump from stdin with -, and creates the store with the geometry given over the dump's", async () => {
    const source = tempStore({ maxEntries: 3 });
    source.store.set("k", "v");
    const file = join(tempDir(), "dump.jsonl");
    await cli(["dump", file, "--name", source.name]);
    const target = uniqueName();
    cleanups.push(() => unlinkQuietly(target));
    const ran = Bun.spawnSync([process.execPath, "src/cli.ts", "restore", "-", "--name", target, "--max-entries", "20", "--json"], {
      cwd: ROOT,
      stdin: Bun.file(file),
    });
    expect({ code: ran.exitCode, out: JSON.parse(ran.stdout.toString()), err: ran.stderr.toString() }).toEqual({
      code: 0,
      out: {
        success: true,
        message: `restored 1 entries into ${target} (version 1; revisions and timestamps as dumped)`,
        entries: 1,
        deleted: 0,
        version: 1,
        revisions_kept: true,
      },
      err: "",
    });
    using restored = KvStore.open(target);
    expect([restored.maxEntries, restored.get("k")]).toEqual([20, "v"]);
  });

  it("refuses a replica's store, whose entries come from its primary", async () => {
    const source = tempStore();
    const file = join(tempDir(), "dump.jsonl");
    await cli(["dump", file, "--name", source.name]);
    const replica = tempStore();
    replica.store.setReadOnly(true);
    expect(await cli(["restore", file, "--name", replica.name])).toEqual({
      code: 1,
      out: [],
      err: [`shmkv: ${replica.name} is a replica (read-only): restore into its primary instead`],
    });
  });
});
