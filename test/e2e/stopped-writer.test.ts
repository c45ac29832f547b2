/**
 * A writer stopped (SIGSTOP) while it holds the store's lock, at every fault point of every kind of
 * write, while a real server serves clients and a /watch stream is open: every request still
 * answers within a second. Reads of the keys the write does not touch (as JSON, and a key with "/"
 * as ?raw) answer 200 with their values,
 * /health tells how long the lock has been held, and a write answers 503 STORE_BUSY with
 * Retry-After. Once the writer goes on, its write lands and the server serves it.
 */
import { afterEach, beforeEach, describe, expect, it } from "bun:test";
import { kvtool, stoppedKvtool } from "../helpers/kvtool.ts";
import { BUN, ServerProcess } from "../helpers/server-process.ts";
import { uniqueName, unlinkQuietly } from "../helpers/shm.ts";

/** The bound every request must answer within while the writer is stopped. */
const ANSWER_MS = 1000;

let name: string;
/** Writers still stopped when a test fails: killed after it, so none holds a lock for ever. */
const writers = new Set<Bun.Subprocess>();

beforeEach(() => {
  name = uniqueName();
  expect(kvtool(name, ["create", "16", "63", "255"]).exitCode).toBe(0);
  for (const key of ["a", "b", "c", "untouched", "dir/untouched"]) expect(kvtool(name, ["set", key, `${key}-value`]).exitCode).toBe(0);
  expect(kvtool(name, ["del", "c"]).exitCode).toBe(0); // a free slot for the insert to take
});

afterEach(() => {
  for (const writer of writers) writer.kill("SIGKILL");
  writers.clear();
  unlinkQuietly(name);
});

/** The writes, each with the fault points it passes (an update moves no index cell, a delete copies no value). */
const WRITES: [string, string[], number[]][] = [
  ["insert", ["set", "new", "inserted"], [1, 2, 3, 4, 5, 6, 7, 8]],
  ["update", ["set", "a", "rewritten"], [1, 2, 3, 4, 6, 7, 8]],
  ["delete", ["del", "b"], [1, 2, 3, 5, 6, 7, 8]],
];

/** kvtool_fault running `args` and stopped at fault point `point`, holding the lock; killed after a failed test. */
async function stoppedWriter(args: string[], point: number) {
  const proc = await stoppedKvtool(name, args, point);
  writers.add(proc);
  return proc;
}

/** A request's status, body (JSON, or with `raw` the text) and the milliseconds it took. */
async function timed(url: string, init?: RequestInit, raw = false) {
  const started = performance.now();
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(5 * ANSWER_MS) });
  // The fields of whichever answer it is: /health's lock, an error's code, a read's key and value.
  const body = (raw ? { value: await response.text() } : await response.json()) as {
    lock: { held_for_ms: number };
    code: string;
    key: string;
    value: string;
  };
  return { status: response.status, body, ms: performance.now() - started, retryAfter: response.headers.get("retry-after") };
}

describe("a writer stopped inside the lock", () => {
  it("holds up no request: reads go on, writes answer 503 within a second, at every fault point", async () => {
    await using server = new ServerProcess([BUN, "src/server.ts", "--quiet"], { env: { PORT: "0", KV_SHM_NAME: name } });
    const url = await server.url();
    const watcher = await fetch(`${url}watch`); // its feed polls the store all along
    expect(watcher.status).toBe(200);
    for (const [kind, args, points] of WRITES) {
      for (const point of points) {
        const writer = await stoppedWriter(args, point);
        const [health, untouched, rawSlashed, status, metrics, keys, set] = await Promise.all([
          timed(`${url}health`),
          timed(`${url}get/untouched`),
          timed(`${url}get/dir/untouched?raw`, undefined, true),
          timed(`${url}status`),
          fetch(`${url}metrics`).then(async (r) => ({ status: r.status, text: await r.text() })),
          timed(`${url}keys`),
          timed(`${url}set`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ key: "untouched", value: "x" }) }),
        ]);
        const slowest = Math.max(health.ms, untouched.ms, rawSlashed.ms, status.ms, keys.ms, set.ms);
        expect({
          at: `${kind} at point ${point}`,
          answeredInTime: slowest < ANSWER_MS,
          health: health.status,
          lockHeld: health.body.lock.held_for_ms > 0,
          untouched: [untouched.status, untouched.body.key, untouched.body.value],
          rawSlashed: [rawSlashed.status, rawSlashed.body.value],
          status: status.status,
          keys: keys.status,
          metrics: metrics.status,
          lockGauge: /^shmkv_lock_held_seconds 0\.\d+|^shmkv_lock_held_seconds [1-9]/m.test(metrics.text),
          set: [set.status, set.body.code, set.retryAfter],
        }).toEqual({
          at: `${kind} at point ${point}`,
          answeredInTime: true,
          health: 200,
          lockHeld: true,
          untouched: [200, "untouched", "untouched-value"],
          rawSlashed: [200, "dir/untouched-value"],
          status: 200,
          keys: 200,
          metrics: 200,
          lockGauge: true,
          set: [503, "STORE_BUSY", "1"],
        });
        writer.kill("SIGCONT");
        expect(await writer.exited).toBe(0);
        // Put the store back as it was for the next round, through the server.
        const restore = args[0] === "del" ? { key: "b", value: "b-value" } : args[1] === "new" ? undefined : { key: "a", value: "a-value" };
        if (restore) expect((await timed(`${url}set`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(restore) })).status).toBe(200);
        if (args[1] === "new") expect((await fetch(`${url}delete/new`, { method: "DELETE" })).status).toBe(200);
      }
    }
    await watcher.body?.cancel();
  }, 60_000);

  it("shows readers the write once the writer goes on", async () => {
    await using server = new ServerProcess([BUN, "src/server.ts", "--quiet"], { env: { PORT: "0", KV_SHM_NAME: name } });
    const url = await server.url();
    const writer = await stoppedWriter(["set", "a", "rewritten"], 4); // half-way through the value
    expect((await timed(`${url}get/a`)).body.value).toBe("a-value");
    writer.kill("SIGCONT");
    expect(await writer.exited).toBe(0);
    expect([(await timed(`${url}get/a`)).body.value, (await timed(`${url}health`)).body.lock]).toEqual(["rewritten", { held_for_ms: 0 }]);
  });
});
