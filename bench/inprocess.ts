/**
 * One in-process benchmark run, in its own process:
 *   bun bench/inprocess.ts IMPL ENTRIES SECONDS  ->  one JSON line {get, set[, status]}
 * IMPL: shmkv (the binding), map (a JS Map), lmdb (lmdb-js, noSync: neither side touches a disk).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KvStore } from "../src/store.ts";
import { keyOf, measure, scatter, valueOf, type Figures } from "./measure.ts";

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
  close(): void;
}

function shmkv(): Subject {
  const name = `/shmkv-bench-${process.pid}`;
  const store = KvStore.open(name, { create: true, exclusive: true, maxEntries: Math.max(10, entries) });
  KvStore.unlink(name); // the mapping is all we need; nothing is left behind
  return { get: (k) => store.get(k), set: (k, v) => store.set(k, v), status: () => store.status(), close: () => store.close() };
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

const subject = await { shmkv, map, lmdb }[impl as "shmkv" | "map" | "lmdb"]();
if (subject.load) subject.load(entries);
else for (let i = 0; i < entries; i++) subject.set(keyOf(i), valueOf(i));
// "get-hot": the same 10 keys, spread over the store, so the figure shows the index's cost rather
// than cache and TLB misses (which "get" over every key in scattered order shows). Timed first,
// while the process holds only those keys: JavaScriptCore sizes its young generation by the heap,
// so beside a million key strings every allocation (the string a get returns) is slower, whatever
// the store (compare the hot gets at 1,000,000 entries with this order reversed).
const hot = Array.from({ length: 10 }, (_, i) => keyOf(Math.floor((i * entries) / 10)));
const result: Record<string, Figures> = { "get-hot": measure(seconds, (i) => subject.get(hot[i % 10]!)) };
const keys = Array.from({ length: entries }, (_, i) => keyOf(i));
result.get = measure(seconds, (i) => subject.get(keys[scatter(i, entries)]!));
result.set = measure(seconds, (i) => subject.set(keys[scatter(i, entries)]!, value));
if (subject.status && entries <= 10) result.status = measure(seconds, () => subject.status!());
subject.close();
console.log(JSON.stringify(result));
