/** GET /metrics: the Prometheus text format, request counters and latencies, and the store's figures. */
import { describe, expect, it } from "bun:test";
import { createApp, type App } from "../../src/http/app.ts";
import { StoreSlot } from "../../src/http/store-slot.ts";
import { layoutOf } from "../../src/layout.ts";
import { KvStore } from "../../src/store.ts";
import { eachWithTempApp } from "../helpers/app.ts";
import { del, get, postSet } from "../helpers/http.ts";
import { kvtool } from "../helpers/kvtool.ts";
import { GarbageSegment } from "../helpers/segments.ts";
import { TempStore } from "../helpers/shm.ts";
import { waitFor } from "../helpers/wait.ts";

let temp: TempStore;
let app: App;

eachWithTempApp((made) => ({ temp, app } = made));

const SAMPLE = /^([a-z_]+)(\{[^}]*\})? (\S+)$/;

interface Exposition {
  type: string | null;
  /** Every sample, by its name and labels as written: 'shmkv_entries', 'x_total{a="b"}'. */
  samples: Map<string, number>;
  /** The families, in order, each with its TYPE. */
  types: Map<string, string>;
}

/** Scrape /metrics and parse it, failing on any line that is not a comment or a sample. */
async function scrape(target: App = app): Promise<Exposition> {
  const r = await target.handle(get("/metrics"));
  expect(r.status).toBe(200);
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  for (const line of (await r.text()).trimEnd().split("\n")) {
    const type = /^# TYPE (\S+) (counter|gauge|histogram)$/.exec(line);
    if (type) types.set(type[1]!, type[2]!);
    if (line.startsWith("#")) continue;
    const match = SAMPLE.exec(line);
    expect(match === null ? line : "a sample").toBe("a sample");
    samples.set(`${match![1]}${match![2] ?? ""}`, Number(match![3]));
  }
  return { type: r.headers.get("content-type"), samples, types };
}

function requests(method: string, route: string, status: number): string {
  return `shmkv_http_requests_total{method="${method}",route="${route}",status="${status}"}`;
}

describe("GET /metrics", () => {
  it("answers the Prometheus text format, version 0.0.4, each family typed", async () => {
    const { type, types } = await scrape();
    expect({ type, types: Object.fromEntries(types) }).toEqual({
      type: "text/plain; version=0.0.4; charset=utf-8",
      types: {
        shmkv_http_requests_total: "counter",
        shmkv_http_request_duration_seconds: "histogram",
        shmkv_store_up: "gauge",
        shmkv_entries: "gauge",
        shmkv_capacity_entries: "gauge",
        shmkv_store_version: "gauge",
        shmkv_segment_bytes: "gauge",
        shmkv_memory_bytes: "gauge",
        shmkv_memory_used_bytes: "gauge",
        shmkv_lock_held_seconds: "gauge",
        shmkv_lock_recoveries_total: "counter",
        shmkv_read_retries_total: "counter",
        shmkv_expired_total: "counter",
        shmkv_evictions_total: "counter",
      },
    });
  });

  it("counts requests by method, route pattern and status", async () => {
    temp.store.set("k", "v");
    await app.handle(get("/get/k"));
    await app.handle(get("/get/k"));
    await app.handle(get("/get/missing"));
    await app.handle(postSet({ key: "other", value: "v" }));
    await app.handle(del("/delete/other"));
    const before = (await scrape()).samples;
    expect([
      before.get(requests("GET", "/get/:key", 200)),
      before.get(requests("GET", "/get/:key", 404)),
      before.get(requests("POST", "/set", 200)),
      before.get(requests("DELETE", "/delete/:key", 200)),
    ]).toEqual([2, 1, 1, 1]);
    await app.handle(get("/get/k"));
    expect((await scrape()).samples.get(requests("GET", "/get/:key", 200))).toBe(3);
  });

  it("labels a request that matched no route 'unmatched', never with its path, and leaves its answer whole", async () => {
    const answered = await app.handle(get("/no-such-route-secret"));
    expect(await answered.json()).toEqual({ detail: "no such route", code: "ROUTE_NOT_FOUND" });
    const { samples } = await scrape();
    expect(samples.get(requests("GET", "unmatched", 404))).toBe(1);
    expect([...samples.keys()].filter((k) => k.includes("secret"))).toEqual([]);
  });

  it("keeps a latency histogram per route, its buckets cumulative and ending in the count", async () => {
    for (let i = 0; i < 5; i++) await app.handle(get("/health"));
    const { samples } = await scrape();
    const labels = 'method="GET",route="/health"';
    const buckets = [...samples].filter(([k]) => k.startsWith(`shmkv_http_request_duration_seconds_bucket{${labels},`));
    const counts = buckets.map(([, n]) => n);
    expect({
      ascending: counts.every((n, i) => i === 0 || n >= counts[i - 1]!),
      last: buckets.at(-1)?.[0].endsWith('le="+Inf"}'),
      inf: counts.at(-1),
      count: samples.get(`shmkv_http_request_duration_seconds_count{${labels}}`),
      sumPositive: samples.get(`shmkv_http_request_duration_seconds_sum{${labels}}`)! > 0,
    }).toEqual({ ascending: true, last: true, inf: 5, count: 5, sumPositive: true });
  });

  it("reports the memory of a store made with memoryBytes, and what its entries hold", async () => {
    using other = new TempStore({ maxEntries: 20, keyMax: 16, valueMax: 1000, memoryBytes: 8192 });
    other.store.set("k", "v".repeat(100)); // a chunk of 8 + 1 + 100 bytes, rounded to 16: 112
    const { samples } = await scrape(createApp(other.store));
    expect([samples.get("shmkv_memory_bytes"), samples.get("shmkv_memory_used_bytes")]).toEqual([8192, 112]);
  });

  it("reports the store's entries, capacity, version, size and a free lock", async () => {
    using other = new TempStore({ maxEntries: 20, keyMax: 16, valueMax: 32 });
    const otherApp = createApp(other.store);
    other.store.set("ab", "xyz");
    other.store.set("ключ", "значение"); // 8 + 16 bytes
    other.store.set("gone", "v");
    other.store.delete("gone");
    const { samples } = await scrape(otherApp);
    expect({
      up: samples.get("shmkv_store_up"),
      entries: samples.get("shmkv_entries"),
      capacity: samples.get("shmkv_capacity_entries"),
      version: samples.get("shmkv_store_version"),
      segment: samples.get("shmkv_segment_bytes"),
      lockHeld: samples.get("shmkv_lock_held_seconds"),
    }).toEqual({
      up: 1,
      entries: 2,
      capacity: 20,
      version: 4,
      segment: layoutOf({ maxEntries: 20, keyMax: 16, valueMax: 32 }).totalSize,
      lockHeld: 0,
    });
  });

  it("reports lock recoveries by any process and this server's seqlock read retries", async () => {
    temp.store.set("k", "original");
    // A C writer dies halfway through copying a value, holding the lock with the seqlock odd.
    expect(kvtool(temp.name, ["set", "k", "new-value"], 4).signalCode).toBe("SIGKILL");
    // Readers read around the dead write, from its undo record; the next write repairs.
    expect(await (await app.handle(get("/get/k"))).json()).toEqual({ key: "k", value: "original" });
    await app.handle(postSet({ key: "k", value: "after" }));
    const { samples } = await scrape();
    expect({
      recoveries: samples.get("shmkv_lock_recoveries_total"),
      retries: samples.get("shmkv_read_retries_total"),
    }).toEqual({ recoveries: 1, retries: temp.store.readRetries });
  });

  it("reports the entries reclaimed because they expired, and those evicted to make room, by any handle", async () => {
    using lru = new TempStore({ maxEntries: 2, evict: "lru" });
    const lruApp = createApp(lru.store);
    const before = await scrape(lruApp);
    lru.store.set("brief", "v", { ttl: 30 });
    await waitFor(() => lru.store.get("brief") === undefined, { what: "brief to expire" });
    using other = KvStore.open(lru.name); // another handle, as another process would have
    expect(other.expire()).toBe(1);
    for (const key of ["a", "b", "c"]) lru.store.set(key, "v"); // the third evicts one
    const { samples } = await scrape(lruApp);
    expect({
      before: [before.samples.get("shmkv_expired_total"), before.samples.get("shmkv_evictions_total")],
      after: [samples.get("shmkv_expired_total"), samples.get("shmkv_evictions_total")],
    }).toEqual({ before: [0, 0], after: [1, 1] });
  });

  it("still answers while the store is not available, saying so", async () => {
    using garbage = new GarbageSegment();
    const slot = StoreSlot.opening(() => KvStore.open(garbage.name));
    try {
      const { samples } = await scrape(createApp(slot));
      expect({ up: samples.get("shmkv_store_up"), entries: samples.get("shmkv_entries") }).toEqual({ up: 0, entries: undefined });
    } finally {
      slot.close();
    }
  });
});
