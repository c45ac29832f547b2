/**
 * As a user would: a server started with `--evict lru` in its own process, written far past its
 * capacity over HTTP. Every set answers 200, and a key read just before each burst of new keys
 * survives it; /health, /metrics and /watch tell of the evictions.
 */
import { afterEach, beforeEach, describe, expect, it } from "bun:test";
import { BUN, ServerProcess } from "../helpers/server-process.ts";
import { uniqueName, unlinkQuietly } from "../helpers/shm.ts";
import { SseClient } from "../helpers/sse.ts";
import { waitFor } from "../helpers/wait.ts";

let name: string;

beforeEach(() => {
  name = uniqueName();
});

afterEach(() => {
  unlinkQuietly(name);
});

const CAPACITY = 64;
const ROUNDS = 40;
const BURST = 4;

/** The access clock's tick: milliseconds / 16, as the store records when an entry was last used. */
const tick = () => Math.floor(Date.now() / 16);

describe("a server started with --evict lru", () => {
  it("answers 200 to every set far past its capacity, and the key read before each burst survives it", async () => {
    await using server = new ServerProcess([BUN, "src/server.ts", "--quiet", "--evict", "lru", "--max-entries", `${CAPACITY}`], {
      env: { PORT: "0", KV_SHM_NAME: name },
    });
    const url = await server.url();
    const watcher = await SseClient.open(url, "/watch");
    try {
      await watcher.answered();
      const set = (key: string) =>
        fetch(`${url}set`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ key, value: "v" }) });
      expect((await set("hot")).status).toBe(200);
      const statuses: number[] = [];
      const hot: number[] = [];
      for (let round = 0, n = 0; round < ROUNDS; round++) {
        // The keys of earlier bursts are then older than this read of "hot".
        const before = tick();
        await waitFor(() => tick() > before, { what: "the access clock to move on" });
        hot.push((await fetch(`${url}get/hot`)).status);
        for (let i = 0; i < BURST; i++) statuses.push((await set(`k${n++}`)).status);
      }
      const evictions = 1 + ROUNDS * BURST - CAPACITY;
      const events = await watcher.received(1 + ROUNDS * BURST + evictions);
      const health = (await (await fetch(`${url}health`)).json()) as { evict: string; entry_count: number };
      const metrics = await (await fetch(`${url}metrics`)).text();
      expect({
        statuses: [...new Set(statuses)],
        hot: [...new Set(hot)],
        health: [health.evict, health.entry_count],
        evictions: /^shmkv_evictions_total (\d+)$/m.exec(metrics)?.[1],
        evicted: events.filter((e) => e.event === "delete" && JSON.parse(e.data).reason === "evicted").length,
        hotEvicted: events.some((e) => e.event === "delete" && JSON.parse(e.data).key === "hot"),
      }).toEqual({
        statuses: [200],
        hot: [200],
        health: ["lru", CAPACITY],
        evictions: `${evictions}`,
        evicted: evictions,
        hotEvicted: false,
      });
    } finally {
      watcher.close();
    }
  });
});
