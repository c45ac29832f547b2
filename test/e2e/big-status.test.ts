/**
 * A whole-store /status of 1,000,000 entries, sent by a real server while a writer writes: it is
 * sent as it is read, a slice at a time, so another client's /health keeps answering all along,
 * and the server's memory grows by a few slices, not by the whole answer.
 */
import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { readFileSync } from "node:fs";
import { kvtoolAsync } from "../helpers/kvtool.ts";
import { BUN, ServerProcess } from "../helpers/server-process.ts";
import { TempStore } from "../helpers/shm.ts";

const N = 1_000_000;
let temp: TempStore;

beforeAll(() => {
  temp = new TempStore({ maxEntries: N, keyMax: 16, valueMax: 16 });
  for (let i = 0; i < N; i++) temp.store.set(`key${i}`, `v${i}`);
});

afterAll(() => temp[Symbol.dispose]());

/** The process's own memory (not the pages of the segment it maps, which are shared), KiB. */
function anonKiB(pid: number): number {
  return Number(/RssAnon:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]);
}

describe("GET /status of 1,000,000 entries", () => {
  it("is sent a slice at a time: /health answers meanwhile, memory stays bounded, every entry arrives", async () => {
    await using server = new ServerProcess([BUN, "src/server.ts", "--quiet"], { env: { PORT: "0", KV_SHM_NAME: temp.name } });
    const url = await server.url();
    const anonBefore = anonKiB(server.proc.pid);
    // A C writer rewrites the first keys all along, each write a version more.
    const writer = kvtoolAsync(temp.name, ["writer", "1", "50", "200000"]);
    const response = await fetch(`${url}status`);
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    let chunks = 0;
    let slowestHealth = 0;
    let peakAnon = anonBefore;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      if (++chunks % 50 === 0) {
        const started = performance.now();
        expect((await fetch(`${url}health`)).status).toBe(200);
        slowestHealth = Math.max(slowestHealth, performance.now() - started);
        peakAnon = Math.max(peakAnon, anonKiB(server.proc.pid));
      }
    }
    await writer;
    const status = JSON.parse(text) as { version: number; entry_count: number; max_entries: number; entries: { key: string; value: string }[] };
    const wrong = status.entries.filter((e, i) => e.key !== `key${i}` || (i >= 50 && e.value !== `v${i}`)).length;
    expect({
      status: response.status,
      type: response.headers.get("content-type"),
      entries: status.entries.length,
      counts: [status.entry_count, status.max_entries],
      wrong,
      healthWithinASecond: slowestHealth < 1000,
      // The whole answer is over 50 MB; the server holds a few slices of it at a time.
      memoryGrowthUnder64MiB: peakAnon - anonBefore < 64 * 1024,
    }).toEqual({
      status: 200,
      type: "application/json;charset=utf-8",
      entries: N,
      counts: [N, N],
      wrong: 0,
      healthWithinASecond: true,
      memoryGrowthUnder64MiB: true,
    });
  }, 120_000);
});
