/** Test fixtures for stores: a unique shm name per use, and a store that cleans up after itself. */
import { chownSync, existsSync, readdirSync } from "node:fs";
import { layoutOf } from "../../src/layout.ts";
import { VIEW_BUDGET } from "../../src/segment-memory.ts";
import { KvStore, type OpenOptions } from "../../src/store.ts";

/** Every name a test makes starts with this, so the suite can check it left none behind. */
export const TEST_PREFIX = `shmkv-test-${process.pid}-`;
let counter = 0;

/** A shm name no other test (or test run) uses. */
export function uniqueName(): string {
  return `/${TEST_PREFIX}${++counter}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * A command prefix that runs a program without the permission checks root skips: as uid 0 still
 * (so it can read the project wherever it lies, /root included) but with no capabilities. A segment
 * given to another owner (see `foreignOwner`) with mode 0600 is then refused to it.
 */
export const WITHOUT_CAPABILITIES = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"];

/** Give a segment to nobody (uid 65534), so that a process without capabilities may not open it. */
export function foreignOwner(name: string): void {
  chownSync(`/dev/shm${name}`, 65534, 65534);
}

/** Remove a segment if it exists. */
export function unlinkQuietly(name: string): void {
  if (existsSync(`/dev/shm${name}`)) KvStore.unlink(name);
}

/** Segments this test process made and did not remove. */
export function leftoverSegments(): string[] {
  return readdirSync("/dev/shm").filter((f) => f.startsWith(TEST_PREFIX));
}

/** A freshly created store on its own name; disposing it closes the store and unlinks the name. */
export class TempStore implements Disposable {
  readonly name = uniqueName();
  readonly store: KvStore;

  constructor(options: OpenOptions = {}) {
    this.store = KvStore.open(this.name, { create: true, exclusive: true, ...options });
  }

  [Symbol.dispose](): void {
    this.store.close();
    unlinkQuietly(this.name);
  }
}

/** Seed-sized entries, enough of them (each a slot and a chunk) that the segment is larger than VIEW_BUDGET. */
const SEED_LAYOUT = layoutOf({ maxEntries: 1, keyMax: 63, valueMax: 255 });
export const BEYOND_VIEW_BUDGET = {
  maxEntries: Math.ceil(VIEW_BUDGET / (SEED_LAYOUT.entrySize + SEED_LAYOUT.fixedChunk)) + 1,
};

/**
 * The ways the binding reads a segment (src/segment-memory.ts), with a geometry for each: through
 * views of all of it, and, beyond VIEW_BUDGET, entry by entry through copies; and a store with
 * memoryBytes, whose chunks are sized to their entries (freed and reused by every rewrite).
 */
export const READ_PATHS = [
  ["viewed whole", { maxEntries: 16 }],
  ["copied entry by entry", BEYOND_VIEW_BUDGET],
  ["with memoryBytes", { maxEntries: 16, memoryBytes: 4096 }],
] as const;
