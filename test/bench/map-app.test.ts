/**
 * The HTTP benchmark's baselines (bench/map-app.ts). Its claim that the featured Map app prices our
 * HTTP features holds only if that app answers the benchmarked requests as our server does: same
 * status, body and ETag. The bare Map app answers with the seed's bodies and no ETag.
 */
import { afterEach, beforeEach, describe, expect, it } from "bun:test";
import { createFeaturedMapApp, createMapApp, featuresLeftOut } from "../../bench/map-app.ts";
import { createApp } from "../../src/http/app.ts";
import { get, postSet } from "../helpers/http.ts";
import { TempStore } from "../helpers/shm.ts";

interface Handler {
  handle(request: Request): Promise<Response>;
}

/** What an app answers to the benchmark's requests, in order, from empty: status, ETag, body. */
async function answers(app: Handler): Promise<unknown[]> {
  const requests = [
    postSet({ key: "key-1", value: "one" }),
    postSet({ key: "key-1", value: "uno", extra: true }),
    get("/get/key-1"),
    get("/get/absent"),
    get("/status"),
  ];
  const out = [];
  for (const request of requests) {
    const r = await app.handle(request);
    const body = (await r.json()) as { entries?: { timestamp: number }[] };
    for (const entry of body.entries ?? []) entry.timestamp = 0; // the second may differ
    out.push({ status: r.status, etag: r.headers.get("etag"), body });
  }
  return out;
}

describe("createFeaturedMapApp", () => {
  let temp: TempStore;

  beforeEach(() => {
    temp = new TempStore({ maxEntries: 10 });
  });

  afterEach(() => {
    temp[Symbol.dispose]();
  });

  it("answers the benchmarked requests exactly as our server does", async () => {
    const ours = await answers(createApp(temp.store));
    expect(await answers(createFeaturedMapApp())).toEqual(ours);
    expect(ours.map((a) => (a as { etag: unknown }).etag)).toEqual(['"1"', '"2"', '"2"', null, null]);
  });

  it("answers GET /get/{key} at once, not with a promise, as our server does", async () => {
    const apps = [createFeaturedMapApp(), createApp(temp.store)];
    for (const app of apps) await app.handle(postSet({ key: "key-1", value: "one" }));
    expect(apps.map((app) => app.fetch(get("/get/key-1")) instanceof Response)).toEqual([true, true]);
  });

  it("runs the body-size gate before routing, unless told to leave it out", async () => {
    const oversized = () => postSet("{}", { "content-type": "application/json", "content-length": "100000" });
    const refused = async (app: Handler) => (await (await app.handle(oversized())).text()).includes("larger than 65536 bytes");
    expect([await refused(createFeaturedMapApp()), await refused(createFeaturedMapApp(10, new Set(["gate"])))]).toEqual([true, false]);
  });

  it("leaves out the ETags of GET /get/{key} and POST /set when told to, and answers the same otherwise", async () => {
    const withEtag = await answers(createFeaturedMapApp());
    const without = await answers(createFeaturedMapApp(10, new Set(["etag"])));
    expect(without).toEqual(withEtag.map((a) => ({ ...(a as object), etag: null })));
    expect(withEtag.map((a) => (a as { etag: unknown }).etag)).toEqual(['"1"', '"2"', '"2"', null, null]);
  });
});

describe("createMapApp", () => {
  it("answers with the seed's bodies, without revisions or ETags", async () => {
    const [, , found, , status] = await answers(createMapApp());
    expect(found).toEqual({ status: 200, etag: null, body: { key: "key-1", value: "uno" } });
    expect(status).toEqual({
      status: 200,
      etag: null,
      body: { version: 2, entry_count: 1, max_entries: 10, entries: [{ key: "key-1", value: "uno", timestamp: 0 }] },
    });
  });
});

describe("featuresLeftOut", () => {
  it("reads BENCH_WITHOUT, and refuses a name that is no feature", () => {
    expect(featuresLeftOut({ BENCH_WITHOUT: "etag,parse" })).toEqual(new Set(["etag", "parse"]));
    expect(featuresLeftOut({})).toEqual(new Set());
    expect(() => featuresLeftOut({ BENCH_WITHOUT: "etag,speed" })).toThrow("BENCH_WITHOUT: no feature speed");
  });
});
