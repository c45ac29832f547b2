/**
 * The Host a request names: routed whatever its length, checked against DNS rebinding (without a
 * token only loopback, HOST and KV_ALLOWED_HOSTS), 400 when malformed; and redirects that stay on
 * this server. Through app.handle (the URL's host is the Host, as Bun builds it) and over a real
 * socket, where the Host header is sent as a browser or an attacker would send it.
 */
import { afterEach, beforeEach, describe, expect, it } from "bun:test";
import { createApp, type App, type AppOptions } from "../../src/http/app.ts";
import { startServer, type Logger, type RunningServer } from "../../src/server.ts";
import type { ServerConfig } from "../../src/config.ts";
import { answer, expectError } from "../helpers/http.ts";
import { rawRequest, type RawAnswer } from "../helpers/raw-http.ts";
import { TempStore } from "../helpers/shm.ts";

const TOKEN = "s3cret-Token_1";
const REBINDING = /does not answer for the host "evil\.example:8000" .*DNS rebinding.*KV_ALLOWED_HOSTS.*--allowed-hosts/;

let temp: TempStore;

beforeEach(() => {
  temp = new TempStore();
  temp.store.set("k", "v");
});

afterEach(() => {
  temp[Symbol.dispose]();
});

function appWith(options: AppOptions = {}): App {
  return createApp(temp.store, options);
}

/** A request to `origin` (scheme and host[:port]), as a page of that origin would send it. */
function fromPage(origin: string, path: string, init: RequestInit = {}): Request {
  return new Request(`${origin}${path}`, { ...init, headers: { origin, ...init.headers } });
}

function setFrom(origin: string): Request {
  return fromPage(origin, "/set", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ key: "k", value: "rebound" }),
  });
}

describe("routing", () => {
  it.each(["http://kv", "http://x", "http://kv:8000", "http://[::1]"])("serves every route for the host of %s", async (origin) => {
    const app = appWith({ hosts: { allowedHosts: ["kv", "x"] } });
    const got = [
      await answer(app.handle(new Request(`${origin}/health`))),
      await answer(app.handle(new Request(`${origin}/get/k`))),
      (await app.handle(new Request(`${origin}/no-such-route`))).status,
    ];
    expect(got).toEqual([
      { status: 200, body: { status: "ok", name: temp.name, entry_count: 1, max_entries: 10, memory_bytes: 3696, memory_used: 336, evict: "none", lock: { held_for_ms: 0 } } },
      { status: 200, body: { key: "k", value: "v" } },
      404,
    ]);
  });
});

describe("without a token", () => {
  it("refuses a rebinding-shaped request (Host and Origin of another name) with 421, and writes nothing", async () => {
    const app = appWith();
    await expectError(app.handle(fromPage("http://evil.example:8000", "/get/k")), 421, "MISDIRECTED_REQUEST", REBINDING);
    await expectError(app.handle(setFrom("http://evil.example:8000")), 421, "MISDIRECTED_REQUEST", REBINDING);
    await expectError(app.handle(fromPage("http://evil.example:8000", "/delete/k", { method: "DELETE" })), 421, "MISDIRECTED_REQUEST", REBINDING);
    expect(temp.store.get("k")).toBe("v");
  });

  it.each(["http://localhost", "http://localhost:8000", "http://LOCALHOST.:8000", "http://127.0.0.1:8000", "http://127.4.5.6", "http://[::1]:8000"])(
    "serves the loopback host of %s",
    async (origin) => {
      expect((await appWith().handle(setFrom(origin))).status).toBe(200);
      expect(temp.store.get("k")).toBe("rebound");
    },
  );

  it("serves its own HOST and the names of KV_ALLOWED_HOSTS, and no other", async () => {
    const app = appWith({ hosts: { listenHost: "192.0.2.7", allowedHosts: ["kv", "Shmkv.Example."] } });
    const statuses = [];
    for (const origin of ["http://192.0.2.7:8000", "http://kv", "http://shmkv.example:8000", "http://192.0.2.8:8000", "http://kv.evil.example"]) {
      statuses.push((await app.handle(fromPage(origin, "/get/k"))).status);
    }
    expect(statuses).toEqual([200, 200, 200, 421, 421]);
  });

  it("serves any host with KV_ALLOWED_HOSTS=*", async () => {
    expect((await appWith({ hosts: { allowedHosts: ["*"] } }).handle(setFrom("http://evil.example:8000"))).status).toBe(200);
  });
});

describe("a server that other machines may reach", () => {
  it("says at start-up which Hosts it answers without a token, and nothing when it need not", async () => {
    const lines: string[] = [];
    const log: Logger = { info: (line) => void lines.push(line), error: (line) => void lines.push(line) };
    const base = { port: 0, name: temp.name, create: {}, maxBodyBytes: 1024, logRequests: false };
    for (const config of [
      { ...base, host: "0.0.0.0", allowedHosts: ["kv"] },
      { ...base, host: "127.0.0.1" },
      { ...base, host: "0.0.0.0", token: TOKEN },
      { ...base, host: "0.0.0.0", allowedHosts: ["*"] },
    ]) {
      await startServer(config, log).abort();
    }
    expect(lines.filter((line) => line.includes("Host"))).toEqual([
      "answering requests whose Host is localhost, 127.0.0.0/8, [::1], 0.0.0.0, kv only (421 for others): add the names clients use to KV_ALLOWED_HOSTS (--allowed-hosts)",
    ]);
  });
});

describe("with a token", () => {
  it("serves any host, for the token guards every route", async () => {
    const request = setFrom("http://evil.example:8000");
    request.headers.set("authorization", `Bearer ${TOKEN}`);
    expect((await appWith({ token: TOKEN }).handle(request)).status).toBe(200);
  });

  it("keeps the public paths public and the others guarded, for a short Host too", async () => {
    const app = appWith({ token: TOKEN });
    const statuses = [];
    for (const origin of ["http://kv", "http://x:8000", "http://localhost"]) {
      for (const path of ["/health", "/", "/status", "/get/k"]) statuses.push((await app.handle(new Request(`${origin}${path}`))).status);
    }
    expect(statuses).toEqual([200, 200, 401, 401, 200, 200, 401, 401, 200, 200, 401, 401]);
  });

  it("checks the names when KV_ALLOWED_HOSTS is set", async () => {
    const app = appWith({ token: TOKEN, hosts: { allowedHosts: ["kv"] } });
    const auth = { authorization: `Bearer ${TOKEN}` };
    await expectError(app.handle(fromPage("http://evil.example:8000", "/get/k", { headers: auth })), 421, "MISDIRECTED_REQUEST", REBINDING);
    expect((await app.handle(fromPage("http://kv", "/get/k", { headers: auth }))).status).toBe(200);
  });
});

describe("a malformed Host", () => {
  it("gets 400 before any handler runs (the server names such a request's host `invalid`), and nothing is written", async () => {
    for (const app of [appWith(), appWith({ token: TOKEN })]) {
      await expectError(app.handle(setFrom("http://invalid")), 400, "BAD_REQUEST", /Host header .*not a valid host\[:port\]/);
    }
    expect(temp.store.get("k")).toBe("v");
  });
});

describe("a trailing-slash redirect", () => {
  it.each([
    ["//evil.com/", "/evil.com"],
    ["/\\evil.com/", "/evil.com"],
    ["///evil.com//?q=1", "/evil.com?q=1"],
    ["/status/?pretty=1", "/status?pretty=1"],
    ["/swagger/", "/swagger"],
  ])("stays on this server: %s goes to %s", async (path, location) => {
    for (const app of [appWith(), appWith({ token: TOKEN })]) {
      const r = await app.handle(new Request(`http://localhost${path}`));
      expect({ status: r.status, location: r.headers.get("location") }).toEqual({ status: 308, location });
    }
  });
});

describe("over a socket", () => {
  let server: RunningServer;
  let lines: string[];
  const log: Logger = { info: (line) => void lines.push(line), error: (line) => void lines.push(line) };

  function start(overrides: Partial<ServerConfig> = {}): void {
    const config = { host: "127.0.0.1", port: 0, name: temp.name, create: {}, maxBodyBytes: 1024, logRequests: true };
    server = startServer({ ...config, ...overrides }, log);
  }

  beforeEach(() => {
    lines = [];
    start();
  });

  afterEach(() => server.abort());

  /** `method path` with these header lines (a Host among them, or none), and a JSON body when given. */
  function send(method: string, path: string, headers: string[], body?: unknown, version = "HTTP/1.1"): Promise<RawAnswer> {
    const text = body === undefined ? "" : JSON.stringify(body);
    const length = body === undefined ? [] : ["Content-Type: application/json", `Content-Length: ${Buffer.byteLength(text)}`];
    const head = [`${method} ${path} ${version}`, ...headers, ...length, "Connection: close"].join("\r\n");
    return rawRequest(server.url, `${head}\r\n\r\n${text}`);
  }

  const shape = (a: RawAnswer) => ({ status: a.status, body: a.body === "" ? "" : JSON.parse(a.body) });

  it("routes a one- or two-letter Host, and a request with none (HTTP/1.0)", async () => {
    await server.abort();
    start({ allowedHosts: ["kv", "x"] });
    const health = { status: 200, body: { status: "ok", name: temp.name, entry_count: 1, max_entries: 10, memory_bytes: 3696, memory_used: 336, evict: "none", lock: { held_for_ms: 0 } } };
    expect([
      shape(await send("GET", "/health", ["Host: kv"])),
      shape(await send("GET", "/health", ["Host: x"])),
      shape(await send("GET", "/get/k", ["Host: kv:80"])),
      shape(await send("GET", "/health", [], undefined, "HTTP/1.0")),
      shape(await send("GET", "/get/k", [], undefined, "HTTP/1.0")),
      shape(await send("POST", "/set", [], { key: "old", value: "client" }, "HTTP/1.0")),
    ]).toEqual([
      health,
      health,
      { status: 200, body: { key: "k", value: "v" } },
      health,
      { status: 200, body: { key: "k", value: "v" } },
      { status: 200, body: { success: true, message: "Key 'old' set successfully" } },
    ]);
  });

  it("answers 400 with JSON to an empty or malformed Host, writing nothing", async () => {
    const bad = { status: 400, body: { detail: "the Host header is missing its value or is not a valid host[:port]", code: "BAD_REQUEST" } };
    const write = { key: "k", value: "written" };
    expect([
      shape(await send("GET", "/health", ["Host: "])),
      shape(await send("POST", "/set", [`Host: 127.0.0.1:8000/health?`], write)),
      shape(await send("POST", "/set", ["Host: a b"], write)),
      shape(await send("POST", "/set", ["Host: localhost:99999"], write)),
    ]).toEqual([bad, bad, bad, bad]);
    expect(temp.store.get("k")).toBe("v");
  });

  it("refuses a rebinding-shaped request with 421 and names the setting, writing nothing", async () => {
    const port = new URL(server.url).port;
    const page = [`Host: evil.example:${port}`, `Origin: http://evil.example:${port}`];
    const answers = [
      shape(await send("GET", "/get/k", page)),
      shape(await send("POST", "/set", page, { key: "k", value: "rebound" })),
      shape(await send("GET", "/status", page)),
    ];
    const misdirected = {
      status: 421,
      body: {
        detail:
          `this server does not answer for the host "evil.example:${port}" (a web page can make a browser send another ` +
          "site's requests here: DNS rebinding). It answers for localhost, 127.0.0.0/8, [::1], its HOST and the names in " +
          "KV_ALLOWED_HOSTS: add the names it is reached by there (--allowed-hosts, comma-separated; * allows any)",
        code: "MISDIRECTED_REQUEST",
      },
    };
    expect(answers).toEqual([misdirected, misdirected, misdirected]);
    expect(temp.store.get("k")).toBe("v");
    // The same request to the server's own address is served.
    expect(shape(await send("GET", "/get/k", [`Host: 127.0.0.1:${port}`, `Origin: http://127.0.0.1:${port}`]))).toEqual({
      status: 200,
      body: { key: "k", value: "v" },
    });
  });

  it("redirects //evil.com/ on this server", async () => {
    const r = await send("GET", "//evil.com/", ["Host: localhost"]);
    expect({ status: r.status, location: r.headers.location }).toEqual({ status: 308, location: "/evil.com" });
  });

  it("logs a key's control characters percent-encoded, never raw, whatever the Host", async () => {
    await send("GET", "/get/a%0Ab%1B%5B2J", ["Host: localhost"]);
    await send("GET", "/get/c\x7fd?q=secret", ["Host: localhost"]);
    await send("GET", "/get/c\x7fd?q=secret", ["Host: localhost:99999"]);
    expect(lines.filter((line) => line.startsWith("GET")).map((line) => line.replace(/ \d+\.\dms$/, ""))).toEqual([
      "GET /get/a%0Ab%1B%5B2J 404",
      "GET /get/c%7Fd 404",
      "GET /get/c%7Fd 400",
    ]);
  });
});
