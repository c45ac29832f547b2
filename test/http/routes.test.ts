/** Every route and every status code of the HTTP API, through app.handle (no socket). */
import { describe, expect, it } from "bun:test";
import pkg from "../../package.json";
import { createApp, type App } from "../../src/http/app.ts";
import { StoreSlot } from "../../src/http/store-slot.ts";
import { KvStore } from "../../src/store.ts";
import { eachWithTempApp } from "../helpers/app.ts";
import { answer, BASE, del, expectError, get, keyPath, postSet } from "../helpers/http.ts";
import { GarbageSegment } from "../helpers/segments.ts";
import { TempStore } from "../helpers/shm.ts";

let temp: TempStore;
let app: App;

eachWithTempApp((made) => ({ temp, app } = made));

/** An app whose store cannot be opened (an incompatible segment), with what it was told. */
function unavailableApp(): { app: App; [Symbol.dispose](): void } {
  const garbage = new GarbageSegment();
  const slot = StoreSlot.opening(() => KvStore.open(garbage.name, { create: true }));
  return {
    app: createApp(slot),
    [Symbol.dispose]() {
      slot.close();
      garbage.remove();
    },
  };
}

describe("GET /", () => {
  it("names the software, its version and every endpoint", async () => {
    expect(await answer(app.handle(get("/")))).toEqual({
      status: 200,
      body: {
        name: "shmkv",
        version: pkg.version,
        endpoints: {
          "GET /": expect.any(String),
          "GET /get/{key}": expect.any(String),
          "POST /set": expect.any(String),
          "DELETE /delete/{key}": expect.any(String),
          "GET /status": expect.any(String),
          "GET /health": expect.any(String),
          "GET /watch": expect.any(String),
          "GET /ui": expect.any(String),
          "GET /keys": expect.any(String),
          "POST /incr": expect.any(String),
          "DELETE /keys": expect.any(String),
          "GET /metrics": expect.any(String),
          "GET /swagger": expect.any(String),
        },
      },
    });
  });
});

describe("GET /get/{key}", () => {
  it("answers 200 with the key and its value", async () => {
    temp.store.set("mykey", "myvalue");
    expect(await answer(app.handle(get("/get/mykey")))).toEqual({ status: 200, body: { key: "mykey", value: "myvalue" } });
  });

  it("answers at once, not with a promise (Elysia awaits a handler whose source looks asynchronous)", () => {
    temp.store.set("mykey", "myvalue");
    expect([app.fetch(get("/get/mykey")), app.fetch(get("/status"))].map((r) => r instanceof Response)).toEqual([true, true]);
  });

  it.each(["a/b", "with space", "ключ", "😀+emoji", "100%", "?#&="])("round-trips the key %p, percent-encoded", async (key) => {
    temp.store.set(key, `value of ${key}`);
    expect(await answer(app.handle(get(keyPath("get", key))))).toEqual({ status: 200, body: { key, value: `value of ${key}` } });
  });

  it("answers 404 for a missing key", async () => {
    await expectError(app.handle(get("/get/nokey")), 404, "NOT_FOUND", /^Key 'nokey' not found$/);
  });

  it("answers 404 for a key longer than the store could hold", async () => {
    await expectError(app.handle(get(`/get/${"k".repeat(64)}`)), 404, "NOT_FOUND", /not found/);
  });

  it("answers 400 for a NUL byte in the key", async () => {
    await expectError(app.handle(get("/get/a%00b")), 400, "INVALID_ARGUMENT", /NUL/);
  });

  it("answers 400 for a key that is not percent-encoded UTF-8", async () => {
    await expectError(app.handle(get("/get/%FF%FE")), 400, "BAD_REQUEST", /percent-encoded UTF-8/);
  });

  it("answers 503 with the reason when the store is not available", async () => {
    using u = unavailableApp();
    await expectError(u.app.handle(get("/get/k")), 503, "STORE_UNAVAILABLE", /incompatible segment/);
  });
});

describe("POST /set", () => {
  it("answers 200 with the seed's message and stores the value", async () => {
    expect(await answer(app.handle(postSet({ key: "mykey", value: "myvalue" })))).toEqual({
      status: 200,
      body: { success: true, message: "Key 'mykey' set successfully" },
    });
    expect(temp.store.get("mykey")).toBe("myvalue");
  });

  it("replaces the value of an existing key", async () => {
    await app.handle(postSet({ key: "k", value: "one" }));
    await app.handle(postSet({ key: "k", value: "two" }));
    expect({ value: temp.store.get("k"), count: temp.store.count }).toEqual({ value: "two", count: 1 });
  });

  it("reads a body of declared length without a look at request.body, which makes Bun build a stream", async () => {
    const sent = JSON.stringify({ key: "k", value: "v" });
    const request = postSet(sent, { "content-type": "application/json", "content-length": `${sent.length}` });
    let looks = 0;
    const body = Object.getOwnPropertyDescriptor(Request.prototype, "body")!.get!;
    Object.defineProperty(request, "body", { get: () => (looks++, body.call(request)) });
    expect({ status: (await app.handle(request)).status, looks, value: temp.store.get("k") }).toEqual({ status: 200, looks: 0, value: "v" });
  });

  it("accepts an empty value", async () => {
    expect((await app.handle(postSet({ key: "k", value: "" }))).status).toBe(200);
    expect(temp.store.get("k")).toBe("");
  });

  it("accepts JSON with a charset or as a +json type", async () => {
    for (const type of ["application/json; charset=utf-8", "application/merge-patch+json"]) {
      expect((await app.handle(postSet({ key: type, value: "v" }, { "content-type": type }))).status).toBe(200);
    }
  });

  it.each([
    ["form-urlencoded (curl -d without -H)", { "content-type": "application/x-www-form-urlencoded" }, '"application/x-www-form-urlencoded"'],
    ["text/plain", { "content-type": "text/plain;charset=UTF-8" }, '"text/plain;charset=UTF-8"'],
    ["no content type", {}, "none"],
  ])("answers 415 for a JSON body sent as %s, which a browser may send cross-site", async (_, headers, got) => {
    const detail = `the body must be JSON, sent with Content-Type: application/json (got ${got})`;
    expect(await answer(app.handle(postSet({ key: "k", value: "v" }, headers)))).toEqual({
      status: 415,
      body: { detail, code: "UNSUPPORTED_MEDIA_TYPE" },
    });
    expect(temp.store.count).toBe(0);
  });

  it("ignores fields other than key and value", async () => {
    expect((await app.handle(postSet({ key: "k", value: "v", ttl: 5 }))).status).toBe(200);
  });

  it("accepts a key and a value at exactly the store's limits, in UTF-8 bytes", async () => {
    const key = `${"é".repeat(31)}k`; // 63 bytes
    const value = `${"€".repeat(85)}`; // 255 bytes
    expect((await app.handle(postSet({ key, value }))).status).toBe(200);
    expect(temp.store.get(key)).toBe(value);
  });

  it.each([
    ["invalid JSON", "{not json", /not valid JSON/],
    ["an empty body", "", /not valid JSON/],
    ["a JSON array", "[1, 2]", /^the body must be a JSON object: \{"key": "mykey", "value": "myvalue"\}$/],
    ["a JSON string", '"key"', /^the body must be a JSON object/],
    ["JSON null", "null", /^the body must be a JSON object/],
    ["a missing key", { value: "v" }, /^key must be a string of at least one character$/],
    ["a missing value", { key: "k" }, /^value must be a string \(it may be empty\)$/],
    ["a non-string key", { key: 1, value: "v" }, /^key must be a string of at least one character$/],
    ["a non-string value", { key: "k", value: ["v"] }, /^value must be a string \(it may be empty\)$/],
    ["an empty key", { key: "", value: "v" }, /^key must be a string of at least one character$/],
  ])("answers 400 for %s", async (_, body, detail) => {
    await expectError(app.handle(postSet(body)), 400, "BAD_REQUEST", detail);
    expect(temp.store.count).toBe(0);
  });

  it("answers 400 for a NUL byte in the key", async () => {
    await expectError(app.handle(postSet({ key: "a\u0000b", value: "v" })), 400, "INVALID_ARGUMENT", /invalid argument|NUL/);
  });

  it("answers 413 for a key over the store's limit in bytes, though within it in characters", async () => {
    const key = "é".repeat(32); // 32 UTF-16 units, 64 bytes
    await expectError(app.handle(postSet({ key, value: "v" })), 413, "KEY_TOO_LONG", /63 bytes/);
  });

  it("answers 413 for a value over the store's limit in bytes, though within it in characters", async () => {
    const value = "€".repeat(86); // 86 UTF-16 units, 258 bytes
    await expectError(app.handle(postSet({ key: "k", value })), 413, "VALUE_TOO_LONG", /255 bytes/);
  });

  it("follows the limits of the store's own geometry", async () => {
    using small = new TempStore({ keyMax: 4, valueMax: 8 });
    const smallApp = createApp(small.store);
    await expectError(smallApp.handle(postSet({ key: "12345", value: "v" })), 413, "KEY_TOO_LONG", /4 bytes/);
    await expectError(smallApp.handle(postSet({ key: "k", value: "123456789" })), 413, "VALUE_TOO_LONG", /8 bytes/);
  });

  it("answers 413 for a body over 64 KiB that declares its length, without reading it", async () => {
    const body = JSON.stringify({ key: "k", value: "v".repeat(64 * 1024) });
    const request = postSet(body, { "content-type": "application/json", "content-length": String(body.length) });
    await expectError(app.handle(request), 413, "BODY_TOO_LARGE", /larger than 65536 bytes/);
    expect(request.bodyUsed).toBe(false);
  });

  it("answers 413 before routing for a body over the limit on any path, but lets a bodiless GET through", async () => {
    const headers = { "content-type": "application/json", "content-length": String(64 * 1024 + 1) };
    const put = new Request(`${BASE}/nowhere`, { method: "PUT", headers, body: "x".repeat(64 * 1024 + 1) });
    await expectError(app.handle(put), 413, "BODY_TOO_LARGE", /larger than 65536 bytes/);
    // Bun hands a GET no body, whatever its headers declare: there is nothing to refuse.
    const status = await app.handle(new Request(`${BASE}/status`, { headers }));
    expect(status.status).toBe(200);
  });

  it("answers 413 for a chunked body as soon as it passes the limit", async () => {
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        sent += 16 * 1024;
        controller.enqueue(new Uint8Array(16 * 1024).fill(0x20));
      },
    });
    const request = new Request(`${BASE}/set`, { method: "POST", body, headers: { "content-type": "application/json" } });
    await expectError(app.handle(request), 413, "BODY_TOO_LARGE", /larger than 65536 bytes/);
    expect(sent).toBeLessThan(128 * 1024);
  });

  it("parses a chunked body within the limit", async () => {
    const bytes = new TextEncoder().encode(JSON.stringify({ key: "k", value: "chunked" }));
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes.subarray(0, 5));
        controller.enqueue(bytes.subarray(5));
        controller.close();
      },
    });
    const request = new Request(`${BASE}/set`, { method: "POST", body, headers: { "content-type": "application/json" } });
    expect((await app.handle(request)).status).toBe(200);
    expect(temp.store.get("k")).toBe("chunked");
  });

  it("answers 400 for a chunked body that is not JSON", async () => {
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode("{nope"));
        controller.close();
      },
    });
    const request = new Request(`${BASE}/set`, { method: "POST", body, headers: { "content-type": "application/json" } });
    await expectError(app.handle(request), 400, "BAD_REQUEST", /not valid JSON/);
  });

  it("takes its body limit from the options", async () => {
    const limited = createApp(temp.store, { maxBodyBytes: 100 });
    const body = JSON.stringify({ key: "k", value: "v".repeat(100) });
    await expectError(
      limited.handle(postSet(body, { "content-type": "application/json", "content-length": String(body.length) })),
      413,
      "BODY_TOO_LARGE",
      /larger than 100 bytes/,
    );
  });

  it("answers 507 when the table is full, and still replaces existing keys", async () => {
    for (let i = 0; i < temp.store.maxEntries; i++) temp.store.set(`k${i}`, "v");
    await expectError(app.handle(postSet({ key: "one-more", value: "v" })), 507, "TABLE_FULL", /full/);
    expect((await app.handle(postSet({ key: "k0", value: "new" }))).status).toBe(200);
  });

  it("answers 503 with the reason when the store is not available", async () => {
    using u = unavailableApp();
    await expectError(u.app.handle(postSet({ key: "k", value: "v" })), 503, "STORE_UNAVAILABLE", /incompatible segment/);
  });
});

describe("DELETE /delete/{key}", () => {
  it("answers 200 and removes the entry", async () => {
    temp.store.set("a/b", "v");
    expect(await answer(app.handle(del(keyPath("delete", "a/b"))))).toEqual({
      status: 200,
      body: { success: true, message: "Key 'a/b' deleted successfully" },
    });
    expect(temp.store.get("a/b")).toBeUndefined();
  });

  it("answers 404 for a missing key, and for one longer than the store could hold", async () => {
    await expectError(app.handle(del("/delete/nokey")), 404, "NOT_FOUND", /^Key 'nokey' not found$/);
    await expectError(app.handle(del(`/delete/${"k".repeat(64)}`)), 404, "NOT_FOUND", /not found/);
  });

  it("answers 400 for a NUL byte in the key", async () => {
    await expectError(app.handle(del("/delete/%00")), 400, "INVALID_ARGUMENT", /invalid argument|NUL/);
  });

  it("answers 503 with the reason when the store is not available", async () => {
    using u = unavailableApp();
    await expectError(u.app.handle(del("/delete/k")), 503, "STORE_UNAVAILABLE", /incompatible segment/);
  });
});

describe("GET /status", () => {
  it("answers the seed's shape: version, counts and the entries in slot order, timestamps in seconds", async () => {
    const before = Math.floor(Date.now() / 1000);
    temp.store.set("key1", "value1");
    temp.store.set("key2", "value2");
    temp.store.set("key1", "value1b");
    const after = Math.ceil(Date.now() / 1000);
    const got = await answer(app.handle(get("/status")));
    const timestamp = expect.any(Number);
    expect(got).toEqual({
      status: 200,
      body: {
        version: 3,
        entry_count: 2,
        max_entries: 10,
        // Room for 10 + 1 entries at their largest: chunks of 8 + 63 + 255 bytes, rounded to 16.
        memory_bytes: 11 * 336,
        memory_used: 2 * 336,
        evict: "none",
        entries: [
          { key: "key1", value: "value1b", timestamp, revision: 3 },
          { key: "key2", value: "value2", timestamp, revision: 2 },
        ],
      },
    });
    for (const entry of (got.body as { entries: { timestamp: number }[] }).entries) {
      expect(Number.isInteger(entry.timestamp) && entry.timestamp >= before && entry.timestamp <= after).toBe(true);
    }
  });

  it("answers an empty store", async () => {
    expect(await answer(app.handle(get("/status")))).toEqual({
      status: 200,
      body: { version: 0, entry_count: 0, max_entries: 10, memory_bytes: 11 * 336, memory_used: 0, evict: "none", entries: [] },
    });
  });

  it("answers 503 with the reason when the store is not available", async () => {
    using u = unavailableApp();
    await expectError(u.app.handle(get("/status")), 503, "STORE_UNAVAILABLE", /incompatible segment/);
  });
});

describe("GET /health", () => {
  it("answers 200 while the store is open", async () => {
    temp.store.set("k", "v");
    expect(await answer(app.handle(get("/health")))).toEqual({
      status: 200,
      body: { status: "ok", name: temp.name, entry_count: 1, max_entries: 10, memory_bytes: 11 * 336, memory_used: 336, evict: "none", lock: { held_for_ms: 0 } },
    });
  });

  it("answers 503 with the reason when the store is not available", async () => {
    using u = unavailableApp();
    await expectError(u.app.handle(get("/health")), 503, "STORE_UNAVAILABLE", /not available: .*incompatible segment/);
  });

  it("answers 503 once the store is closed", async () => {
    temp.store.close();
    await expectError(app.handle(get("/health")), 503, "STORE_UNAVAILABLE", /not available/);
  });
});

describe("unknown routes", () => {
  it("answer 404 with a JSON error", async () => {
    await expectError(app.handle(get("/nope")), 404, "ROUTE_NOT_FOUND", /no such route/);
    await expectError(app.handle(get("/get")), 404, "ROUTE_NOT_FOUND", /no such route/);
  });

  it("redirect a path with a trailing slash to the path without it, keeping the query", async () => {
    const r = await app.handle(get("/status/?pretty=1"));
    expect({ status: r.status, location: r.headers.get("location") }).toEqual({ status: 308, location: "/status?pretty=1" });
  });

  it("are redirected by a request hook that Elysia runs without awaiting it", () => {
    // Elysia awaits a hook whose source looks asynchronous to it, and its handler then answers
    // every request with a promise, this early answer included (see createApp).
    expect(app.fetch(get("/status/"))).toBeInstanceOf(Response);
  });
});
