/**
 * Hostile HTTP input over a real socket (port 0): each gets a clear 4xx with a JSON detail (or, for a
 * client too slow to finish its request, a closed connection), never a 5xx, and the server goes on
 * serving everyone else.
 */
import { afterEach, beforeEach, describe, expect, it } from "bun:test";
import type { ServerConfig } from "../../src/config.ts";
import { startServer, type Logger, type RunningServer } from "../../src/server.ts";
import { KvStore } from "../../src/store.ts";
import { rawRequest, slowClient, upload } from "../helpers/raw-http.ts";
import { uniqueName, unlinkQuietly } from "../helpers/shm.ts";
import { waitFor } from "../helpers/wait.ts";

const JSON_TYPE = { "content-type": "application/json" };
const MB = 1024 * 1024;

const quiet: Logger = { info: () => {}, error: () => {} };
let name: string;
let server: RunningServer | undefined;

function start(overrides: Partial<ServerConfig> = {}): string {
  server = startServer({ host: "127.0.0.1", port: 0, name, create: {}, maxBodyBytes: 64 * 1024, logRequests: false, ...overrides }, quiet);
  using store = KvStore.open(name);
  store.set("ok", "fine");
  return server.url;
}

/** A normal request, answered as usual. */
async function expectServing(url: string): Promise<true> {
  const r = await fetch(`${url}get/ok`);
  expect({ status: r.status, body: await r.json() }).toEqual({ status: 200, body: { key: "ok", value: "fine" } });
  return true;
}

async function answer(response: Promise<Response>): Promise<{ status: number; body: unknown }> {
  const r = await response;
  return { status: r.status, body: await r.json() };
}

function postSet(url: string, body: string | Uint8Array, headers: Record<string, string> = JSON_TYPE): Promise<Response> {
  return fetch(`${url}set`, { method: "POST", headers, body });
}

beforeEach(() => {
  name = uniqueName();
});

afterEach(async () => {
  await server?.abort();
  server = undefined;
  unlinkQuietly(name);
});

describe("the server under hostile input", () => {
  it("answers a 10 KB key in the URL with a JSON 404 (413 to set it), and a URL over 16 KiB with Bun's own 431", async () => {
    const url = start();
    const key = "k".repeat(10 * 1024);
    expect([
      await answer(fetch(`${url}get/${key}`)),
      await answer(postSet(url, JSON.stringify({ key, value: "v" }))),
      (await fetch(`${url}get/${"k".repeat(20 * 1024)}`)).status,
    ]).toEqual([
      { status: 404, body: { detail: `Key '${key}' not found`, code: "NOT_FOUND" } },
      { status: 413, body: { detail: "key longer than 63 bytes", code: "KEY_TOO_LONG" } },
      431,
    ]);
    await expectServing(url);
  });

  it("answers a body declaring 100 MB with a JSON 413 at once, having read little of it, and closes the connection", async () => {
    const url = start();
    const rss = process.memoryUsage().rss;
    const head = `POST /set HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${100 * MB}\r\n\r\n`;
    const sending = upload(url, head, 100 * MB, false);
    await expectServing(url);
    const { answer: got, sent } = await sending;
    expect({ status: got.status, connection: got.headers.connection, body: JSON.parse(got.body) }).toEqual({
      status: 413,
      connection: "close",
      body: { detail: "the request body is larger than 65536 bytes", code: "BODY_TOO_LARGE" },
    });
    expect({ sentLittle: sent < 32 * MB, rssGrewLittle: process.memoryUsage().rss - rss < 64 * MB }).toEqual({
      sentLittle: true,
      rssGrewLittle: true,
    });
    await expectServing(url);
  });

  it("answers a chunked 100 MB body with a JSON 413 once it passes the limit, and closes the connection", async () => {
    const url = start();
    const head = "POST /set HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    const { answer: got, sent } = await upload(url, head, 100 * MB, true);
    expect({ status: got.status, connection: got.headers.connection, body: JSON.parse(got.body), sentLittle: sent < 32 * MB }).toEqual({
      status: 413,
      connection: "close",
      body: { detail: "the request body is larger than 65536 bytes", code: "BODY_TOO_LARGE" },
      sentLittle: true,
    });
    await expectServing(url);
  });

  it("refuses JSON nested 100 000 deep with a 400, quickly", async () => {
    const url = start({ maxBodyBytes: MB }); // a limit that lets the 200 KB body reach the parser
    const started = performance.now();
    const nested = `{"key": ${"[".repeat(100_000)}${"]".repeat(100_000)}, "value": "v"}`;
    expect(await answer(postSet(url, nested))).toEqual({
      status: 400,
      body: { detail: "the body nests arrays and objects more than 32 deep", code: "BAD_REQUEST" },
    });
    expect(performance.now() - started).toBeLessThan(2000);
    await expectServing(url);
  });

  it("answers 415 for a JSON body sent as another type, or with none", async () => {
    const url = start();
    const body = JSON.stringify({ key: "k", value: "v" });
    const detail = (got: string) => `the body must be JSON, sent with Content-Type: application/json (got ${got})`;
    expect([await answer(postSet(url, body, { "content-type": "text/xml" })), await answer(postSet(url, body, {}))]).toEqual([
      { status: 415, body: { detail: detail('"text/xml"'), code: "UNSUPPORTED_MEDIA_TYPE" } },
      { status: 415, body: { detail: detail("none"), code: "UNSUPPORTED_MEDIA_TYPE" } },
    ]);
    await expectServing(url);
  });

  it("answers 400 for a body that is not valid UTF-8", async () => {
    const url = start();
    const body = Buffer.concat([Buffer.from('{"key": "k'), Buffer.from([0xff]), Buffer.from('", "value": "v"}')]);
    expect(await answer(postSet(url, body))).toEqual({
      status: 400,
      body: { detail: "the body is not valid UTF-8", code: "BAD_REQUEST" },
    });
    await expectServing(url);
  });

  it("answers 400 for %FF in the URL; a raw invalid byte, which Bun turns into U+FFFD, is a key not found", async () => {
    const url = start();
    const raw = await rawRequest(url, "GET /get/a\xff HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    expect([await answer(fetch(`${url}get/%FF`)), { status: raw.status, body: JSON.parse(raw.body) }]).toEqual([
      { status: 400, body: { detail: "the key in the URL is not valid percent-encoded UTF-8", code: "BAD_REQUEST" } },
      { status: 404, body: { detail: "Key 'a\uFFFD' not found", code: "NOT_FOUND" } },
    ]);
    await expectServing(url);
  });

  it("takes the last of duplicate keys in a JSON body", async () => {
    const url = start();
    expect((await postSet(url, '{"key": "first", "key": "last", "value": "one", "value": "two"}')).status).toBe(200);
    expect([await answer(fetch(`${url}get/last`)), (await fetch(`${url}get/first`)).status]).toEqual([
      { status: 200, body: { key: "last", value: "two" } },
      404,
    ]);
  });

  it("closes a connection that sends its headers a byte at a time (in about 10 s), serving others meanwhile", async () => {
    const url = start();
    const started = performance.now();
    const slow = slowClient(url, "", `GET /get/ok HTTP/1.1\r\nHost: localhost\r\nX-Slow: ${"a".repeat(1000)}`, 50);
    await waitFor(async () => (await expectServing(url)) && slow.sent >= 40, { what: "the slow client to be under way" });
    const got = await slow.closed;
    expect({ answered: got.status, closedInTime: performance.now() - started < 20_000 }).toEqual({ answered: 0, closedInTime: true });
    await expectServing(url);
  });

  it("closes a connection that sends its body a byte at a time, after the idle timeout", async () => {
    const url = start({ idleTimeoutSeconds: 2 });
    const started = performance.now();
    const head = "POST /set HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
    const slow = slowClient(url, head, " ".repeat(1000), 50);
    await waitFor(async () => (await expectServing(url)) && slow.sent >= 20, { what: "the body to be under way" });
    const got = await slow.closed;
    expect({ answered: got.status, closedInTime: performance.now() - started < 10_000 }).toEqual({ answered: 0, closedInTime: true });
    await expectServing(url);
  });
});
