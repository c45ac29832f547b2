/** Timing helpers shared by the benchmarks. */

/** Per-operation figures of one measured loop. */
export interface Figures {
  ops: number; // operations per second
  p50: number; // latency, ns per operation
  p99: number;
}

/** Operations timed in batches: reading the clock per operation would cost more than some ops. */
export const BATCH = 64;

/** Run op(i) for about `seconds` (after a quarter of that to warm up the JIT), in batches, and
 * report throughput and latency percentiles. The timed ops go on with the i after the warm-up's:
 * a set on a store that evicts is not timed on keys the warm-up has just written. */
export function measure(seconds: number, op: (i: number) => unknown, batch = BATCH): Figures {
  const warm = performance.now() + seconds * 250;
  let i = 0;
  for (; performance.now() < warm; i++) op(i);
  const latencies: number[] = [];
  const start = performance.now();
  const end = start + seconds * 1000;
  const first = i;
  let t = start;
  while (t < end) {
    for (let b = 0; b < batch; b++, i++) op(i);
    const t2 = performance.now();
    latencies.push(((t2 - t) * 1e6) / batch);
    t = t2;
  }
  return { ops: (i - first) / ((t - start) / 1000), ...percentiles(latencies) };
}

export function percentiles(values: number[]): { p50: number; p99: number } {
  const sorted = Float64Array.from(values).sort();
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] ?? 0;
  return { p50: at(0.5), p99: at(0.99) };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The median of each field of `runs`, every field a number, field by field. */
export function medianEach<T extends Record<string, number>>(runs: T[]): T {
  return Object.fromEntries(Object.keys(runs[0]!).map((k) => [k, median(runs.map((r) => r[k]!))])) as T;
}

/** The median of each figure of `runs`, field by field. */
export function medianFigures(runs: Figures[]): Figures {
  return { ops: median(runs.map((f) => f.ops)), p50: median(runs.map((f) => f.p50)), p99: median(runs.map((f) => f.p99)) };
}

/**
 * The order of round `round` over `keys`: as given, then reversed on every other round (a b c,
 * c b a, ...), so a slow spell on this shared machine, or a drift, hits every side of a ratio alike.
 */
export function roundOrder<K>(keys: readonly K[], round: number): readonly K[] {
  return round % 2 ? [...keys].reverse() : keys;
}

/**
 * The median of per-run ratios of `of(a[i])` to `of(b[i])`, run i of a paired with run i of b
 * (taken next to each other): a slow spell of the machine falls on both sides of each ratio.
 */
export function pairedRatio<T>(a: T[], b: T[], of: (run: T) => number): number {
  return median(a.map((run, i) => of(run) / of(b[i]!)));
}

/** The key and the 64-byte value every implementation stores for index i (as bench_c.c). */
export const keyOf = (i: number) => `key-${i}`;
export const valueOf = (i: number) => `value-${i}-${".".repeat(64)}`.slice(0, 64);

/**
 * A value of mixed size for index i: 16 B to 1 KiB, log-uniform (each size decade as likely), the
 * same for every run. Its mean is about 240 bytes.
 */
export function mixedValueOf(i: number): string {
  const u = (Math.imul(i, 2654435761) >>> 0) / 2 ** 32;
  return MIXED[Math.floor(16 * 64 ** u)]!;
}
/** One string per length, so that a benchmark loop allocates none. */
const MIXED = Array.from({ length: 1025 }, (_, n) => "m".repeat(n));

/**
 * The stores that expire and evict (bench/inprocess.ts ttl and lru, bench_c's ttl and lru modes,
 * which define the same): each entry's TTL, far beyond a run; the distinct keys the sets on an lru
 * store write, per entry it holds, so that most of them evict.
 */
export const TTL_MS = 3_600_000;
export const LRU_KEYS = 4;

/** Visit keys in a scattered order that still covers all of them. */
export const scatter = (i: number, entries: number) => (i * 7919) % entries;
