/**
 * HTTP and resource figures for `make bench`: wrk against our server and, in the same run, against
 * Map-backed Elysia apps (bench/map-app.ts): the bare one the targets compare with, served as ours
 * is and by Elysia's own listen, and one with our HTTP features, which tells the features' cost
 * from the store's. Also GET /get/{key} over 1,000 keys at random (ours and the Map app); RSS idle
 * and under load; and time to first answer for `bun src/server.ts` and for the compiled binary
 * (build/shmkv, when `make compile` made it).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { KvStore } from "../src/store.ts";
import { FLOOR_PATHS, type FloorPath } from "./bun-floor.ts";
import { featuresLeftOut } from "./map-app.ts";
import { median, medianFigures, pairedRatio, roundOrder, valueOf, type Figures } from "./measure.ts";

type Table = (title: string, head: string[], rows: string[][]) => void;
/**
 * Our server; the Map app with our HTTP features (bench/map-app.ts); the Map app, the ceiling, served
 * as ours serves all but a plain GET /get/{key} (Bun.serve handing each request to the app); and the
 * Map app served by Elysia's own listen, which routes in Bun's native router: a higher ceiling, for
 * an app without request hooks.
 */
const IMPLS = ["shmkv", "featured", "map", "listen"] as const;
type Impl = (typeof IMPLS)[number];
const leftOut = [...featuresLeftOut()];
const LABEL: Record<Impl, string> = {
  shmkv: "shmkv",
  featured: `Map app + our HTTP features${leftOut.length ? ` but ${leftOut.join(", ")}` : ""}`,
  map: "Map app",
  listen: "Map app, by Elysia's listen",
};
const ROOT = join(import.meta.dir, "..");
const CONNECTIONS = 50;
/**
 * On two cores or more, a server runs on core 0 and wrk (one thread) on core 1. Unpinned, the
 * scheduler sometimes put wrk's threads beside the server and sometimes not: the ratio of one run
 * ranged over 0.5-1.1, where pinned it keeps within 0.67-0.80 (POST /set; measured).
 */
const PINNED = cpus().length >= 2;
const onCore = (core: number, cmd: string[]) => (PINNED ? ["taskset", "-c", `${core}`, ...cmd] : cmd);

export function ensureWrk(): void {
  if (Bun.which("wrk")) return;
  const install = () => Bun.spawnSync(["apt-get", "install", "-y", "wrk"], { stdout: "ignore", stderr: "inherit" }).exitCode;
  if (install() !== 0) {
    Bun.spawnSync(["apt-get", "update"], { stdout: "ignore" });
    if (install() !== 0) throw new Error("wrk is missing and apt-get could not install it");
  }
}

interface Server {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** Start `bun bench/serve.ts IMPL NAME ENTRIES` and wait for the URL it prints. */
export async function startServer(impl: string, name: string, entries = 10): Promise<Server> {
  const p = Bun.spawn(onCore(0, [process.execPath, "bench/serve.ts", impl, name, `${entries}`]), { cwd: ROOT, stdout: "pipe", stderr: "inherit" });
  const reader = p.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`bench/serve.ts ${impl} exited before it listened`);
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return { url: JSON.parse(text.split("\n")[0]!).url, pid: p.pid, stop: async () => { p.kill("SIGTERM"); await p.exited; } };
}

/** A process's resident set now (VmRSS), or its peak so far (VmHWM), in KiB. */
function rssKiB(pid: number, field: "VmRSS" | "VmHWM" = "VmRSS"): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith(`${field}:`));
  return Number(line?.match(/\d+/)?.[0] ?? 0);
}

const UNIT: Record<string, number> = { us: 1e3, ms: 1e6, s: 1e9 };
const nanos = (s: string) => Number.parseFloat(s) * UNIT[s.replace(/[\d.]/g, "")]!;

/** Microseconds of CPU (user and system) the process has used so far (Linux counts in 10 ms ticks). */
function cpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10_000; // utime and stime: fields 14 and 15
}

/**
 * wrk on one route of `server`: figures in requests/s and ns, and the server's CPU time per
 * request, in µs. The CPU time tells the server's own cost where wrk, near its core's limit,
 * caps the requests/s of the fastest server.
 */
function load(server: Server, path: string, seconds: number, script?: string): Served {
  const before = cpuMicros(server.pid);
  const figures = wrk(`${server.url}${path}`, seconds, script);
  return { ...figures, cpu: (cpuMicros(server.pid) - before) / figures.requests };
}

interface Served extends Figures {
  /** Server CPU time per request, µs. */
  cpu: number;
}

/** The median of each figure of `runs`, the server's CPU time per request included. */
function medianServed(runs: Served[]): Served {
  return { ...medianFigures(runs), cpu: median(runs.map((x) => x.cpu)) };
}

/**
 * a's runs against b's, paired: requests/s a over b, and CPU time per request b over a, so that
 * above 1 is better for a in both.
 */
function servedRatios(a: Served[], b: Served[]): { ops: number; cpu: number } {
  return { ops: pairedRatio(a, b, (f) => f.ops), cpu: pairedRatio(b, a, (f) => f.cpu) };
}

/** wrk on one route; figures in requests/s and ns, and the requests it completed. */
export function wrk(url: string, seconds: number, script?: string): Figures & { requests: number } {
  const args = onCore(1, ["wrk", PINNED ? "-t1" : "-t2", `-c${CONNECTIONS}`, `-d${seconds}s`, "--latency", ...(script ? ["-s", script] : []), url]);
  const r = Bun.spawnSync(args);
  const out = r.stdout.toString();
  if (r.exitCode !== 0 || /Non-2xx/.test(out)) throw new Error(`${args.join(" ")} failed:\n${out}${r.stderr}`);
  const pct = (p: string) => nanos(out.match(new RegExp(`^\\s+${p}%\\s+(\\S+)`, "m"))![1]!);
  const requests = Number(out.match(/(\d+) requests in/)![1]);
  return { ops: Number(out.match(/Requests\/sec:\s+([\d.]+)/)![1]), p50: pct("50"), p99: pct("99"), requests };
}

/** Milliseconds from spawning `cmd` to the first 200 from `probe` (a path). */
async function timeToFirstAnswer(cmd: string[], port: number, env: Record<string, string>): Promise<number> {
  const started = performance.now();
  const p = Bun.spawn(cmd, { cwd: ROOT, env: { ...process.env, ...env }, stdout: "ignore", stderr: "ignore" });
  try {
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false);
      if (ok) return performance.now() - started;
      if (performance.now() - started > 10_000) throw new Error(`${cmd.join(" ")} did not answer in 10 s`);
      await Bun.sleep(2);
    }
  } finally {
    p.kill("SIGTERM");
    await p.exited;
  }
}

/**
 * Each path of bench/bun-floor.ts in paired rounds, as the servers above; a path with a baseline
 * gets the median of its per-round ratios to it.
 */
async function floorBench(rounds: number, seconds: number, post: string) {
  const server = await startServer("floor", "-");
  const paths = Object.keys(FLOOR_PATHS) as FloorPath[];
  let runs: Map<FloorPath, Figures[]>;
  try {
    runs = inRounds(rounds, paths, (path) => wrk(`${server.url}${path}`, seconds, path.startsWith("set/") ? post : undefined));
  } finally {
    await server.stop();
  }
  return Object.fromEntries(paths.map((path) => {
    const versus = FLOOR_PATHS[path].versus;
    const ratio = versus && pairedRatio(runs.get(path)!, runs.get(versus)!, (f) => f.ops);
    return [path, { ops: median(runs.get(path)!.map((f) => f.ops)), ratio }];
  })) as Record<FloorPath, { ops: number; ratio?: number }>;
}

/** Entries of the servers of spreadBench, and keys its GETs pick from at random. */
const SPREAD_KEYS = 1000;

/**
 * GET /get/{key} over SPREAD_KEYS keys at random, against ours and the Map app, each holding that
 * many entries: reads that seldom find the same key twice in a row, so caches of any kind help
 * little. No target; in paired rounds as the servers above.
 */
async function spreadBench(rounds: number, seconds: number, name: string, scratch: string) {
  const script = join(scratch, "spread.lua");
  writeFileSync(script, `request = function() return wrk.format(nil, "/get/key-" .. math.random(0, ${SPREAD_KEYS - 1})) end\n`);
  const servers = { shmkv: await startServer("shmkv", name, SPREAD_KEYS), map: await startServer("map", name, SPREAD_KEYS) };
  let runs: Map<"shmkv" | "map", Served[]>;
  try {
    runs = inRounds(rounds, ["shmkv", "map"] as const, (impl) => load(servers[impl], "", seconds, script));
  } finally {
    await Promise.all(Object.values(servers).map((server) => server.stop()));
  }
  const { ops: ratio, cpu: cpuRatio } = servedRatios(runs.get("shmkv")!, runs.get("map")!);
  return { results: { shmkv: medianServed(runs.get("shmkv")!), map: medianServed(runs.get("map")!) }, ratio, cpuRatio };
}

/** `rounds` rounds of `run` on every key, each in its roundOrder; the runs of each key. */
function inRounds<K, T>(rounds: number, keys: readonly K[], run: (key: K) => T): Map<K, T[]> {
  const runs = new Map(keys.map((key) => [key, [] as T[]]));
  for (let r = 0; r < rounds; r++) {
    for (const key of roundOrder(keys, r)) runs.get(key)!.push(run(key));
  }
  return runs;
}

export async function httpBench(o: { runs: number; seconds: number; table: Table }) {
  ensureWrk();
  const scratch = mkdtempSync(join(tmpdir(), "shmkv-bench-http-"));
  const post = join(scratch, "post.lua");
  writeFileSync(post, `wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = '${JSON.stringify({ key: "key-1", value: valueOf(1) })}'\n`);
  const routes: Record<string, [string, string | undefined]> = {
    "GET /get/{key}": ["get/key-1", undefined],
    "POST /set": ["set", post],
    "GET /status": ["status", undefined],
  };
  // Many short rounds rather than a few long ones: one ratio's rounds spread over 0.66-1.20 here
  // (GET /get/{key}, 15 rounds of 1 s), and the median of 15 moves less than that of 5.
  const seconds = Math.max(1, o.seconds);
  const rounds = Math.max(15, o.runs);
  const name = `/shmkv-bench-http-${process.pid}`;
  const results: Record<string, Record<string, Served>> = {};
  const rss: Record<string, { idle: number; load: number }> = {};
  const ratios: Record<string, Record<string, number>> = {};
  let floor: Record<FloorPath, { ops: number; ratio?: number }>;
  let spread: Awaited<ReturnType<typeof spreadBench>>;
  try {
    // The servers run at once and their wrk runs alternate (inRounds); each ratio is the median of
    // the per-round ratios.
    const servers: Record<Impl, Server> = {
      shmkv: await startServer("shmkv", name),
      featured: await startServer("featured", name),
      map: await startServer("map", name),
      listen: await startServer("listen", name),
    };
    try {
      for (const impl of IMPLS) {
        for (let i = 0; i < 100; i++) await fetch(`${servers[impl].url}status`);
        rss[impl] = { idle: rssKiB(servers[impl].pid), load: 0 };
        results[impl] = {};
      }
      // Every round takes every route, each on every server in turn: the rounds of one route spread
      // over the whole section, so that a slow spell of the machine lasting a minute or two does not
      // fall on all of them (a route's 15 rounds took one minute before, and its ratio moved with the
      // spell it fell in). The runs of one route on the servers stay next to each other, paired.
      const cases = Object.entries(routes).flatMap(([route, [path, script]]) => IMPLS.map((impl) => ({ route, impl, path, script })));
      const all = inRounds(rounds, cases, (c) => load(servers[c.impl], c.path, seconds, c.script));
      for (const route of Object.keys(routes)) {
        const runs = Object.fromEntries(cases.filter((c) => c.route === route).map((c) => [c.impl, all.get(c)!])) as Record<Impl, Served[]>;
        for (const impl of IMPLS) results[impl]![route] = medianServed(runs[impl]);
        const ratio = (a: Impl, b: Impl) => servedRatios(runs[a], runs[b]).ops;
        const cpuRatio = (a: Impl, b: Impl) => servedRatios(runs[a], runs[b]).cpu;
        ratios[route] = {
          "shmkv/map": ratio("shmkv", "map"),
          "featured/map": ratio("featured", "map"),
          "shmkv/featured": ratio("shmkv", "featured"),
          "listen/map": ratio("listen", "map"),
          "shmkv/listen": ratio("shmkv", "listen"),
          "shmkv/map, CPU per request": cpuRatio("shmkv", "map"),
          "featured/map, CPU per request": cpuRatio("featured", "map"),
          "listen/map, CPU per request": cpuRatio("listen", "map"),
        };
      }
      for (const impl of IMPLS) rss[impl]!.load = rssKiB(servers[impl].pid, "VmHWM");
    } finally {
      await Promise.all(Object.values(servers).map((server) => server.stop()));
    }
    floor = await floorBench(rounds, seconds, post);
    spread = await spreadBench(rounds, seconds, `${name}-spread`, scratch);
  } finally {
    for (const segment of [name, `${name}-spread`]) if (existsSync(`/dev/shm${segment}`)) KvStore.unlink(segment);
    rmSync(scratch, { recursive: true, force: true });
  }

  const startup: Record<string, number> = {};
  const port = 20000 + (process.pid % 10000);
  const env = { PORT: `${port}`, KV_SHM_NAME: `${name}-start`, KV_LOG_REQUESTS: "0" };
  const startups = async (cmd: string[]) => {
    const times: number[] = [];
    for (let r = 0; r < o.runs; r++) times.push(await timeToFirstAnswer(cmd, port, env));
    return median(times);
  };
  try {
    startup["bun src/server.ts"] = await startups([process.execPath, "src/server.ts"]);
    const binary = join(ROOT, "build", "shmkv");
    if (existsSync(binary)) startup["build/shmkv serve (compiled)"] = await startups([binary, "serve"]);
  } finally {
    if (existsSync(`/dev/shm${name}-start`)) KvStore.unlink(`${name}-start`);
  }
  const binarySize = existsSync(join(ROOT, "build", "shmkv")) ? statSync(join(ROOT, "build", "shmkv")).size : undefined;

  const fmt = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} ms` : `${(n / 1e3).toFixed(0)} µs`);
  const times = (x: number) => `${x.toFixed(2)}×`;
  o.table(`HTTP (wrk, ${PINNED ? "1 thread on core 1, servers on core 0" : "2 threads"}, ${CONNECTIONS} connections, ${rounds} rounds of ${seconds} s; 10 entries; CPU/req: the server's CPU time per request, compared as the Map app's over it)`,
    ["route", "server", "req/s", "p50", "p99", "CPU/req", "vs Map app", "vs Map app, CPU", "vs Map app + features", "vs Map app by listen"],
    Object.keys(routes).flatMap((route) => IMPLS.map((impl) => {
      const f = results[impl]![route]!;
      const r = ratios[route]!;
      const vs = (suffix: string) => (impl === "map" ? "-" : times(r[`${impl}/map${suffix}`]!));
      return [route, LABEL[impl], f.ops.toFixed(0), fmt(f.p50), fmt(f.p99), `${f.cpu.toFixed(1)} µs`, vs(""), vs(", CPU per request"),
        impl === "shmkv" ? times(r["shmkv/featured"]!) : "-", impl === "shmkv" ? times(r["shmkv/listen"]!) : "-"];
    })));
  o.table(`GET /get/{key} over ${SPREAD_KEYS} keys at random, each server holding them (no target; ${rounds} rounds)`,
    ["server", "req/s", "p50", "p99", "CPU/req", "vs Map app", "vs Map app, CPU"],
    (["shmkv", "map"] as const).map((impl) => {
      const f = spread.results[impl];
      const vs = (x: number) => (impl === "map" ? "-" : times(x));
      return [LABEL[impl], f.ops.toFixed(0), fmt(f.p50), fmt(f.p99), `${f.cpu.toFixed(1)} µs`, vs(spread.ratio), vs(spread.cpuRatio)];
    }));
  o.table(`What Bun alone charges for the ETag header, a look at If-None-Match and the strict body read (bench/bun-floor.ts: plain Bun.serve, no Elysia, no store; ${rounds} rounds)`,
    ["answer", "req/s", "vs without"],
    Object.entries(FLOOR_PATHS).map(([path, { label }]) => {
      const f = floor[path as FloorPath];
      return [label, f.ops.toFixed(0), f.ratio === undefined ? "-" : times(f.ratio)];
    }));
  o.table("Resources", ["figure", "shmkv", "Map app"], [
    ["RSS idle", `${(rss.shmkv!.idle / 1024).toFixed(1)} MiB`, `${(rss.map!.idle / 1024).toFixed(1)} MiB`],
    ["RSS peak, after the load (VmHWM)", `${(rss.shmkv!.load / 1024).toFixed(1)} MiB`, `${(rss.map!.load / 1024).toFixed(1)} MiB`],
    ...Object.entries(startup).map(([k, v]) => [`start to first answer: ${k}`, `${v.toFixed(0)} ms`, "-"]),
    ...(binarySize ? [["compiled binary size", `${(binarySize / 2 ** 20).toFixed(1)} MiB`, "-"]] : []),
  ]);
  const ratio = (route: string) => ratios[route]!["shmkv/map"]!;
  return {
    results,
    ratios,
    bun_floor: floor,
    spread,
    rss_kib: rss,
    startup_ms: startup,
    binary_bytes: binarySize,
    targets: {
      "HTTP GET /get/{key} vs Map app req/s, target >= 0.85": ratio("GET /get/{key}"),
      "HTTP POST /set vs Map app req/s, target >= 0.8": ratio("POST /set"),
      "server idle RSS / Map app idle RSS, target <= 1.25": rss.shmkv!.idle / rss.map!.idle,
    },
  };
}
