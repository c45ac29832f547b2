/** Revisions over HTTP: the ETag of GET /get and POST /set, If-Match and If-None-Match, the 412. */
import { describe, expect, it } from "bun:test";
import { type App } from "../../src/http/app.ts";
import { KvStore } from "../../src/store.ts";
import { eachWithTempApp } from "../helpers/app.ts";
import { answer, BASE, expectError, get, postSet } from "../helpers/http.ts";
import type { TempStore } from "../helpers/shm.ts";

let temp: TempStore;
let app: App;

eachWithTempApp((made) => ({ temp, app } = made));

const JSON_TYPE = { "content-type": "application/json" };

function setIf(key: string, value: string, condition: Record<string, string>): Request {
  return postSet({ key, value }, { ...JSON_TYPE, ...condition });
}

function deleteIf(key: string, condition: Record<string, string>): Request {
  return new Request(`${BASE}/delete/${encodeURIComponent(key)}`, { method: "DELETE", headers: condition });
}

/** A 412 with the current revision, and a detail matching. */
async function expectFailed(response: Response | Promise<Response>, revision: number, detail: RegExp) {
  expect(await answer(response)).toEqual({
    status: 412,
    body: { detail: expect.stringMatching(detail), code: "PRECONDITION_FAILED", revision },
  });
}

/** Status, ETag and JSON body. */
async function tagged(response: Response | Promise<Response>) {
  const r = await response;
  return { status: r.status, etag: r.headers.get("etag"), body: await r.json() };
}

describe("GET /get/{key}", () => {
  it("gives the entry's revision as its ETag, with the seed's body", async () => {
    temp.store.set("other", "x");
    temp.store.set("k", "v");
    expect(await tagged(app.handle(get("/get/k")))).toEqual({ status: 200, etag: '"2"', body: { key: "k", value: "v" } });
  });

  it("answers a write by another handle made between reads, however often the key was read", async () => {
    using other = KvStore.open(temp.name); // its own mapping, as another process's
    other.set("k", "one");
    const before = [];
    for (let i = 0; i < 3; i++) before.push(await tagged(app.handle(get("/get/k"))));
    other.set("k", "two");
    const afterSet = await tagged(app.handle(get("/get/k")));
    other.delete("k");
    const afterDelete = (await app.handle(get("/get/k"))).status;
    expect({ before, afterSet, afterDelete }).toEqual({
      before: Array(3).fill({ status: 200, etag: '"1"', body: { key: "k", value: "one" } }),
      afterSet: { status: 200, etag: '"2"', body: { key: "k", value: "two" } },
      afterDelete: 404,
    });
  });

  it("answers a GET after a HEAD of the same kept answer as before it", async () => {
    temp.store.set("k", "v");
    const read = async (method: string) => {
      const r = await app.handle(new Request(`${BASE}/get/k`, { method }));
      return { status: r.status, headers: Object.fromEntries(r.headers), body: await r.text() };
    };
    const before = [await read("GET"), await read("GET")];
    const heads = [await read("HEAD"), await read("HEAD")];
    const after = [await read("GET"), await read("GET")];
    const headers = { "content-type": "application/json;charset=utf-8", etag: '"1"' };
    const got = { status: 200, headers, body: '{"key":"k","value":"v"}' };
    expect({ before, heads, after }).toEqual({
      before: [got, got],
      heads: Array(2).fill({ status: 200, headers: { ...headers, "content-length": "23" }, body: "" }),
      after: [got, got],
    });
  });
});

describe("POST /set", () => {
  it("gives a set without a condition its new revision as its ETag too, with the seed's body", async () => {
    temp.store.set("other", "x");
    expect(await tagged(app.handle(postSet({ key: "k", value: "v" })))).toEqual({
      status: 200,
      etag: '"2"',
      body: { success: true, message: "Key 'k' set successfully" },
    });
  });

  it("gives a conditional set's new revision as its ETag, with the seed's body", async () => {
    temp.store.set("other", "x");
    expect(await tagged(app.handle(setIf("k", "v", { "if-none-match": "*" })))).toEqual({
      status: 200,
      etag: '"2"',
      body: { success: true, message: "Key 'k' set successfully" },
    });
  });

  it("writes with If-Match when the entry is still at that revision", async () => {
    const revision = temp.store.set("k", "one");
    const r = await tagged(app.handle(setIf("k", "two", { "if-match": `"${revision}"` })));
    expect({ status: r.status, etag: r.etag, value: temp.store.get("k") }).toEqual({ status: 200, etag: '"2"', value: "two" });
  });

  it("answers 412 with the current revision when the entry moved on, and writes nothing", async () => {
    temp.store.set("k", "one");
    temp.store.set("k", "two");
    expect(await answer(app.handle(setIf("k", "stale", { "if-match": '"1"' })))).toEqual({
      status: 412,
      body: { detail: "Key 'k' is at revision 2: the condition does not hold", code: "PRECONDITION_FAILED", revision: 2 },
    });
    expect({ value: temp.store.get("k"), version: temp.store.version }).toEqual({ value: "two", version: 2 });
  });

  it("answers 412 with revision 0 to If-Match for a missing entry", async () => {
    expect(await answer(app.handle(setIf("k", "v", { "if-match": '"4"' })))).toEqual({
      status: 412,
      body: { detail: "Key 'k' does not exist: the condition does not hold", code: "PRECONDITION_FAILED", revision: 0 },
    });
    expect(temp.store.count).toBe(0);
  });

  it("creates with If-None-Match: * only when the key is missing", async () => {
    expect((await app.handle(setIf("k", "first", { "if-none-match": "*" }))).status).toBe(200);
    await expectFailed(app.handle(setIf("k", "second", { "if-none-match": "*" })), 1, /is at revision 1/);
    expect(temp.store.get("k")).toBe("first");
  });

  it("replaces with If-Match: * only when the key exists", async () => {
    await expectFailed(app.handle(setIf("k", "v", { "if-match": "*" })), 0, /does not exist/);
    temp.store.set("k", "one");
    expect((await app.handle(setIf("k", "two", { "if-match": "*" }))).status).toBe(200);
    expect(temp.store.get("k")).toBe("two");
  });

  it("lets one of two writers holding the same revision win", async () => {
    const revision = temp.store.set("counter", "0");
    const statuses = [];
    for (const value of ["a", "b"]) {
      statuses.push((await app.handle(setIf("counter", value, { "if-match": `"${revision}"` }))).status);
    }
    expect({ statuses, value: temp.store.get("counter") }).toEqual({ statuses: [200, 412], value: "a" });
  });

  it.each([
    ["a weak tag", { "if-match": 'W/"1"' }, /If-Match must be/],
    ["a list of tags", { "if-match": '"1", "2"' }, /If-Match must be/],
    ["revision 0", { "if-match": '"0"' }, /If-Match must be/],
    ["a tag in If-None-Match", { "if-none-match": '"1"' }, /If-None-Match on a write must be \*/],
    ["both headers", { "if-match": '"1"', "if-none-match": "*" }, /not both/],
  ])("answers 400 for %s", async (_, condition, detail) => {
    temp.store.set("k", "v");
    await expectError(app.handle(setIf("k", "new", condition)), 400, "BAD_REQUEST", detail);
    expect(temp.store.get("k")).toBe("v");
  });
});

describe("DELETE /delete/{key}", () => {
  it("deletes with If-Match when the entry is still at that revision", async () => {
    const revision = temp.store.set("k", "v");
    expect(await answer(app.handle(deleteIf("k", { "if-match": `"${revision}"` })))).toEqual({
      status: 200,
      body: { success: true, message: "Key 'k' deleted successfully" },
    });
    expect(temp.store.count).toBe(0);
  });

  it("answers 412 with the current revision when the entry moved on, and keeps it", async () => {
    temp.store.set("k", "one");
    temp.store.set("k", "two");
    expect(await answer(app.handle(deleteIf("k", { "if-match": '"1"' })))).toEqual({
      status: 412,
      body: { detail: "Key 'k' is at revision 2: the condition does not hold", code: "PRECONDITION_FAILED", revision: 2 },
    });
    expect(temp.store.get("k")).toBe("two");
  });

  it("answers 412 with revision 0 to If-Match (a revision or *) for a missing entry", async () => {
    for (const condition of ['"3"', "*"]) {
      await expectFailed(app.handle(deleteIf("k", { "if-match": condition })), 0, /does not exist/);
    }
  });

  it("refuses with If-None-Match: * to delete an entry that exists", async () => {
    temp.store.set("k", "v");
    await expectFailed(app.handle(deleteIf("k", { "if-none-match": "*" })), 1, /is at revision 1/);
    expect(temp.store.get("k")).toBe("v");
  });
});

describe("GET /status", () => {
  it("gives each entry's revision", async () => {
    temp.store.set("a", "1");
    temp.store.set("b", "2");
    temp.store.set("a", "3");
    const got = await answer(app.handle(get("/status")));
    const entries = (got.body as { entries: { key: string; revision: number }[] }).entries;
    expect(entries.map(({ key, revision }) => ({ key, revision }))).toEqual([
      { key: "a", revision: 3 },
      { key: "b", revision: 2 },
    ]);
  });
});

describe("the OpenAPI document", () => {
  interface Operation {
    parameters?: { name: string; in: string }[];
    responses: Record<string, { headers?: Record<string, unknown>; content: Record<string, { schema: { required?: string[] } }> }>;
  }

  async function operation(path: string, method: string): Promise<Operation | undefined> {
    const spec = (await (await app.handle(get("/swagger/json"))).json()) as { paths: Record<string, Record<string, Operation>> };
    return spec.paths[path]?.[method];
  }

  it("declares If-Match and If-None-Match on the writes, and their 412 with the revision", async () => {
    for (const [path, method] of [["/set", "post"], ["/delete/{key}", "delete"]] as const) {
      const op = await operation(path, method);
      const headers = op?.parameters?.filter((p) => p.in === "header").map((p) => p.name);
      expect({ headers, required: op?.responses["412"]?.content["application/json"]?.schema.required }).toEqual({
        headers: ["if-match", "if-none-match"],
        required: ["detail", "code", "revision"],
      });
    }
  });

  it("documents the condition headers of POST /set, which it lists itself, as DELETE's schema does", async () => {
    const headers = async (path: string, method: string) => (await operation(path, method))?.parameters?.filter((p) => p.in === "header");
    expect(await headers("/set", "post")).toEqual(await headers("/delete/{key}", "delete"));
  });

  it("declares the ETag header of GET /get/{key} (beside X-Expires-At) and POST /set", async () => {
    const etags = [];
    for (const [path, method] of [["/get/{key}", "get"], ["/set", "post"]] as const) {
      etags.push(Object.keys((await operation(path, method))?.responses["200"]?.headers ?? {}));
    }
    expect(etags).toEqual([["ETag", "X-Expires-At"], ["ETag"]]);
  });
});
