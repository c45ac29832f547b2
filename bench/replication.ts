/**
 * Replication through Redis (`make bench-replication`; not part of `make bench`): with Redis on
 * loopback, wrk on GET /get/{key} and POST /set against a replicated server and a plain one, then the
 * replication lag at a steady write rate: from a POST /set sent to one server to the change's event
 * on /watch of another (so it includes that server's HTTP and SSE). BENCH_SECONDS (default 3) per
 * wrk run, BENCH_RUNS (default 3) runs each, LAG_RATE writes/s (default 1,000) for LAG_SECONDS
 * (default 5).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KvStore } from "../src/store.ts";
import { ensureWrk, wrk } from "./http.ts";
import { keyOf, median, percentiles, valueOf } from "./measure.ts";

const ROOT = join(import.meta.dir, "..");
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const LAG_RATE = Number(process.env.LAG_RATE ?? 1000);
const LAG_SECONDS = Number(process.env.LAG_SECONDS ?? 5);
const ENTRIES = 10;

interface Proc {
  url: string;
  stop(): Promise<void>;
}

/** Start `cmd` and wait until its output matches `ready`; the URL it printed, if any. */
async function spawn(cmd: string[], env: Record<string, string>, ready: RegExp): Promise<Proc> {
  const p = Bun.spawn(cmd, { cwd: ROOT, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  let text = "";
  const decoder = new TextDecoder();
  const read = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  };
  void read(p.stdout);
  void read(p.stderr);
  const started = performance.now();
  while (!ready.test(text)) {
    if (p.exitCode !== null || performance.now() - started > 10_000) throw new Error(`${cmd.join(" ")} did not start:\n${text}`);
    await Bun.sleep(5);
  }
  const url = /listening on (\S+)/.exec(text)?.[1] ?? "";
  return { url, stop: async () => { p.kill("SIGTERM"); await p.exited; } };
}

async function redisServer(dir: string): Promise<Proc & { port: number }> {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const { port } = probe;
  probe.stop(true);
  const proc = await spawn(["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no"], {}, /Ready to accept/);
  return { ...proc, port };
}

function server(name: string, replicate?: string): Promise<Proc> {
  const env: Record<string, string> = { PORT: "0", KV_SHM_NAME: name, KV_LOG_REQUESTS: "0", KV_MAX_ENTRIES: String(ENTRIES) };
  if (replicate) Object.assign(env, { KV_REPLICATE: replicate, KV_NAMESPACE: `bench-${process.pid}` });
  return spawn([process.execPath, "src/server.ts"], env, /listening on/);
}

async function fill(url: string): Promise<void> {
  for (let i = 0; i < ENTRIES; i++) {
    const response = await fetch(`${url}set`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ key: keyOf(i), value: valueOf(i) }) });
    if (!response.ok) throw new Error(`filling ${url}: ${response.status}`);
  }
}

/** LAG_RATE writes/s to `writer` for LAG_SECONDS; the lag of each, in ms, as `follower`'s /watch showed it. */
async function lag(writer: string, follower: string): Promise<number[]> {
  const lags: number[] = [];
  const abort = new AbortController();
  const watch = await fetch(`${follower}watch`, { signal: abort.signal });
  const events = (async () => {
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for await (const chunk of watch.body!) {
        buffer += decoder.decode(chunk, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const data = /^data: (.*)$/m.exec(buffer.slice(0, end))?.[1];
          buffer = buffer.slice(end + 2);
          const value = data && (JSON.parse(data) as { value?: string }).value;
          if (value?.startsWith("t")) lags.push(performance.timeOrigin + performance.now() - Number(value.slice(1)));
        }
      }
    } catch {
      // aborted at the end
    }
  })();
  const total = LAG_RATE * LAG_SECONDS;
  const started = performance.now();
  const sent: Promise<unknown>[] = [];
  for (let i = 0; i < total; i++) {
    const due = started + (i * 1000) / LAG_RATE;
    const wait = due - performance.now();
    if (wait > 1) await Bun.sleep(wait);
    const value = `t${performance.timeOrigin + performance.now()}`;
    sent.push(fetch(`${writer}set`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ key: keyOf(i % ENTRIES), value }) }));
  }
  await Promise.all(sent);
  const deadline = performance.now() + 5000;
  while (lags.length < total && performance.now() < deadline) await Bun.sleep(10);
  abort.abort();
  await events;
  return lags;
}

const fmt = (n: number) => n.toLocaleString("en-US", { maximumFractionDigits: 2 });

async function main(): Promise<void> {
  ensureWrk();
  const scratch = mkdtempSync(join(tmpdir(), "shmkv-bench-repl-"));
  const names = [1, 2, 3].map((i) => `/shmkv-bench-repl-${process.pid}-${i}`);
  const procs: Proc[] = [];
  try {
    const redis = await redisServer(scratch);
    procs.push(redis);
    const redisUrl = `redis://127.0.0.1:${redis.port}`;
    const plain = await server(names[0]!);
    const replicated = await server(names[1]!, redisUrl);
    const follower = await server(names[2]!, redisUrl);
    procs.push(plain, replicated, follower);
    await fill(plain.url);
    await fill(replicated.url);
    const post = join(scratch, "post.lua");
    writeFileSync(post, `wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = '${JSON.stringify({ key: keyOf(1), value: valueOf(1) })}'\n`);
    const rows: string[][] = [];
    for (const [route, path, script] of [["GET /get/{key}", `get/${keyOf(1)}`, undefined], ["POST /set", "set", post]] as const) {
      const ops = { plain: [] as number[], replicated: [] as number[] };
      for (let run = 0; run < RUNS; run++) {
        for (const impl of run % 2 ? (["replicated", "plain"] as const) : (["plain", "replicated"] as const)) {
          ops[impl].push(wrk(`${(impl === "plain" ? plain : replicated).url}${path}`, SECONDS, script).ops);
        }
      }
      const ratio = median(ops.replicated.map((r, i) => r / ops.plain[i]!));
      rows.push([route, fmt(median(ops.plain)), fmt(median(ops.replicated)), `${fmt(ratio)}x`]);
    }
    console.log(`Replicated vs plain (Redis on loopback; wrk ${SECONDS}s x ${RUNS} runs; requests/s, medians)`);
    console.log(["route", "plain", "replicated", "ratio"].join("\t"));
    for (const row of rows) console.log(row.join("\t"));
    const lags = await lag(replicated.url, follower.url);
    const { p50, p99 } = percentiles(lags);
    console.log(`\nReplication lag at ${LAG_RATE} writes/s for ${LAG_SECONDS}s (POST /set on one server -> /watch event on another): ` +
      `${lags.length} of ${LAG_RATE * LAG_SECONDS} changes seen; p50 ${fmt(p50)} ms, p99 ${fmt(p99)} ms`);
  } finally {
    for (const proc of procs.reverse()) await proc.stop();
    for (const name of names) if (existsSync(`/dev/shm${name}`)) KvStore.unlink(name);
    rmSync(scratch, { recursive: true, force: true });
  }
}

await main();
