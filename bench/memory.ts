/**
 * How well a store with memoryBytes uses it, in its own process:
 *   bun bench/memory.ts MEMORY_MIB  ->  one JSON line
 * Issue 17's figures: values of log-uniform sizes from 16 B to 16 KiB set until the store is full
 * (live key and value bytes against memoryBytes, target >= 70%); then a random half deleted and
 * values of 1 KiB to 64 KiB set until full again (target >= 60%). Also the segment's file size
 * against the live data, and what a store without memoryBytes would take for the same entries.
 */
import { readSync, openSync, closeSync, statSync } from "node:fs";
import { KvError } from "../src/errors.ts";
import { HEADER, layoutOf } from "../src/layout.ts";
import { KvStore } from "../src/store.ts";

const memoryBytes = Number(process.argv[2] ?? 64) * 2 ** 20;
const MAX_ENTRIES = 200_000;
const KEY_MAX = 16;
const VALUE_MAX = 65536;

let seed = 0x9e3779b9;
/** xorshift32: the same sizes every run. */
function random(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 2 ** 32;
}
const logUniform = (lo: number, hi: number) => Math.floor(lo * (hi / lo) ** random());

const name = `/shmkv-bench-memory-${process.pid}`;
const store = KvStore.open(name, { create: true, exclusive: true, maxEntries: MAX_ENTRIES, keyMax: KEY_MAX, valueMax: VALUE_MAX, memoryBytes });
const live = new Map<string, number>(); // key -> key + value bytes

/** Set new keys with values of lo..hi bytes until the store is full; the sets per second. */
function fill(lo: number, hi: number): number {
  const started = performance.now();
  let sets = 0;
  for (let i = live.size; ; i++) {
    const key = `k${i}-${sets}`;
    const value = "v".repeat(logUniform(lo, hi));
    try {
      store.set(key, value);
    } catch (e) {
      if (e instanceof KvError && e.code === "TABLE_FULL") break;
      throw e;
    }
    live.set(key, key.length + value.length);
    sets++;
  }
  return sets / ((performance.now() - started) / 1000);
}

const liveBytes = () => [...live.values()].reduce((a, b) => a + b, 0);
function compactions(): number {
  const fd = openSync(`/dev/shm${name}`, "r");
  const word = new Uint32Array(2);
  readSync(fd, word, 0, 8, HEADER.compactions);
  closeSync(fd);
  return word[0]! + word[1]! * 2 ** 32;
}
function snapshot(setsPerSecond: number) {
  const bytes = liveBytes();
  return {
    entries: live.size,
    live_bytes: bytes,
    live_of_memory: bytes / memoryBytes,
    memory_used_of_memory: store.memoryUsed / memoryBytes,
    compactions: compactions(),
    sets_per_second: setsPerSecond,
  };
}

try {
  const first = snapshot(fill(16, 16384));
  for (const key of [...live.keys()]) {
    if (random() < 0.5) {
      store.delete(key);
      live.delete(key);
    }
  }
  const afterDelete = liveBytes() / memoryBytes;
  const second = snapshot(fill(1024, 65536));
  store.check();
  const fileBytes = statSync(`/dev/shm${name}`).size;
  const withoutMemory = layoutOf({ maxEntries: live.size, keyMax: KEY_MAX, valueMax: VALUE_MAX }).totalSize;
  console.log(
    JSON.stringify({
      memory_bytes: memoryBytes,
      max_entries: MAX_ENTRIES,
      first,
      after_delete_live_of_memory: afterDelete,
      second,
      file_bytes: fileBytes,
      file_of_live: fileBytes / liveBytes(),
      file_bound: memoryBytes + 96 * MAX_ENTRIES + 2 ** 20,
      file_without_memory_for_these_entries: withoutMemory,
    }),
  );
} finally {
  store.close();
  KvStore.unlink(name);
}
