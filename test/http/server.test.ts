/** startServer over a real socket (port 0): the API, its log, its limits and its graceful stop. */
import { afterEach, beforeEach, describe, expect, it } from "bun:test";
import { existsSync, statSync } from "node:fs";
import type { ServerConfig } from "../../src/config.ts";
import { startServer, type Logger, type RunningServer } from "../../src/server.ts";
import { KvStore } from "../../src/store.ts";
import { uniqueName, unlinkQuietly } from "../helpers/shm.ts";
import { SseClient } from "../helpers/sse.ts";
import { waitFor } from "../helpers/wait.ts";

class CapturingLogger implements Logger {
  readonly lines: string[] = [];
  readonly errors: string[] = [];
  info = (line: string) => void this.lines.push(line);
  error = (line: string) => void this.errors.push(line);
}

const JSON_TYPE = { "content-type": "application/json" };

let name: string;
let log: CapturingLogger;
let servers: RunningServer[];

function config(overrides: Partial<ServerConfig> = {}): ServerConfig {
  return { host: "127.0.0.1", port: 0, name, create: {}, maxBodyBytes: 64 * 1024, logRequests: true, ...overrides };
}

function start(overrides: Partial<ServerConfig> = {}): RunningServer {
  const server = startServer(config(overrides), log);
  servers.push(server);
  return server;
}

beforeEach(() => {
  name = uniqueName();
  log = new CapturingLogger();
  servers = [];
});

afterEach(async () => {
  await Promise.all(servers.map((s) => s.abort()));
  unlinkQuietly(name);
});

/** A request body the test releases piece by piece: the request stays in flight until `end`. */
function heldBody(first: string) {
  const encoder = new TextEncoder();
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
      c.enqueue(encoder.encode(first));
    },
  });
  return {
    stream,
    end(rest: string) {
      controller.enqueue(encoder.encode(rest));
      controller.close();
    },
  };
}

describe("startServer", () => {
  it("serves the API on a free port and logs where, and that it created the segment", async () => {
    const server = start();
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const set = await fetch(`${server.url}set`, { method: "POST", headers: JSON_TYPE, body: JSON.stringify({ key: "a/b", value: "secret" }) });
    const got = await fetch(`${server.url}get/a%2Fb`);
    expect({ set: set.status, got: await got.json() }).toEqual({ set: 200, got: { key: "a/b", value: "secret" } });
    expect(log.lines.slice(0, 2)).toEqual([
      `created segment ${name}: 10 entries, keys up to 63 bytes, values up to 255 bytes, memory 3696 bytes, eviction none`,
      `listening on ${server.url} (API documentation: ${server.url}swagger)`,
    ]);
  });

  it("logs one line per request, with method, path, status and duration, never a value", async () => {
    const server = start();
    await fetch(`${server.url}set`, { method: "POST", headers: JSON_TYPE, body: JSON.stringify({ key: "k", value: "secret-value" }) });
    await fetch(`${server.url}get/missing?x=1`);
    await fetch(`${server.url}get/k`);
    await fetch(`${server.url}get/k`, { method: "HEAD" });
    expect(log.lines.slice(2)).toEqual([
      expect.stringMatching(/^POST \/set 200 \d+\.\dms$/),
      expect.stringMatching(/^GET \/get\/missing 404 \d+\.\dms$/),
      expect.stringMatching(/^GET \/get\/k 200 \d+\.\dms$/),
      expect.stringMatching(/^HEAD \/get\/k 200 \d+\.\dms$/),
    ]);
    expect(log.lines.join("\n")).not.toContain("secret-value");
  });

  it("answers GET /get/{key}, which Bun routes to the app's getKey, and HEAD of it, as the app answers them", async () => {
    const server = start();
    const written = await fetch(`${server.url}set`, { method: "POST", headers: JSON_TYPE, body: JSON.stringify({ key: "k", value: "v" }) });
    const etag = written.headers.get("etag")!;
    const seen = async (response: Response) => ({ status: response.status, etag: response.headers.get("etag"), body: await response.text() });
    expect({
      get: await seen(await fetch(`${server.url}get/k`)),
      notModified: await seen(await fetch(`${server.url}get/k`, { headers: { "if-none-match": etag } })),
      head: await seen(await fetch(`${server.url}get/k`, { method: "HEAD" })),
      missing: await seen(await fetch(`${server.url}get/nope`)),
      post: (await fetch(`${server.url}get/k`, { method: "POST" })).headers.get("allow"),
    }).toEqual({
      get: { status: 200, etag, body: '{"key":"k","value":"v"}' },
      notModified: { status: 304, etag, body: "" },
      head: { status: 200, etag, body: "" },
      missing: { status: 404, etag: null, body: '{"detail":"Key \'nope\' not found","code":"NOT_FOUND"}' },
      post: "GET, HEAD",
    });
  });

  it("logs no request when told not to", async () => {
    const server = start({ logRequests: false });
    await fetch(`${server.url}status`);
    expect(log.lines.length).toBe(2);
  });

  it("says when it opened an existing segment", async () => {
    using existing = KvStore.open(name, { create: true, maxEntries: 3 });
    start();
    expect(log.lines[0]).toBe(`opened segment ${existing.name}: 3 entries, keys up to 63 bytes, values up to 255 bytes, memory 1344 bytes, eviction none`);
  });

  it("creates the segment with the configured geometry, mode and eviction policy", async () => {
    const server = start({ create: { maxEntries: 3, keyMax: 8, valueMax: 16, mode: 0o640, evict: "lru" } });
    const status = (await (await fetch(`${server.url}status`)).json()) as { max_entries: number; evict: string };
    expect({ max: status.max_entries, evict: status.evict, mode: statSync(`/dev/shm${name}`).mode & 0o777 }).toEqual({ max: 3, evict: "lru", mode: 0o640 });
    expect(log.lines[0]).toEndWith(", eviction lru");
  });

  it("reclaims an expired entry by itself, with no client writing: /watch gets its delete with reason expired", async () => {
    const server = start();
    const watcher = await SseClient.open(server.url, "/watch");
    try {
      await watcher.answered();
      await fetch(`${server.url}set`, { method: "POST", headers: JSON_TYPE, body: JSON.stringify({ key: "brief", value: "v", ttl: 0.05 }) });
      await fetch(`${server.url}set`, { method: "POST", headers: JSON_TYPE, body: JSON.stringify({ key: "stays", value: "v" }) });
      const events = (await watcher.received(3)).map(({ event, data }) => ({ event, data: JSON.parse(data) as { key: string; reason?: string } }));
      const status = (await (await fetch(`${server.url}status`)).json()) as { entry_count: number };
      const metrics = await (await fetch(`${server.url}metrics`)).text();
      expect({
        deleted: events.filter(({ event }) => event === "delete").map(({ event, data }) => [event, data.key, data.reason]),
        count: status.entry_count, // reclaimed, not only absent to readers
        expired: /^shmkv_expired_total (\d+)$/m.exec(metrics)?.[1],
      }).toEqual({ deleted: [["delete", "brief", "expired"]], count: 1, expired: "1" });
    } finally {
      watcher.close();
    }
  });

  it("answers a body over the limit with 413 and a JSON detail, declared length or chunked", async () => {
    const server = start({ maxBodyBytes: 1024 });
    const big = JSON.stringify({ key: "k", value: "v".repeat(2048) });
    const declared = await fetch(`${server.url}set`, { method: "POST", headers: JSON_TYPE, body: big });
    const body = heldBody(big.slice(0, 1500));
    const chunked = fetch(`${server.url}set`, { method: "POST", headers: JSON_TYPE, body: body.stream });
    const answers = [await declared.json(), await (await chunked).json()];
    expect([declared.status, (await chunked).status, ...answers]).toEqual([
      413,
      413,
      { detail: "the request body is larger than 1024 bytes", code: "BODY_TOO_LARGE" },
      { detail: "the request body is larger than 1024 bytes", code: "BODY_TOO_LARGE" },
    ]);
  });

  it("on stop, refuses new connections, finishes the request in flight, then closes the store", async () => {
    const server = start();
    const body = heldBody('{"key": "late", ');
    const inFlight = fetch(`${server.url}set`, { method: "POST", headers: JSON_TYPE, body: body.stream });
    await waitFor(() => server.inFlight === 1, { what: "the request to reach the server" });
    const stopped = server.stop();
    const refused = await fetch(`${server.url}status`).then(
      () => "answered",
      () => "refused",
    );
    body.end('"value": "v"}');
    const response = await inFlight;
    await stopped;
    expect({ refused, status: response.status, body: await response.json() }).toEqual({
      refused: "refused",
      status: 200,
      body: { success: true, message: "Key 'late' set successfully" },
    });
    using reopened = KvStore.open(name);
    expect(reopened.get("late")).toBe("v");
  });

  it("throws when its port is taken", async () => {
    const first = start();
    const port = Number(new URL(first.url).port);
    expect(() => startServer(config({ port }), log)).toThrow();
  });

  describe("that cannot bind its port", () => {
    let taken: Bun.Server<undefined>;
    beforeEach(() => {
      taken = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("taken") });
    });
    afterEach(() => taken.stop(true));

    it("leaves no segment behind when it created it", () => {
      expect(() => startServer(config({ port: taken.port }), log)).toThrow();
      expect({ exists: existsSync(`/dev/shm${name}`), created: log.lines.some((line) => line.startsWith(`created segment ${name}`)) }).toEqual({
        exists: false,
        created: true,
      });
    });

    it("keeps a segment it merely opened, with its entries", () => {
      using existing = KvStore.open(name, { create: true });
      existing.set("k", "kept");
      expect(() => startServer(config({ port: taken.port }), log)).toThrow();
      using reopened = KvStore.open(name);
      expect(reopened.get("k")).toBe("kept");
    });
  });
});
