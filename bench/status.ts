/**
 * Whole-store reads for `make bench`: time to the last byte of `GET /status` (every entry, streamed)
 * at 10, 10,000 and 1,000,000 entries, without and with a C writer rewriting keys as fast as it
 * can, and meanwhile the p99 of another client's `GET /health` (bench/prober.ts, its own process).
 */
import { join } from "node:path";
import { KvStore } from "../src/store.ts";
import { startServer } from "./http.ts";
import { median } from "./measure.ts";

type Table = (title: string, head: string[], rows: string[][]) => void;
const ROOT = join(import.meta.dir, "..");
const BENCH_C = join(ROOT, "build", "bench_c");
const SIZES = [10, 10_000, 1_000_000];

interface Probe {
  requests: number;
  p50: number;
  p99: number;
  max: number;
}

/** One run: /status read to its end, again and again for `seconds` (at least once), /health probed all along. */
async function run(url: string, seconds: number): Promise<{ ttlb: number; bytes: number; health: Probe }> {
  const prober = Bun.spawn([process.execPath, "bench/prober.ts", `${url}health`], { cwd: ROOT, stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  const times: number[] = [];
  let bytes = 0;
  const end = performance.now() + seconds * 1000;
  do {
    const started = performance.now();
    const response = await fetch(`${url}status`);
    bytes = 0;
    for await (const chunk of response.body!) bytes += chunk.byteLength;
    if (!response.ok) throw new Error(`GET /status: ${response.status}`);
    times.push(performance.now() - started);
  } while (performance.now() < end);
  prober.stdin.end();
  const health = JSON.parse(await new Response(prober.stdout).text()) as Probe;
  await prober.exited;
  return { ttlb: median(times), bytes, health };
}

export async function statusBench(o: { runs: number; seconds: number; table: Table }) {
  const results: Record<string, { ttlb_ms: number; bytes: number; health_p99_ms: number; health_max_ms: number; health_requests: number }> = {};
  for (const entries of SIZES) {
    const name = `/shmkv-bench-status-${process.pid}`;
    const server = await startServer("shmkv", name, entries);
    try {
      for (const busy of [false, true]) {
        const runs = [];
        for (let i = 0; i < o.runs; i++) {
          const writer = busy ? Bun.spawn([BENCH_C, name, `${entries}`, "3600", "hammer"], { stdout: "ignore", stderr: "inherit" }) : undefined;
          try {
            runs.push(await run(server.url, o.seconds));
          } finally {
            writer?.kill();
            await writer?.exited;
          }
        }
        results[`${entries} entries${busy ? ", busy writer" : ""}`] = {
          ttlb_ms: median(runs.map((r) => r.ttlb)),
          bytes: runs[0]!.bytes,
          health_p99_ms: median(runs.map((r) => r.health.p99)) / 1e6,
          health_max_ms: Math.max(...runs.map((r) => r.health.max)) / 1e6,
          health_requests: median(runs.map((r) => r.health.requests)),
        };
      }
    } finally {
      await server.stop();
      KvStore.unlink(name);
    }
  }
  const ms = (n: number) => (n >= 100 ? n.toFixed(0) : n >= 1 ? n.toFixed(1) : n.toFixed(3));
  o.table(
    `GET /status, every entry, streamed (medians of ${o.runs} runs; /health from another process meanwhile)`,
    ["store", "time to last byte", "bytes", "/health p99", "/health max", "/health requests"],
    Object.entries(results).map(([k, v]) => [k, `${ms(v.ttlb_ms)} ms`, v.bytes.toLocaleString("en"), `${ms(v.health_p99_ms)} ms`, `${ms(v.health_max_ms)} ms`, `${v.health_requests}`]),
  );
  const worst = Math.max(...Object.values(results).map((r) => r.health_p99_ms));
  return { results, targets: { "/health p99 while /status is sent (ms, worst store), target <= 50": worst } };
}
