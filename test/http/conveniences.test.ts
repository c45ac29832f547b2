/**
 * The conventions HTTP clients know (Consul's KV among them): a key with "/" sent as it is, ?raw
 * for a value's bytes, If-None-Match on a read (304), and 405 with Allow for a known path.
 */
import { describe, expect, it } from "bun:test";
import type { App } from "../../src/http/app.ts";
import { KvError, RC } from "../../src/errors.ts";
import { eachWithTempApp } from "../helpers/app.ts";
import { answer, del, expectError, get } from "../helpers/http.ts";
import { kvtoolSetBytes } from "../helpers/kvtool.ts";
import type { TempStore } from "../helpers/shm.ts";

let temp: TempStore;
let app: App;

eachWithTempApp((made) => ({ temp, app } = made));

/** Bytes that are not UTF-8 text: a lone continuation byte, an invalid lead byte, a NUL. */
const BINARY = new Uint8Array([0x00, 0x80, 0xff, 0x41, 0xc3, 0x28]);

async function bytesOf(response: Response | Promise<Response>) {
  const r = await response;
  return { status: r.status, type: r.headers.get("content-type"), etag: r.headers.get("etag"), bytes: [...new Uint8Array(await r.arrayBuffer())] };
}

describe("a key with '/' in the path", () => {
  it("is read whole, as Consul's /v1/kv/a/b is, and as %2F still reads it", async () => {
    temp.store.set("a/b/c", "deep");
    const paths = ["/get/a/b/c", "/get/a%2Fb%2Fc", "/get/a/b%2Fc"];
    const got = await Promise.all(paths.map((path) => answer(app.handle(get(path)))));
    expect(got).toEqual(paths.map(() => ({ status: 200, body: { key: "a/b/c", value: "deep" } })));
  });

  it("is percent-decoded after the first segment too, and keeps a doubled '/'", async () => {
    temp.store.set("a/é b", "one");
    temp.store.set("a//b", "two");
    expect([await answer(app.handle(get("/get/a/%C3%A9%20b"))), await answer(app.handle(get("/get/a//b")))]).toEqual([
      { status: 200, body: { key: "a/é b", value: "one" } },
      { status: 200, body: { key: "a//b", value: "two" } },
    ]);
  });

  it("is deleted by DELETE /delete/a/b, and only that key", async () => {
    temp.store.set("a/b", "v");
    temp.store.set("a", "stays");
    expect(await answer(app.handle(del("/delete/a/b")))).toEqual({ status: 200, body: { success: true, message: "Key 'a/b' deleted successfully" } });
    expect({ gone: temp.store.get("a/b"), kept: temp.store.get("a") }).toEqual({ gone: undefined, kept: "stays" });
    await expectError(app.handle(del("/delete/a/b")), 404, "NOT_FOUND", /^Key 'a\/b' not found$/);
  });

  it("deletes only when If-Match holds, as DELETE /delete/{key} does", async () => {
    const revision = temp.store.set("a/b", "v");
    const stale = new Request("http://localhost/delete/a/b", { method: "DELETE", headers: { "if-match": `"${revision + 1}"` } });
    expect(await answer(app.handle(stale))).toEqual({
      status: 412,
      body: { detail: `Key 'a/b' is at revision ${revision}: the condition does not hold`, code: "PRECONDITION_FAILED", revision },
    });
    expect(temp.store.get("a/b")).toBe("v");
  });

  it("answers 400 when a later segment does not decode", async () => {
    await expectError(app.handle(get("/get/a/%FF")), 400, "BAD_REQUEST", /^the key in the URL is not valid percent-encoded UTF-8$/);
  });
});

describe("GET /get/{key}?raw", () => {
  it("answers a value written in binary from C byte for byte, as application/octet-stream, with its ETag", async () => {
    expect(kvtoolSetBytes(temp.name, "bin", BINARY).exitCode).toBe(0);
    const revision = temp.store.getEntryBytes("bin")!.revision;
    expect(await bytesOf(app.handle(get("/get/bin?raw")))).toEqual({
      status: 200,
      type: "application/octet-stream",
      etag: `"${revision}"`,
      bytes: [...BINARY],
    });
  });

  it("answers a text value as its UTF-8 bytes, and a key with '/' as /get/a/b?raw", async () => {
    temp.store.set("a/b", "héllo");
    expect((await bytesOf(app.handle(get("/get/a/b?raw")))).bytes).toEqual([...new TextEncoder().encode("héllo")]);
  });

  it("answers 404 as JSON for a missing key", async () => {
    await expectError(app.handle(get("/get/nokey?raw")), 404, "NOT_FOUND", /not found/);
  });
});

describe("GET /get/{key} of a value that is not UTF-8", () => {
  it("answers 406 NOT_UTF8 pointing to ?raw, rather than replacing bytes", async () => {
    expect(kvtoolSetBytes(temp.name, "bin", BINARY).exitCode).toBe(0);
    await expectError(app.handle(get("/get/bin")), 406, "NOT_UTF8", /^the value of 'bin' is 6 bytes that are not UTF-8 text: GET it with \?raw/);
  });

  it("answers a value that holds U+FFFD itself as the text it is", async () => {
    temp.store.set("k", "a\uFFFDb");
    expect(await answer(app.handle(get("/get/k")))).toEqual({ status: 200, body: { key: "k", value: "a\uFFFDb" } });
  });
});

describe("GET /get/{key} with If-None-Match", () => {
  const withTag = (path: string, tag: string) => new Request(`http://localhost${path}`, { headers: { "if-none-match": tag } });

  it.each([
    ["its ETag", (r: number) => `"${r}"`],
    ["a list holding it", (r: number) => `"${r + 5}", "${r}"`],
    ["its weak form", (r: number) => `W/"${r}"`],
    ["*", () => "*"],
  ])("answers 304 with no body and the ETag when it names %s", async (_, tag) => {
    const revision = temp.store.set("k", "v");
    for (const path of ["/get/k", "/get/k?raw"]) {
      const r = await app.handle(withTag(path, tag(revision)));
      expect({ status: r.status, etag: r.headers.get("etag"), body: await r.text() }).toEqual({ status: 304, etag: `"${revision}"`, body: "" });
    }
  });

  it("answers 200 with the entry once it has changed", async () => {
    const first = temp.store.set("k", "v");
    const second = temp.store.set("k", "w");
    const r = await app.handle(withTag("/get/k", `"${first}"`));
    expect({ status: r.status, etag: r.headers.get("etag"), body: await r.json() }).toEqual({
      status: 200,
      etag: `"${second}"`,
      body: { key: "k", value: "w" },
    });
  });

  it("answers 404 for a key that is gone", async () => {
    await expectError(app.handle(withTag("/get/k", "*")), 404, "NOT_FOUND", /not found/);
  });
});

describe("a known path with another method", () => {
  it.each([
    ["POST", "/get/k", "GET, HEAD"],
    ["DELETE", "/get/a/b", "GET, HEAD"],
    ["GET", "/set", "POST"],
    ["PUT", "/set", "POST"],
    ["GET", "/delete/k", "DELETE"],
    ["POST", "/status", "GET, HEAD"],
    ["POST", "/watch", "GET, HEAD"],
  ])("answers 405 to %s %s with Allow: %s", async (method, path, allow) => {
    const r = await app.handle(new Request(`http://localhost${path}`, { method }));
    expect({ status: r.status, allow: r.headers.get("allow"), body: await r.json() }).toEqual({
      status: 405,
      allow,
      body: { detail: `${method} is not a method of ${path}: it answers ${allow}`, code: "METHOD_NOT_ALLOWED" },
    });
  });

  it("is still 404 for a path no route serves", async () => {
    await expectError(app.handle(new Request("http://localhost/nope", { method: "POST" })), 404, "ROUTE_NOT_FOUND", /no such route/);
  });
});

describe("the read routes, with a busy store", () => {
  /** Make getEntryBytes throw STORE_BUSY its first `times` calls. */
  function busyFor(times: number): void {
    const store = temp.store as unknown as { getEntryBytes: (key: string) => unknown };
    const real = store.getEntryBytes.bind(temp.store);
    let left = times;
    store.getEntryBytes = (key) => {
      if (left-- > 0) throw new KvError("STORE_BUSY", "the write lock is held", RC.STORE_BUSY);
      return real(key);
    };
  }

  it("answer ?raw at once when the store is free, and later when it was busy", async () => {
    temp.store.set("a/b", "v");
    const now = app.fetch(get("/get/a/b?raw"));
    busyFor(2);
    const late = app.fetch(get("/get/a/b?raw"));
    expect({ now: now instanceof Response, late: late instanceof Response }).toEqual({ now: true, late: false });
    expect((await bytesOf(late)).bytes).toEqual([..."v"].map((c) => c.charCodeAt(0)));
  });
});

