/**
 * One counter, incremented at once by C processes (kvtool), Bun processes (the binding) and HTTP
 * clients of a server in its own process: not one increment is lost.
 */
import { afterEach, beforeEach, describe, expect, it } from "bun:test";
import { join } from "node:path";
import { kvtool, kvtoolAsync } from "../helpers/kvtool.ts";
import { BUN, ServerProcess } from "../helpers/server-process.ts";
import { uniqueName, unlinkQuietly } from "../helpers/shm.ts";

let name: string;

beforeEach(() => {
  name = uniqueName();
});

afterEach(() => {
  unlinkQuietly(name);
});

/** test/fixtures/incr.ts in a child bun process: COUNT increments of KEY by BY; exit code and output. */
async function bunIncrementer(key: string, by: number, count: number): Promise<{ exitCode: number; stdout: string }> {
  const p = Bun.spawn([BUN, join(import.meta.dir, "..", "fixtures", "incr.ts"), name, key, String(by), String(count)], { stdout: "pipe", stderr: "inherit" });
  const stdout = await new Response(p.stdout).text();
  return { exitCode: await p.exited, stdout };
}

/**
 * `requests` POST /incr of KEY by BY, one after another: the statuses that were not 200, and the values
 * answered. A 503 STORE_BUSY (the processes held the lock past the server's busy wait) promises that
 * nothing was written, so the increment is sent again, as a client honouring Retry-After would: had it
 * been applied, the sum would come out too high.
 */
async function httpIncrementer(url: string, key: string, by: number, requests: number): Promise<{ failed: number[]; values: number[] }> {
  const failed: number[] = [];
  const values: number[] = [];
  for (let i = 0; i < requests; i++) {
    const r = await fetch(`${url}incr`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ key, by }) });
    const body = (await r.json()) as { value?: number; code?: string };
    if (r.status === 200) values.push(body.value!);
    else if (r.status === 503 && body.code === "STORE_BUSY") i--;
    else failed.push(r.status);
  }
  return { failed, values };
}

describe("a counter incremented by every kind of client at once", () => {
  it("ends at exactly the sum of the increments: 2 C and 2 Bun processes, 16 HTTP clients", async () => {
    expect(kvtool(name, ["create", "16", "63", "255"]).exitCode).toBe(0);
    await using server = new ServerProcess([BUN, "run", "server"], { env: { PORT: "0", KV_SHM_NAME: name, KV_LOG_REQUESTS: "0" } });
    const url = await server.url();
    // Enough work for the processes to run while the HTTP clients do (C is the faster).
    const [C, BUN_EACH] = [1_000_000, 200_000];
    const [c1, c2, b1, b2, ...http] = await Promise.all([
      kvtoolAsync(name, ["incr", "hits", "1", String(C)]),
      kvtoolAsync(name, ["incr", "hits", "3", String(C)]),
      bunIncrementer("hits", -1, BUN_EACH),
      bunIncrementer("hits", 2, BUN_EACH),
      ...Array.from({ length: 16 }, () => httpIncrementer(url, "hits", 5, 100)),
    ]);
    expect({
      exits: [c1.exitCode, c2.exitCode, b1.exitCode, b2.exitCode],
      httpFailures: http.flatMap((h) => h.failed),
      value: kvtool(name, ["get", "hits"]).stdout,
      version: kvtool(name, ["status"]).stdout.split(" ")[0],
      // HTTP alone adds fives: a value that is no multiple of 5 saw a process's increment in between.
      interleaved: http.some((h) => h.values.some((v) => v % 5 !== 0)),
    }).toEqual({
      exits: [0, 0, 0, 0],
      httpFailures: [],
      value: String(C * (1 + 3) + BUN_EACH * (-1 + 2) + 16 * 100 * 5),
      version: String(2 * C + 2 * BUN_EACH + 1600),
      interleaved: true,
    });
  });
});
