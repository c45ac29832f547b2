/** GET /watch: Server-Sent Events over a real socket (port 0), with writes from C and from here. */
import { afterEach, beforeEach, describe, expect, it } from "bun:test";
import { createApp, type App } from "../../src/http/app.ts";
import { StoreSlot } from "../../src/http/store-slot.ts";
import { watchRoute } from "../../src/http/watch.ts";
import { startServer } from "../../src/server.ts";
import { KvStore } from "../../src/store.ts";
import { expectError, get } from "../helpers/http.ts";
import { kvtool } from "../helpers/kvtool.ts";
import { GarbageSegment } from "../helpers/segments.ts";
import { TempStore, uniqueName, unlinkQuietly } from "../helpers/shm.ts";
import { SseClient, type SseEvent } from "../helpers/sse.ts";
import { waitFor } from "../helpers/wait.ts";

let temp: TempStore;
let app: App;
let server: Bun.Server<undefined>;
let clients: SseClient[];

beforeEach(() => {
  temp = new TempStore({ maxEntries: 64 });
  app = createApp(temp.store, { watch: { heartbeatMs: 50 } });
  server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (request) => app.handle(request), development: false });
  clients = [];
});

afterEach(async () => {
  clients.forEach((c) => c.close());
  await server.stop(true);
  temp[Symbol.dispose]();
});

/** A client of /watch on `path`, once the server answered (and so subscribed it). */
async function watcher(path = "/watch", headers: Record<string, string> = {}): Promise<SseClient> {
  const client = await SseClient.open(server.url.href, path, headers);
  clients.push(client);
  await client.answered();
  return client;
}

/** Events without their arrival time, data parsed. */
function plain(events: SseEvent[]): unknown[] {
  return events.map(({ id, event, data }) => ({ ...(id ? { id } : {}), event, data: JSON.parse(data) }));
}

const hub = () => app.decorator.watchHub;

describe("GET /watch", () => {
  it("streams each change made by another process, with its revision as the event id", async () => {
    const client = await watcher();
    expect(kvtool(temp.name, ["set", "k", "from C"]).exitCode).toBe(0);
    expect(kvtool(temp.name, ["del", "k"]).exitCode).toBe(0);
    expect({
      status: client.status,
      type: client.headers.get("content-type"),
      events: plain(await client.received(2)),
    }).toEqual({
      status: 200,
      type: "text/event-stream",
      events: [
        { id: "1", event: "set", data: { key: "k", value: "from C", revision: 1, timestamp: expect.any(Number) } },
        { id: "2", event: "delete", data: { key: "k", revision: 2, timestamp: expect.any(Number) } },
      ],
    });
  });

  it("carries on through a resize of the store, with the same ids and no resync", async () => {
    const client = await watcher();
    expect(kvtool(temp.name, ["set", "before", "1"]).exitCode).toBe(0);
    await client.received(1);
    expect(kvtool(temp.name, ["resize", "200", "0", "0"]).exitCode).toBe(0);
    expect(kvtool(temp.name, ["set", "after", "2"]).exitCode).toBe(0);
    const events = (await client.received(2)).map(({ id, event }) => `${id} ${event}`);
    const status = (await (await app.handle(get("/status"))).json()) as { max_entries: number; version: number };
    expect({ events, max_entries: status.max_entries, version: status.version }).toEqual({ events: ["1 set", "2 set"], max_entries: 200, version: 2 });
  });

  it("starts from now when no revision is given", async () => {
    temp.store.set("before", "1");
    const client = await watcher();
    temp.store.set("after", "2");
    expect(plain(await client.received(1)).map((e) => (e as { id: string }).id)).toEqual(["2"]);
  });

  it("resumes after ?since= with the changes the ring still holds", async () => {
    for (const key of ["a", "b", "c"]) temp.store.set(key, key);
    const client = await watcher("/watch?since=1");
    expect(plain(await client.received(2)).map((e) => (e as { id: string }).id)).toEqual(["2", "3"]);
  });

  it("resumes after Last-Event-ID, which wins over ?since=", async () => {
    for (const key of ["a", "b", "c"]) temp.store.set(key, key);
    const client = await watcher("/watch?since=0", { "Last-Event-ID": "2" });
    temp.store.set("d", "d");
    expect(plain(await client.received(2)).map((e) => (e as { id: string }).id)).toEqual(["3", "4"]);
  });

  it("tells a client that fell behind the ring to resync, then goes on", async () => {
    for (let i = 0; i < 300; i++) temp.store.set("k", `${i}`);
    const client = await watcher("/watch?since=1");
    temp.store.set("k", "next");
    expect(plain(await client.received(2))).toEqual([
      { event: "resync", data: { version: 300 } },
      { id: "301", event: "set", data: { key: "k", value: "next", revision: 301, timestamp: expect.any(Number) } },
    ]);
  });

  it("tells a client whose revision is beyond the store's (a replaced store) to resync", async () => {
    temp.store.set("k", "v");
    const client = await watcher("/watch?since=50");
    expect(plain(await client.received(1))).toEqual([{ event: "resync", data: { version: 1 } }]);
  });

  it("sends only the keys that start with ?prefix=", async () => {
    const client = await watcher(`/watch?prefix=${encodeURIComponent("app/")}`);
    for (const key of ["other", "app/x", "ap", "app/y"]) temp.store.set(key, "v");
    expect(plain(await client.received(2)).map((e) => (e as { data: { key: string } }).data.key)).toEqual(["app/x", "app/y"]);
  });

  it("sends a set's expiry as expires_at, and the reclaim of an expired entry as a delete with reason expired", async () => {
    const client = await watcher();
    temp.store.set("brief", "v", { ttl: 30 });
    const expiresAt = temp.store.getEntry("brief")!.expiresAt! / 1000;
    temp.store.set("plain", "v");
    temp.store.delete("plain");
    await waitFor(() => temp.store.get("brief") === undefined, { what: "brief to expire" });
    expect(temp.store.expire()).toBe(1);
    const timestamp = expect.any(Number);
    expect(plain(await client.received(4))).toEqual([
      { id: "1", event: "set", data: { key: "brief", value: "v", revision: 1, timestamp, expires_at: expiresAt } },
      { id: "2", event: "set", data: { key: "plain", value: "v", revision: 2, timestamp } },
      { id: "3", event: "delete", data: { key: "plain", revision: 3, timestamp } },
      { id: "4", event: "delete", data: { key: "brief", revision: 4, timestamp, reason: "expired" } },
    ]);
  });

  it("keeps a quiet stream open with heartbeat comments", async () => {
    const client = await watcher();
    await waitFor(() => client.comments.length >= 2, { what: "two heartbeats" });
    expect({ comments: client.comments.slice(0, 2), events: client.events }).toEqual({ comments: ["heartbeat", "heartbeat"], events: [] });
  });

  it("serves every watcher from one subscription each to one feed, and lets go of those that disconnect", async () => {
    const three = [await watcher(), await watcher("/watch?prefix=k"), await watcher("/watch?since=0")];
    const open = { watchers: hub().watchers, subscribers: hub().subscribers };
    temp.store.set("k", "v");
    await Promise.all(three.map((c) => c.received(1)));
    three.forEach((c) => c.close());
    await waitFor(() => hub().watchers === 0 && hub().subscribers === 0, { what: "every watcher released" });
    expect(open).toEqual({ watchers: 3, subscribers: 3 });
  });

  it("cuts off a client that stops reading, its stream ending after a gapless run of events", async () => {
    const slow = createApp(temp.store, { watch: { maxQueued: 4 } });
    const response = await slow.handle(get("/watch?since=0")); // its body is not read for now
    for (let i = 1; i <= 20; i++) temp.store.set("k", `${i}`);
    await waitFor(() => slow.decorator.watchHub.watchers === 0, { what: "the slow client cut off" });
    const ids = [...(await response.text()).matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
    expect(ids).toEqual(Array.from({ length: ids.length }, (_, i) => i + 1));
    expect(ids.length).toBeLessThan(20);
  });

  it.each([
    ["/watch?since=-1", {}, "since"],
    ["/watch?since=x", {}, "since"],
    ["/watch", { "last-event-id": "abc" }, "Last-Event-ID"],
  ])("answers 400 to %s %o with a sentence", async (path, headers, name) => {
    const detail = new RegExp(`^${name} must be a revision: a whole number from 0$`);
    await expectError(app.handle(new Request(`http://localhost${path}`, { headers })), 400, "BAD_REQUEST", detail);
  });

  it("answers HEAD with the stream's status and headers, no body, and no watcher left", async () => {
    const r = await app.handle(new Request("http://localhost/watch?since=0", { method: "HEAD" }));
    expect({ status: r.status, type: r.headers.get("content-type"), body: await r.text(), watchers: hub().watchers }).toEqual({
      status: 200,
      type: "text/event-stream",
      body: "",
      watchers: 0,
    });
    await expectError(app.handle(new Request("http://localhost/watch?since=x", { method: "HEAD" })), 400, "BAD_REQUEST", /^since must be/);
  });

  it.each(["/watch", "/watch?since=0"])("answers 503 to %s while there is no store", async (path) => {
    using garbage = new GarbageSegment();
    using slot = StoreSlot.opening(() => KvStore.open(garbage.name));
    const unavailable = createApp(slot);
    await expectError(unavailable.handle(get(path)), 503, "STORE_UNAVAILABLE", /not available/);
    expect(unavailable.decorator.watchHub.watchers).toBe(0);
  });
});

describe("GET /watch, when the segment is replaced", () => {
  it("tells its clients to resync, then streams the new segment's changes", async () => {
    const name = uniqueName();
    using slot = StoreSlot.opening(() => KvStore.open(name, { create: true }), { retryMs: 10, watchMs: 10 });
    const replacing = createApp(slot);
    const local = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (request) => replacing.handle(request), development: false });
    try {
      const client = await SseClient.open(local.url.href, "/watch");
      clients.push(client);
      await client.answered();
      KvStore.unlink(name);
      using other = KvStore.open(name, { create: true });
      for (const key of ["a", "b"]) other.set(key, "elsewhere");
      await client.received(1);
      other.set("c", "after");
      expect(plain(await client.received(2))).toEqual([
        { event: "resync", data: { version: 2 } },
        { id: "3", event: "set", data: { key: "c", value: "after", revision: 3, timestamp: expect.any(Number) } },
      ]);
    } finally {
      await local.stop(true);
      unlinkQuietly(name);
    }
  });
});

describe("GET /watch of a store that evicts", () => {
  it("sends each eviction as a delete with reason evicted", async () => {
    using lru = new TempStore({ maxEntries: 2, evict: "lru" });
    const evicting = createApp(lru.store);
    const local = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (request) => evicting.handle(request), development: false });
    try {
      const client = await SseClient.open(local.url.href, "/watch");
      clients.push(client);
      await client.answered();
      for (const key of ["a", "b", "c"]) lru.store.set(key, "v");
      const events = plain(await client.received(4)).map((e) => (e as { event: string; data: { key: string; reason?: string } }));
      const evicted = events.find((e) => e.data.reason !== undefined);
      expect({
        order: events.map((e) => e.event),
        evicted: { event: evicted?.event, reason: evicted?.data.reason, gone: lru.store.get(evicted?.data.key ?? "") },
        kept: lru.store.keysFrom(0, 10).items.sort(),
      }).toEqual({
        order: ["set", "set", "delete", "set"],
        evicted: { event: "delete", reason: "evicted", gone: undefined },
        kept: ["a", "b", "c"].filter((key) => key !== evicted?.data.key),
      });
    } finally {
      await local.stop(true);
    }
  });
});

describe("GET /watch, behind the server's idle timeout", () => {
  it("stays open longer than the timeout, with nothing to send", async () => {
    const quiet = createApp(temp.store, { watch: { heartbeatMs: 5000 } });
    const handle = (r: Request) => quiet.handle(r);
    const local = Bun.serve({ hostname: "127.0.0.1", port: 0, idleTimeout: 1, routes: watchRoute(handle), fetch: handle });
    try {
      const client = await SseClient.open(local.url.href, "/watch");
      clients.push(client);
      await client.answered();
      // Bun cuts a connection idle for 1 s after about 4 s (its timer ticks every 4 s); the first
      // heartbeat comes after 5 s: the stream must still be open by then.
      await waitFor(() => client.comments.length > 0 || client.ended, { what: "a heartbeat, or the end of the stream" });
      expect({ comments: client.comments, ended: client.ended }).toEqual({ comments: ["heartbeat"], ended: false });
    } finally {
      await local.stop(true);
    }
  });
});

describe("GET /watch, as the server stops", () => {
  it("ends every stream, so the stop does not wait for them", async () => {
    const name = uniqueName();
    const quiet = { info: () => {}, error: () => {} };
    const running = startServer({ host: "127.0.0.1", port: 0, name, create: {}, maxBodyBytes: 1024, logRequests: false }, quiet);
    try {
      const client = await SseClient.open(running.url, "/watch");
      await client.answered();
      let stopped = false;
      void running.stop().then(() => (stopped = true));
      await waitFor(() => stopped && client.ended, { timeoutMs: 2000, what: "the stop, and the stream's end" });
      expect(client.status).toBe(200);
    } finally {
      unlinkQuietly(name);
    }
  });
});

describe("GET /watch in the OpenAPI document", () => {
  it("is a text/event-stream of set, delete and resync events, with since, prefix and Last-Event-ID", async () => {
    type Op = {
      parameters: { in: string; name: string; required: boolean }[];
      responses: Record<string, { content: Record<string, { schema: { properties: { event: { enum: string[] } } } }> }>;
    };
    const spec = (await (await app.handle(get("/swagger/json"))).json()) as { paths: Record<string, { get: Op }> };
    const op = spec.paths["/watch"]!.get;
    expect({
      parameters: op.parameters.map((p) => `${p.in} ${p.name} ${p.required}`).sort(),
      types: Object.keys(op.responses["200"]!.content),
      events: op.responses["200"]!.content["text/event-stream"]!.schema.properties.event.enum,
    }).toEqual({
      parameters: ["header last-event-id false", "query prefix false", "query since false"],
      types: ["text/event-stream"],
      events: ["set", "delete", "resync"],
    });
  });
});
