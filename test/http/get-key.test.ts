/**
 * The app's getKey: GET /get/{key} as the server hands it over from Bun's router, past Elysia. Each
 * request is answered by getKey of one app and by app.handle of a twin over the same store: the
 * answers, and what /metrics counts of them, must be the same.
 */
import { describe, expect, it } from "bun:test";
import { createApp, type App, type AppOptions } from "../../src/http/app.ts";
import { KvError, RC } from "../../src/errors.ts";
import { eachWithTempApp } from "../helpers/app.ts";
import { BASE } from "../helpers/http.ts";
import type { TempStore } from "../helpers/shm.ts";

let temp: TempStore;

eachWithTempApp((made) => ({ temp } = made));

const TOKEN = "s3cret-token";
const SHOWN_HEADERS = ["content-type", "etag", "x-expires-at", "www-authenticate", "retry-after"];

/** What a client sees of an answer: its status, the headers getKey could set, and its body. */
async function seen(response: Response | Promise<Response>) {
  const r = await response;
  return { status: r.status, headers: SHOWN_HEADERS.map((h) => [h, r.headers.get(h)]), body: await r.text() };
}

/** The request counts of GET /metrics, which getKey must keep as the app keeps them. */
async function counts(app: App): Promise<string[]> {
  const text = await (await app.handle(new Request(`${BASE}/metrics`))).text();
  return text.split("\n").filter((line) => line.startsWith("shmkv_http_requests_total"));
}

/** Two apps over the test's store with `options`: one answering by getKey, its twin by handle. */
function twins(options: AppOptions = {}) {
  const direct = createApp(temp.store, options);
  const twin = createApp(temp.store, options);
  return {
    direct,
    twin,
    [Symbol.dispose]() {
      direct.close();
      twin.close();
    },
  };
}

/** GET `path` on `host`, with `headers`. */
function request(path: string, headers: Record<string, string> = {}, host = "localhost"): Request {
  return new Request(`http://${host}${path}`, { headers });
}

describe("getKey", () => {
  it("answers every GET /get/{key} as the app does, headers and counts included", async () => {
    const revision = temp.store.set("k", "v");
    temp.store.set("brief", "soon gone", { ttl: 60_000 });
    temp.store.set("bin", new Uint8Array([0xff, 0xfe]));
    temp.store.set("a/b", "slashed");
    using apps = twins();
    const requests = [
      () => request("/get/k"),
      () => request("/get/k", { "if-none-match": `"${revision}"` }),
      () => request("/get/k", { "if-none-match": `"99", W/"${revision}"` }),
      () => request("/get/k", { "if-none-match": '"99"' }),
      () => request("/get/brief"),
      () => request("/get/brief", { "if-none-match": "*" }),
      () => request("/get/bin"),
      () => request("/get/missing"),
      () => request(`/get/${"x".repeat(100)}`),
      () => request("/get/k?raw"),
      () => request("/get/bin?raw"),
      () => request("/get/a%2Fb"),
      () => request("/get/a%ZZ"),
      () => request("/get/k", {}, "evil.example"),
    ];
    const direct = [];
    const twin = [];
    for (const make of requests) {
      direct.push(await seen(apps.direct.getKey(make())));
      twin.push(await seen(apps.twin.handle(make())));
    }
    expect(direct).toEqual(twin);
    expect(direct.map((a) => a.status)).toEqual([200, 304, 304, 200, 200, 304, 406, 404, 404, 200, 200, 200, 400, 421]);
    expect(await counts(apps.direct)).toEqual(await counts(apps.twin));
  });

  it("asks for the token as the app does, and answers with it", async () => {
    temp.store.set("k", "v");
    using apps = twins({ token: TOKEN });
    const requests = [() => request("/get/k"), () => request("/get/k", { authorization: "Bearer wrong" }), () => request("/get/k", { authorization: `Bearer ${TOKEN}` })];
    const answers = [];
    for (const make of requests) answers.push([await seen(apps.direct.getKey(make())), await seen(apps.twin.handle(make()))]);
    expect(answers.map(([direct]) => direct!.status)).toEqual([401, 401, 200]);
    expect(answers.map(([direct]) => direct)).toEqual(answers.map(([, twin]) => twin));
    expect(await counts(apps.direct)).toEqual(await counts(apps.twin));
  });

  it("answers once a busy store is free, or 503 STORE_BUSY past the wait, as the app does", async () => {
    temp.store.set("k", "v");
    const store = temp.store as unknown as { getEntry: (key: string) => unknown };
    const real = store.getEntry.bind(temp.store);
    /** The store's getEntry throws STORE_BUSY its next `times` calls. */
    const busyFor = (times: number) => {
      let left = times;
      store.getEntry = (key: string) => {
        if (left-- > 0) throw new KvError("STORE_BUSY", "the write lock is held", RC.STORE_BUSY);
        return real(key);
      };
    };
    using apps = twins({ busyWaitMs: 50 });
    const answers = [];
    for (const times of [3, 1_000_000]) {
      busyFor(times);
      const direct = await seen(apps.direct.getKey(request("/get/k")));
      busyFor(times);
      answers.push([direct, await seen(apps.twin.handle(request("/get/k")))]);
    }
    expect(answers.map(([direct]) => direct!.status)).toEqual([200, 503]);
    expect(answers.map(([direct]) => direct)).toEqual(answers.map(([, twin]) => twin));
    expect(await counts(apps.direct)).toEqual(await counts(apps.twin));
  });
});
