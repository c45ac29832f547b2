/** Access with a token: the public paths, 401 for everything else without it, and the start-up warning. */
import { afterEach, beforeEach, describe, expect, it } from "bun:test";
import { createApp, type App } from "../../src/http/app.ts";
import { isLoopback, PUBLIC_PATHS } from "../../src/http/auth.ts";
import { startServer, type Logger } from "../../src/server.ts";
import { BASE, deleteKeys, expectError, postIncr, postSet } from "../helpers/http.ts";
import { TempStore, uniqueName, unlinkQuietly } from "../helpers/shm.ts";

const TOKEN = "s3cret-Token_1";

let temp: TempStore;
let app: App;

function request(path: string, authorization?: string, method = "GET"): Request {
  return new Request(`${BASE}${path}`, { method, headers: authorization === undefined ? {} : { authorization } });
}

async function expectUnauthorized(response: Promise<Response>, detail: RegExp) {
  const r = await response;
  expect(r.headers.get("www-authenticate")).toBe("Bearer");
  await expectError(r, 401, "UNAUTHORIZED", detail);
}

beforeEach(() => {
  temp = new TempStore();
  temp.store.set("k", "v");
  app = createApp(temp.store, { token: TOKEN });
});

afterEach(() => {
  temp[Symbol.dispose]();
});

describe("an app with a token", () => {
  it("lets anyone ask for /, /health, the documentation and the live page", async () => {
    const statuses = await Promise.all([...PUBLIC_PATHS].map(async (path) => [path, (await app.handle(request(path))).status]));
    expect(Object.fromEntries(statuses)).toEqual({
      "/": 200,
      "/health": 200,
      "/swagger": 200,
      "/swagger/json": 200,
      "/swagger/scalar.js": 200,
      "/docs": 302,
      "/redoc": 302,
      "/ui": 200,
    });
  });

  it.each(["/status", "/get/k", "/keys", "/metrics", "/watch", "/no-such-route", "/health/x", "//health", "/Health", "/%68ealth"])(
    "answers 401 with a JSON detail and WWW-Authenticate to GET %s without the token",
    async (path) => {
      await expectUnauthorized(app.handle(request(path)), /needs the API token: send Authorization: Bearer <token>/);
    },
  );

  it("answers 401 to a write without the token, and writes nothing", async () => {
    await expectUnauthorized(app.handle(postSet({ key: "k", value: "changed" })), /needs the API token/);
    await expectUnauthorized(app.handle(request("/delete/k", undefined, "DELETE")), /needs the API token/);
    await expectUnauthorized(app.handle(postIncr({ key: "n" })), /needs the API token/);
    await expectUnauthorized(app.handle(deleteKeys("prefix=k")), /needs the API token/);
    await expectUnauthorized(app.handle(deleteKeys("all=1")), /needs the API token/);
    expect([temp.store.get("k"), temp.store.get("n")]).toEqual(["v", undefined]);
  });

  it.each([
    ["a wrong token", `Bearer ${TOKEN.slice(0, -1)}X`, /the API token is not valid/],
    ["a longer token", `Bearer ${TOKEN}${TOKEN}`, /the API token is not valid/],
    ["an empty token", "Bearer ", /needs the API token/],
    ["another scheme", `Basic ${btoa(`user:${TOKEN}`)}`, /needs the API token/],
    ["the token without a scheme", TOKEN, /needs the API token/],
  ])("answers 401 to %s", async (_, authorization, detail) => {
    await expectUnauthorized(app.handle(request("/status", authorization)), detail);
  });

  it("serves a request with the token, whatever the case of the scheme", async () => {
    const got = await Promise.all([`Bearer ${TOKEN}`, `bearer ${TOKEN}`, `BEARER  ${TOKEN}`].map((a) => app.handle(request("/get/k", a))));
    expect(await Promise.all(got.map((r) => r.json()))).toEqual(Array(3).fill({ key: "k", value: "v" }));
  });
});

describe("an app without a token", () => {
  it("serves every route to anyone", async () => {
    expect((await createApp(temp.store).handle(request("/status"))).status).toBe(200);
  });
});

describe("isLoopback", () => {
  it.each([
    ["127.0.0.1", true],
    ["127.1.2.3", true],
    ["localhost", true],
    ["::1", true],
    ["[::1]", true],
    ["::ffff:127.0.0.1", true],
    ["0.0.0.0", false],
    ["::", false],
    ["192.168.1.10", false],
    ["myhost", false],
    ["127.0.0.1.example.com", false],
  ])("says %s is %p", (host, loopback) => {
    expect(isLoopback(host)).toBe(loopback);
  });
});

describe("startServer's exposure warning", () => {
  let name: string;
  beforeEach(() => {
    name = uniqueName();
  });
  afterEach(() => unlinkQuietly(name));

  async function errorsLogged(host: string, token?: string): Promise<string[]> {
    const errors: string[] = [];
    const log: Logger = { info: () => {}, error: (line) => void errors.push(line) };
    const server = startServer({ host, port: 0, name, create: {}, maxBodyBytes: 1024, logRequests: false, token }, log);
    await server.abort();
    return errors;
  }

  it("warns when it listens beyond loopback without a token", async () => {
    expect(await errorsLogged("0.0.0.0")).toEqual([
      "warning: listening on 0.0.0.0, which other machines may reach, with no KV_API_TOKEN: anyone who can connect " +
        "can read and write the store (set KV_API_TOKEN, or listen on 127.0.0.1)",
    ]);
  });

  it("says nothing with a token, or on loopback", async () => {
    expect([await errorsLogged("0.0.0.0", TOKEN), await errorsLogged("127.0.0.1")]).toEqual([[], []]);
  });
});
