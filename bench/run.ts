/**
 * `make bench`: every benchmark, each figure the median of at least RUNS runs in fresh processes; a
 * table on stdout and bench/results.json. BENCH_SECONDS (default 1) is the time per measured loop.
 * BENCH_ONLY=inProcess,http (any of inProcess, expiry, memory, crossProcess, http, status, watchers, resize) runs just
 * those, and leaves bench/results.json as it is.
 */
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { httpBench } from "./http.ts";
import { LRU_KEYS, median, medianEach, medianFigures, pairedRatio, roundOrder, type Figures } from "./measure.ts";
import { statusBench } from "./status.ts";
import { watchersBench } from "./watchers.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
/**
 * Rounds of the in-process runs. On a shared machine the rate of one run moves between rounds
 * minutes apart, the C loop's with the binding's: several rounds, and ratios taken within a round.
 */
const IN_PROCESS_ROUNDS = Math.max(5, RUNS);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 1);
const ROOT = join(import.meta.dir, "..");
const BENCH_C = join(ROOT, "build", "bench_c");
const bun = process.execPath;

type Json = Record<string, unknown>;

/** Run a command that prints one JSON line; throw with its stderr when it fails. */
async function json<T = Json>(cmd: string[]): Promise<T> {
  const p = Bun.spawn(cmd, { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  if ((await p.exited) !== 0) throw new Error(`${cmd.join(" ")} failed:\n${err}`);
  return JSON.parse(out.trim().split("\n").at(-1)!) as T;
}

type Run = Record<string, Figures>;

/**
 * `rounds` runs of each of `runs`, each round taking them all in its roundOrder; every run's
 * figures, and the median of each, field by field.
 */
async function interleaved(rounds: number, runs: Record<string, () => Promise<Run>>) {
  const all: Record<string, Run[]> = {};
  for (let i = 0; i < rounds; i++) {
    for (const k of roundOrder(Object.keys(runs), i)) (all[k] ??= []).push(await runs[k]!());
  }
  const medians: Record<string, Run> = {};
  for (const [k, results] of Object.entries(all)) {
    medians[k] = {};
    for (const op of Object.keys(results[0]!)) medians[k][op] = medianFigures(results.map((r) => r[op]!));
  }
  return { all, medians };
}

const fmtOps = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} M/s` : `${(n / 1e3).toFixed(1)} k/s`);
const fmtNs = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} ms` : n >= 1e3 ? `${(n / 1e3).toFixed(2)} µs` : `${n.toFixed(0)} ns`);
const ratio = (x: number) => `${x.toFixed(2)}×`;

function table(title: string, head: string[], rows: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  console.log(`\n${title}\n${line(head)}\n|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  rows.forEach((r) => console.log(line(r)));
}

async function inProcess(): Promise<Json> {
  const SIZES = [10, 10_000, 1_000_000];
  // One round runs every size: the 1,000,000 vs 10 ratio compares runs minutes apart otherwise.
  const runs: Record<string, () => Promise<Run>> = {};
  for (const entries of SIZES) {
    const run = (impl: string) => () => json<Run>([bun, "bench/inprocess.ts", impl, `${entries}`, `${SECONDS}`]);
    for (const impl of ["shmkv", "mixed", "map", "lmdb"]) runs[`${entries} ${impl}`] = run(impl);
    runs[`${entries} c`] = () => json([BENCH_C, `/shmkv-bench-c-${process.pid}`, `${entries}`, `${SECONDS}`]);
  }
  const { all, medians } = await interleaved(IN_PROCESS_ROUNDS, runs);
  const results: Record<string, Record<string, Run>> = {};
  for (const [run, figures] of Object.entries(medians)) {
    const [entries, impl] = run.split(" ") as [string, string];
    (results[entries] ??= {})[impl] = figures;
  }
  const rows: string[][] = [];
  for (const [entries, row] of Object.entries(results)) {
    for (const op of ["get", "get-hot", "set", "status"]) {
      for (const [impl, figures] of Object.entries(row)) {
        const f = figures[op];
        if (f) rows.push([Number(entries).toLocaleString("en"), op, impl, fmtOps(f.ops), fmtNs(f.p50), fmtNs(f.p99)]);
      }
    }
  }
  table(
    `In process (Bun; mixed = a store with memoryBytes, values of 16 B to 1 KiB; c = the library from a C loop; medians of ${IN_PROCESS_ROUNDS} rounds)`,
    ["entries", "op", "impl", "ops/s", "p50", "p99"],
    rows,
  );
  // Each target is the median of its per-round ratios, as the HTTP ones: two runs of one round are
  // seconds apart, where their medians may come from rounds a minute apart.
  const paired = (a: string, b: string, op: string) => pairedRatio(all[a]!, all[b]!, (run) => run[op]!.ops);
  const targets = {
    "get vs lmdb-js get (10,000 entries), target >= 2": paired("10000 shmkv", "10000 lmdb", "get"),
    "set vs lmdb-js putSync, noSync (10,000 entries), target >= 1": paired("10000 shmkv", "10000 lmdb", "set"),
    "get time (10 hot keys) at 1,000,000 / at 10 entries, target <= 1.5": paired("10 shmkv", "1000000 shmkv", "get-hot"),
  };
  return { results, targets };
}

/**
 * Expiry and eviction at 1,000,000 entries: gets and sets on a plain store, on one whose every entry
 * has a TTL (TTL_MS: none expires during the run), and on one that evicts (lru, its sets over LRU_KEYS
 * times as many keys as it holds), from Bun and from C, each in a fresh process, every store in
 * every round; and Bun's hot gets at 10 plain entries, the hot-get target's baseline.
 */
async function expiry(): Promise<Json> {
  const ENTRIES = 1_000_000;
  const STORES = {
    plain: { impl: "shmkv", mode: [], label: "plain" },
    ttl: { impl: "ttl", mode: ["ttl"], label: "every entry with a TTL" },
    lru: { impl: "lru", mode: ["lru"], label: `evict lru, sets over ${(LRU_KEYS * ENTRIES).toLocaleString("en")} keys` },
  };
  const evictedPerSet: Record<string, number[]> = {};
  /** A run whose line may also give evicted_per_set: kept aside, as it is no timing. */
  const run = (name: string, cmd: string[]) => async () => {
    const { evicted_per_set: evicted, ...figures } = await json<Run & { evicted_per_set?: number }>(cmd);
    if (evicted !== undefined) (evictedPerSet[name] ??= []).push(evicted);
    return figures as Run;
  };
  const runs: Record<string, () => Promise<Run>> = { "bun 10 plain": run("bun 10 plain", [bun, "bench/inprocess.ts", "shmkv", "10", `${SECONDS}`]) };
  for (const [store, { impl, mode }] of Object.entries(STORES)) {
    runs[`bun ${store}`] = run(`bun ${store}`, [bun, "bench/inprocess.ts", impl, `${ENTRIES}`, `${SECONDS}`]);
    runs[`c ${store}`] = run(`c ${store}`, [BENCH_C, `/shmkv-bench-c-${process.pid}`, `${ENTRIES}`, `${SECONDS}`, ...mode]);
  }
  const { all, medians } = await interleaved(IN_PROCESS_ROUNDS, runs);
  const paired = (a: string, b: string, op: string) => pairedRatio(all[a]!, all[b]!, (r) => r[op]!.ops);
  const rows: string[][] = [];
  const vsPlain: Record<string, number> = {};
  for (const client of ["bun", "c"]) {
    for (const op of ["get-hot", "get", "set"]) {
      for (const [store, { label }] of Object.entries(STORES)) {
        const name = `${client} ${store}`;
        const f = medians[name]![op];
        if (!f) continue; // C times no hot gets
        let ratio = "-";
        if (store !== "plain") {
          vsPlain[`${name} ${op}`] = paired(name, `${client} plain`, op);
          ratio = `${vsPlain[`${name} ${op}`]!.toFixed(2)}×`;
        }
        const evicted = op === "set" && evictedPerSet[name] ? `${(100 * median(evictedPerSet[name]!)).toFixed(0)}%` : "-";
        rows.push([client === "c" ? "C" : "Bun", op, label, fmtOps(f.ops), fmtNs(f.p50), fmtNs(f.p99), ratio, evicted]);
      }
    }
  }
  table(
    `Expiry and eviction (${ENTRIES.toLocaleString("en")} entries, 64-byte values; Bun and C; medians of ${IN_PROCESS_ROUNDS} rounds; vs plain: median of the per-round ratios of ops/s)`,
    ["client", "op", "store", "ops/s", "p50", "p99", "vs plain", "sets that evicted"],
    rows,
  );
  const sweeps: { entries: number; reclaimed: number; ticks: number; tick_ms_p50: number; tick_ms_max: number }[] = [];
  for (let r = 0; r < RUNS; r++) sweeps.push(await json([bun, "bench/sweep.ts", `${ENTRIES}`]));
  const sweep = medianEach(sweeps);
  table(
    `The server's sweep of expired entries (bench/sweep.ts: ExpirySweep's defaults, a tick every 100 ms; ${ENTRIES.toLocaleString("en")} entries, 1 in 100 expired; medians of ${RUNS} runs)`,
    ["expired entries", "ticks to reclaim them all", "at 100 ms a tick", "tick time p50", "tick time max"],
    [[`${sweep.reclaimed}`, `${sweep.ticks}`, `${(sweep.ticks / 10).toFixed(1)} s`, `${sweep.tick_ms_p50.toFixed(3)} ms`, `${sweep.tick_ms_max.toFixed(3)} ms`]],
  );
  return {
    entries: ENTRIES,
    results: medians,
    sweep,
    vs_plain: vsPlain,
    evicted_per_set: Object.fromEntries(Object.entries(evictedPerSet).map(([k, v]) => [k, median(v)])),
    targets: {
      "get time (10 hot keys) at 1,000,000 entries, each with a TTL / at 10 plain, target <= 1.5": paired("bun 10 plain", "bun ttl", "get-hot"),
      "get time (10 hot keys) at 1,000,000 entries, evict lru / at 10 plain, target <= 1.5": paired("bun 10 plain", "bun lru", "get-hot"),
    },
  };
}

/** How a store with memoryBytes uses it (bench/memory.ts): deterministic sizes, so one run. */
async function memory(): Promise<Json> {
  const MIB = 64;
  const r = await json<{
    first: { entries: number; live_of_memory: number; compactions: number; sets_per_second: number };
    after_delete_live_of_memory: number;
    second: { entries: number; live_of_memory: number; compactions: number; sets_per_second: number };
    file_bytes: number;
    file_of_live: number;
    file_bound: number;
    file_without_memory_for_these_entries: number;
  }>([bun, "bench/memory.ts", `${MIB}`]);
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  table(`Memory (a store with memoryBytes ${MIB} MiB, 200,000 entries at most, keys up to 16 B)`, ["phase", "entries", "live bytes / memoryBytes", "compactions", "sets/s"], [
    ["fill, 16 B to 16 KiB, until full", `${r.first.entries}`, pct(r.first.live_of_memory), `${r.first.compactions}`, fmtOps(r.first.sets_per_second)],
    ["a random half deleted", "-", pct(r.after_delete_live_of_memory), "-", "-"],
    ["fill, 1 KiB to 64 KiB, until full", `${r.second.entries}`, pct(r.second.live_of_memory), `${r.second.compactions}`, fmtOps(r.second.sets_per_second)],
  ]);
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  console.log(
    `segment file: ${mib(r.file_bytes)} for ${mib(r.file_bytes / r.file_of_live)} of live data (${r.file_of_live.toFixed(2)}×; ` +
      `bound ${mib(r.file_bound)}); without memoryBytes these entries would take ${mib(r.file_without_memory_for_these_entries)}`,
  );
  return {
    results: r,
    targets: {
      "live bytes / memoryBytes, values of 16 B to 16 KiB until full, target >= 0.7": r.first.live_of_memory,
      "live bytes / memoryBytes, after a random half deleted and 1 KiB to 64 KiB until full, target >= 0.6": r.second.live_of_memory,
      "segment file / (memoryBytes + 96 × max_entries + 1 MiB), target <= 1": r.file_bytes / r.file_bound,
    },
  };
}

async function crossProcess(): Promise<Json> {
  const ENTRIES = 1000;
  const name = `/shmkv-bench-x-${process.pid}`;
  const { KvStore } = await import("../src/store.ts");
  const { keyOf, valueOf } = await import("./measure.ts");
  const store = KvStore.open(name, { create: true, exclusive: true, maxEntries: ENTRIES });
  try {
    for (let i = 0; i < ENTRIES; i++) store.set(keyOf(i), valueOf(i));
    const results: Record<string, { reads: number; p50: number; p99: number; writes?: number }> = {};
    for (const readers of [1, 2, 4]) {
      for (const busy of [false, true]) {
        const runs = [];
        for (let run = 0; run < RUNS; run++) {
          const writer = busy ? json<{ set: Figures }>([BENCH_C, name, `${ENTRIES}`, `${SECONDS * 1.5}`, "hammer"]) : undefined;
          const rs = await Promise.all(Array.from({ length: readers }, () => json<Figures>([bun, "bench/reader.ts", name, `${ENTRIES}`, `${SECONDS}`])));
          runs.push({ reads: rs.reduce((n, f) => n + f.ops, 0), p50: Math.max(...rs.map((f) => f.p50)), p99: Math.max(...rs.map((f) => f.p99)), writes: (await writer)?.set.ops });
        }
        results[`${readers} readers${busy ? ", busy writer" : ""}`] = {
          reads: median(runs.map((r) => r.reads)),
          p50: median(runs.map((r) => r.p50)),
          p99: median(runs.map((r) => r.p99)),
          ...(busy ? { writes: median(runs.map((r) => r.writes!)) } : {}),
        };
      }
    }
    table("Across processes (Bun readers, a C writer; 1,000 keys; latency of the slowest reader)",
      ["readers", "reads/s (total)", "read p50", "read p99", "writes/s"],
      Object.entries(results).map(([k, v]) => [k, fmtOps(v.reads), fmtNs(v.p50), fmtNs(v.p99), v.writes ? fmtOps(v.writes) : "-"]));
    const targets: Record<string, number> = {};
    for (const n of [1, 2, 4]) {
      targets[`reader p99 with a busy writer / without, ${n} reader(s), target <= 5`] =
        results[`${n} readers, busy writer`]!.p99 / results[`${n} readers`]!.p99;
    }
    return { results, targets };
  } finally {
    store.close();
    KvStore.unlink(name);
  }
}

/** kv_resize of a 1,000,000-entry store to twice its capacity and back, from C: RUNS fresh processes. */
async function resize(): Promise<Json> {
  const ENTRIES = 1_000_000;
  const runs: Record<string, number>[] = [];
  for (let i = 0; i < RUNS; i++) {
    runs.push((await json<{ resize: Record<string, number> }>([BENCH_C, `/shmkv-bench-resize-${process.pid}`, `${ENTRIES}`, "0", "resize"])).resize);
  }
  const medians = medianEach(runs);
  const med = (field: string) => medians[field]!;
  const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
  table(`Resize of a ${ENTRIES.toLocaleString("en")}-entry store (kv_resize from C; writers wait this long, readers do not)`,
    ["resize", "copy and swap", "first call of a handle that follows", "new segment"], [
      [`grow to ${(2 * ENTRIES).toLocaleString("en")} entries`, `${med("grow_ms").toFixed(0)} ms`, fmtNs(med("grow_follow_us") * 1e3), mb(med("grow_segment_bytes"))],
      [`shrink back to ${ENTRIES.toLocaleString("en")}`, `${med("shrink_ms").toFixed(0)} ms`, fmtNs(med("shrink_follow_us") * 1e3), mb(med("shrink_segment_bytes"))],
    ]);
  return { entries: ENTRIES, runs, median: medians };
}

const machine = {
  cpu: cpus()[0]?.model ?? "unknown",
  cores: cpus().length,
  memory_gib: Math.round(totalmem() / 2 ** 30),
  bun: Bun.version,
  date: new Date().toISOString(),
  runs: RUNS,
  seconds: SECONDS,
};
console.log(`shmkv benchmarks: ${machine.cpu}, ${machine.cores} cores, bun ${machine.bun}, median of ${RUNS} runs of ${SECONDS} s`);
const SECTIONS: Record<string, () => Promise<Json>> = {
  inProcess,
  expiry,
  memory,
  crossProcess,
  http: () => httpBench({ runs: RUNS, seconds: SECONDS, table }),
  status: () => statusBench({ runs: RUNS, seconds: SECONDS, table }),
  watchers: () => watchersBench({ runs: RUNS, seconds: SECONDS, table }),
  resize,
};
const only = process.env.BENCH_ONLY?.split(",");
const unknown = only?.filter((name) => !(name in SECTIONS));
if (unknown?.length) throw new Error(`BENCH_ONLY: no section ${unknown.join(", ")} (there are ${Object.keys(SECTIONS).join(", ")})`);
const sections: Record<string, Json> = {};
for (const [name, run] of Object.entries(SECTIONS)) if (!only || only.includes(name)) sections[name] = await run();
const targets: Record<string, number> = Object.assign({}, ...Object.values(sections).map((s) => s.targets));
table("Targets (ratios from this run)", ["target", "measured", "holds"],
  Object.entries(targets).map(([k, v]) => [k, k.includes("(ms") ? `${v.toFixed(1)} ms` : ratio(v), (k.includes(">=") ? v >= Number(k.split(">= ")[1]) : v <= Number(k.split("<= ")[1])) ? "yes" : "NO"]));
if (!only) {
  await Bun.write(join(import.meta.dir, "results.json"), `${JSON.stringify({ machine, ...sections }, null, 2)}\n`);
  console.log("\nwritten: bench/results.json");
}
