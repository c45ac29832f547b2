/**
 * One in-process benchmark run, in its own process:
 *   bun bench/inprocess.ts IMPL ENTRIES SECONDS  ->  one JSON line {get, set[, status]}
 * IMPL: shmkv (the binding), map (a JS Map), lmdb (lmdb-js, noSync: neither side touches a disk),
 * mixed (the binding on a store with memoryBytes, each key's value of its own size, 16 B to 1 KiB),
 * ttl (the binding, every entry set and rewritten with a TTL of an hour), lru (the binding on a store
 * of ENTRIES entries that evicts, its sets over LRU_KEYS times as many keys: most of them evict; the
 * line also has "evicted_per_set").
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KvStore, type KvOptions } from "../src/store.ts";
import { keyOf, LRU_KEYS, measure, mixedValueOf, scatter, TTL_MS, valueOf, type Figures } from "./measure.ts";

const [impl, entriesArg, secondsArg] = process.argv.slice(2);
const entries = Number(entriesArg);
const seconds = Number(secondsArg);
const value = valueOf(7);

interface Subject {
  get(key: string): unknown;
  set(key: string, value: string): unknown;
  status?(): unknown;
  /** Fill with ENTRIES keys before timing (lmdb in one transaction: it is set-up, not measured). */
  load?(entries: number): void;
  /** Distinct keys the timed sets write: ENTRIES, unless the store evicts. */
  setKeys?: number;
  /** Sets made and entries evicted so far. */
  evictions?(): { sets: number; evicted: number };
  close(): void;
}

function shmkv(): Subject {
  const store = benchStore("");
  return { get: (k) => store.get(k), set: (k, v) => store.set(k, v), status: () => store.status(), close: () => store.close() };
}

function ttl(): Subject {
  const store = benchStore("ttl-");
  return { get: (k) => store.get(k), set: (k, v) => store.set(k, v, { ttl: TTL_MS }), close: () => store.close() };
}

function lru(): Subject {
  const store = benchStore("lru-", { evict: "lru" });
  let sets = 0;
  return {
    get: (k) => store.get(k),
    set: (k, v) => {
      sets++;
      return store.set(k, v);
    },
    setKeys: LRU_KEYS * entries,
    evictions: () => ({ sets, evicted: store.stats().evictions }),
    close: () => store.close(),
  };
}

/** A new store of ENTRIES entries (10 at least), its name unlinked at once: the mapping is all we need. */
function benchStore(kind: string, options: KvOptions = {}): KvStore {
  const name = `/shmkv-bench-${kind}${process.pid}`;
  const store = KvStore.open(name, { create: true, exclusive: true, maxEntries: Math.max(10, entries), ...options });
  KvStore.unlink(name);
  return store;
}

/** Mixed sizes: a heap of 1.5 times the data (chunks of 8 bytes of head, key and value, rounded to 16). */
function mixed(): Subject {
  let bytes = 0;
  for (let i = 0; i < entries; i++) bytes += Math.ceil((8 + keyOf(i).length + mixedValueOf(i).length) / 16) * 16;
  const memoryBytes = Math.max(1 << 16, Math.ceil(bytes * 1.5));
  const store = benchStore("mixed-", { valueMax: 1024, memoryBytes });
  return {
    get: (k) => store.get(k),
    set: (k, v) => store.set(k, v),
    load: (n) => {
      for (let i = 0; i < n; i++) store.set(keyOf(i), mixedValueOf(i));
    },
    close: () => store.close(),
  };
}

function map(): Subject {
  const m = new Map<string, string>();
  return { get: (k) => m.get(k), set: (k, v) => m.set(k, v), close: () => m.clear() };
}

async function lmdb(): Promise<Subject> {
  // Loaded only here: with lmdb-js's native addon in the process, the binding's gets ran slower.
  const { open: openLmdb } = await import("lmdb");
  const dir = mkdtempSync(join(tmpdir(), "shmkv-bench-lmdb-"));
  const db = openLmdb<string, string>({ path: dir, noSync: true, compression: false });
  return {
    get: (k) => db.get(k),
    // putSync: one transaction per put, as a store a user writes to key by key would do.
    set: (k, v) => db.putSync(k, v),
    load: (n) =>
      db.transactionSync(() => {
        for (let i = 0; i < n; i++) db.put(keyOf(i), valueOf(i));
      }),
    close: () => {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const subject = await { shmkv, map, lmdb, mixed, ttl, lru }[impl as "shmkv" | "map" | "lmdb" | "mixed" | "ttl" | "lru"]();
if (subject.load) subject.load(entries);
else for (let i = 0; i < entries; i++) subject.set(keyOf(i), valueOf(i));
// "get-hot": the same 10 keys, spread over the store, so the figure shows the index's cost rather
// than cache and TLB misses (which "get" over every key in scattered order shows). Timed first,
// while the process holds only those keys: JavaScriptCore sizes its young generation by the heap,
// so beside a million key strings every allocation (the string a get returns) is slower, whatever
// the store (compare the hot gets at 1,000,000 entries with this order reversed).
const hot = Array.from({ length: 10 }, (_, i) => keyOf(Math.floor((i * entries) / 10)));
const result: Record<string, Figures | number> = { "get-hot": measure(seconds, (i) => subject.get(hot[i % 10]!)) };
const keys = Array.from({ length: entries }, (_, i) => keyOf(i));
result.get = measure(seconds, (i) => subject.get(keys[scatter(i, entries)]!));
// "mixed": each key keeps its own size, so a set rewrites a chunk of the size it had.
const valueAt = impl === "mixed" ? mixedValueOf : () => value;
// Keys beyond the store's, made only now: the gets ran beside the same strings as every store's.
const setKeys = subject.setKeys ?? entries;
for (let i = entries; i < setKeys; i++) keys.push(keyOf(i));
const before = subject.evictions?.();
result.set = measure(seconds, (i) => {
  const at = scatter(i, setKeys);
  return subject.set(keys[at]!, valueAt(at));
});
if (before) {
  const after = subject.evictions!();
  result.evicted_per_set = (after.evicted - before.evicted) / (after.sets - before.sets);
}
if (subject.status && entries <= 10) result.status = measure(seconds, () => subject.status!());
subject.close();
console.log(JSON.stringify(result));
