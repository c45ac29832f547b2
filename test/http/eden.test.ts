/**
 * The typed client: @elysiajs/eden against a real server on a free port. `make typecheck` compiles
 * this file, so the types it relies on (and the misuse it expects to be refused) are checked too.
 */
import { edenFetch, treaty } from "@elysiajs/eden";
import { afterEach, beforeEach, describe, expect, it } from "bun:test";
import { createApp, type App } from "../../src/http/app.ts";
import type { KvApi } from "../../src/http/client.ts";
import { TempStore } from "../helpers/shm.ts";

let temp: TempStore;
let server: Bun.Server<undefined>;
let url: string;

beforeEach(() => {
  temp = new TempStore();
  const app = createApp(temp.store);
  server = Bun.serve({ hostname: "127.0.0.1", port: 0, development: false, fetch: (request) => app.handle(request) });
  url = server.url.href.replace(/\/$/, "");
});

afterEach(async () => {
  await server.stop(true);
  temp[Symbol.dispose]();
});

describe("Eden Fetch over KvApi", () => {
  it("sets, gets, lists and deletes with typed requests and answers", async () => {
    const kv = edenFetch<KvApi>(url);
    const set = await kv("/set", { method: "POST", body: { key: "a/b", value: "héllo" }, headers: {} });
    // Eden Fetch puts params into the path as they are: percent-encode the key.
    const got = await kv("/get/:key", { params: { key: encodeURIComponent("a/b") } });
    const value: string | undefined = got.data?.value;
    const status = await kv("/status", { query: {} });
    const revision: number | undefined = status.data?.entries[0]?.revision;
    const deleted = await kv("/delete/:key", { method: "DELETE", params: { key: encodeURIComponent("a/b") }, headers: {} });
    const success: true | undefined = deleted.data?.success;
    const missing = await kv("/get/:key", { params: { key: encodeURIComponent("a/b") } });
    expect({ set: set.data, value, revision, success, missing: [missing.data, missing.status] }).toEqual({
      set: { success: true, message: "Key 'a/b' set successfully" },
      value: "héllo",
      revision: 1,
      success: true,
      missing: [null, 404],
    });
  });

  it("sends the compare-and-set headers, and gives the 412 as a typed error", async () => {
    const kv = edenFetch<KvApi>(url);
    temp.store.set("k", "one");
    const failed = await kv("/set", { method: "POST", body: { key: "k", value: "two" }, headers: { "if-match": '"7"' } });
    expect({ status: failed.status, value: failed.error?.value }).toEqual({
      status: 412,
      value: { detail: expect.stringContaining("revision 1"), code: "PRECONDITION_FAILED", revision: 1 },
    });
  });
});

describe("Eden Treaty over App", () => {
  it("sets, reads the status and pages through the keys", async () => {
    const api = treaty<App>(url);
    const set = await api.set.post({ key: "k", value: "v" });
    const status = await api.status.get();
    const keys = await api.keys.get({ query: { prefix: "k", limit: 10 } });
    expect({ set: set.data, entries: status.data?.entries.map((e) => e.key), keys: keys.data }).toEqual({
      set: { success: true, message: "Key 'k' set successfully" },
      entries: ["k"],
      keys: { keys: ["k"], next_cursor: null },
    });
  });

  it("refuses a body without its value at compile time", async () => {
    const api = treaty<App>(url);
    // @ts-expect-error: the value is required
    const refused = await api.set.post({ key: "k" });
    expect(refused.status).toBe(400);
  });
});
