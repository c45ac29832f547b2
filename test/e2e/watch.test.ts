/**
 * The change feed end to end: a C program writes, the server (its own process) streams, a client on a
 * real socket receives, within the 50 ms at p99; and a thousand watchers at once.
 */
import { afterEach, beforeEach, describe, expect, it } from "bun:test";
import { createApp } from "../../src/http/app.ts";
import { percentiles } from "../../bench/measure.ts";
import { kvtool, kvtoolAsync } from "../helpers/kvtool.ts";
import { BUN, ServerProcess } from "../helpers/server-process.ts";
import { TempStore, uniqueName, unlinkQuietly } from "../helpers/shm.ts";
import { SseClient } from "../helpers/sse.ts";
import { waitFor } from "../helpers/wait.ts";

const CHANGES = 40;
const WATCHERS = 1000;

describe("a change made by a C program", () => {
  let name: string;

  beforeEach(() => {
    name = uniqueName();
  });

  afterEach(() => {
    unlinkQuietly(name);
  });

  it(`reaches an SSE client of the server within 50 ms at p99 (${CHANGES} changes)`, async () => {
    await using server = new ServerProcess([BUN, "src/server.ts", "--port", "0", "--name", name, "--quiet"]);
    const client = await SseClient.open(await server.url(), "/watch");
    await client.answered();
    // Each value is the Unix time in microseconds just before kvtool set it.
    const writer = await kvtoolAsync(name, ["stamp", "t", `${CHANGES}`, "10"]);
    expect(writer.exitCode).toBe(0);
    const events = await client.received(CHANGES);
    client.close();
    const latencies = events.map((e) => e.at - Number(JSON.parse(e.data).value) / 1000);
    const { p50, p99 } = percentiles(latencies);
    console.log(`C write -> SSE event over ${CHANGES} changes: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, max ${Math.max(...latencies).toFixed(2)} ms`);
    expect({ events: events.length, ids: events.map((e) => Number(e.id)), p99Below50: p99 < 50 }).toEqual({
      events: CHANGES,
      ids: Array.from({ length: CHANGES }, (_, i) => i + 1),
      p99Below50: true,
    });
  });
});

describe(`${WATCHERS} watchers`, () => {
  it("connect, each receives a change made in C, and all are released when they go", async () => {
    using temp = new TempStore();
    const app = createApp(temp.store);
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (request) => app.handle(request), development: false });
    const hub = app.decorator.watchHub;
    const clients: SseClient[] = [];
    try {
      for (let batch = 0; batch < WATCHERS / 100; batch++) {
        const opened = await Promise.all(Array.from({ length: 100 }, () => SseClient.open(server.url.href, "/watch")));
        await Promise.all(opened.map((c) => c.answered()));
        clients.push(...opened);
      }
      const open = { watchers: hub.watchers, subscribers: hub.subscribers };
      expect(kvtool(temp.name, ["set", "k", "for everyone"]).exitCode).toBe(0);
      await waitFor(() => clients.every((c) => c.events.length === 1), { what: "every watcher's event" });
      const ids = new Set(clients.map((c) => c.events[0]!.id));
      clients.forEach((c) => c.close());
      await waitFor(() => hub.watchers === 0 && hub.subscribers === 0, { what: "every watcher released" });
      expect({ open, ids: [...ids] }).toEqual({ open: { watchers: WATCHERS, subscribers: WATCHERS }, ids: ["1"] });
    } finally {
      clients.forEach((c) => c.close());
      await server.stop(true);
    }
  });
});
