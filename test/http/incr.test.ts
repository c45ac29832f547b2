/** POST /incr and DELETE /keys through app.handle: answers, refusals, ETags, /watch's view, a busy store. */
import { describe, expect, it } from "bun:test";
import { createApp, type App } from "../../src/http/app.ts";
import { KvError, RC } from "../../src/errors.ts";
import { KvStore } from "../../src/store.ts";
import { eachWithTempApp } from "../helpers/app.ts";
import { answer, deleteKeys, expectError, get, postIncr } from "../helpers/http.ts";
import { TempStore } from "../helpers/shm.ts";

let temp: TempStore;
let app: App;

eachWithTempApp((made) => ({ temp, app } = made));

/** Status, ETag and the body's text (its digits exactly as sent). */
async function raw(response: Response | Promise<Response>) {
  const r = await response;
  return { status: r.status, etag: r.headers.get("etag"), text: await r.text() };
}

describe("POST /incr", () => {
  it("counts from 0 for a missing key, by 1 unless told, and GET reads the digits", async () => {
    expect(await answer(app.handle(postIncr({ key: "hits" })))).toEqual({ status: 200, body: { key: "hits", value: 1 } });
    expect(await answer(app.handle(postIncr({ key: "hits", by: 41 })))).toEqual({ status: 200, body: { key: "hits", value: 42 } });
    expect(await answer(app.handle(postIncr({ key: "hits", by: -50 })))).toEqual({ status: 200, body: { key: "hits", value: -8 } });
    expect(temp.store.get("hits")).toBe("-8");
  });

  it("answers the new revision as its ETag, as /set does", async () => {
    temp.store.set("other", "x");
    expect(await raw(app.handle(postIncr({ key: "n", by: 2 })))).toEqual({ status: 200, etag: '"2"', text: '{"key":"n","value":2}' });
    expect(temp.store.getEntry("n")?.revision).toBe(2);
  });

  it("takes the whole int64 range as digits in a string, and answers it digit for digit", async () => {
    temp.store.set("big", "9007199254740993");
    expect(await raw(app.handle(postIncr({ key: "big", by: "9223372036854775000" })))).toEqual({
      status: 409,
      etag: null,
      text: expect.stringContaining('"code":"ERANGE"'),
    });
    expect(await raw(app.handle(postIncr({ key: "big", by: "-9007199254740993" })))).toEqual({ status: 200, etag: '"2"', text: '{"key":"big","value":0}' });
    expect(await raw(app.handle(postIncr({ key: "big", by: "9223372036854775807" })))).toEqual({
      status: 200,
      etag: '"3"',
      text: '{"key":"big","value":9223372036854775807}',
    });
    expect(temp.store.get("big")).toBe("9223372036854775807");
  });

  it("answers 409 NOT_A_NUMBER for a value that is no decimal integer, and writes nothing", async () => {
    temp.store.set("name", "alice");
    temp.store.set("padded", "007");
    await expectError(app.handle(postIncr({ key: "name" })), 409, "NOT_A_NUMBER", /not a decimal integer/);
    await expectError(app.handle(postIncr({ key: "padded" })), 409, "NOT_A_NUMBER", /not a decimal integer/);
    expect([temp.store.get("name"), temp.store.get("padded"), temp.store.version]).toEqual(["alice", "007", 2]);
  });

  it("answers 409 ERANGE for a sum beyond int64, and writes nothing", async () => {
    temp.store.set("n", "-9223372036854775807");
    await expectError(app.handle(postIncr({ key: "n", by: -2 })), 409, "ERANGE", /out of range/);
    expect(temp.store.get("n")).toBe("-9223372036854775807");
  });

  it.each([
    ["a fraction", { key: "n", by: 1.5 }],
    ["a number beyond 2^53 - 1", { key: "n", by: 2 ** 53 }],
    ["digits beyond int64", { key: "n", by: "9223372036854775808" }],
    ["a string that is no integer", { key: "n", by: "1e3" }],
    ["a boolean", { key: "n", by: true }],
    ["no key", { by: 1 }],
    ["an empty key", { key: "" }],
  ])("answers 400 to %s, and writes nothing", async (_, body) => {
    const got = await answer(app.handle(postIncr(body)));
    expect({ status: got.status, code: (got.body as { code: string }).code }).toEqual({
      status: 400,
      code: expect.stringMatching(/^(BAD_REQUEST|INVALID_ARGUMENT)$/),
    });
    expect(temp.store.version).toBe(0);
  });

  it("answers 413 for a key too long, 507 when the table is full", async () => {
    await expectError(app.handle(postIncr({ key: "k".repeat(64) })), 413, "KEY_TOO_LONG", /key longer/);
    for (let i = 0; i < temp.store.maxEntries; i++) temp.store.set(`k${i}`, "1");
    await expectError(app.handle(postIncr({ key: "new" })), 507, "TABLE_FULL", /full/);
    expect(await answer(app.handle(postIncr({ key: "k0" })))).toEqual({ status: 200, body: { key: "k0", value: 2 } });
  });

  it("is a set in the change ring: /watch's source sees the new digits", async () => {
    await app.handle(postIncr({ key: "n", by: 5 }));
    expect(temp.store.changesSince(0).changes).toEqual([{ op: "set", key: "n", value: "5", revision: 1, timestamp: expect.any(Number) }]);
  });

  it("waits out a busy store, then answers 503 STORE_BUSY past the wait", async () => {
    const store = temp.store as unknown as { increment: KvStore["increment"] };
    const real = store.increment.bind(temp.store);
    let busy = 3;
    store.increment = (key, by) => {
      if (busy-- > 0) throw new KvError("STORE_BUSY", "the write lock is held", RC.STORE_BUSY);
      return real(key, by);
    };
    expect(await answer(app.handle(postIncr({ key: "n" })))).toEqual({ status: 200, body: { key: "n", value: 1 } });
    busy = Number.MAX_SAFE_INTEGER;
    const late = await app.handle(postIncr({ key: "n" }));
    expect([late.status, late.headers.get("retry-after")]).toEqual([503, "1"]);
  });
});

describe("DELETE /keys", () => {
  it("deletes every key with the prefix, each a delete of its own, and answers how many", async () => {
    for (const key of ["user:1", "user:2", "users", "other", "user:3"]) temp.store.set(key, "v");
    temp.store.delete("user:2");
    expect(await answer(app.handle(deleteKeys("prefix=user%3A")))).toEqual({ status: 200, body: { deleted: 2 } });
    expect(temp.store.keysFrom(0, 100).items).toEqual(["users", "other"]);
    const deletes = temp.store.changesSince(6).changes.map(({ op, key }) => `${op} ${key}`);
    expect(deletes.sort()).toEqual(["delete user:1", "delete user:3"]);
    expect(await answer(app.handle(deleteKeys("prefix=none")))).toEqual({ status: 200, body: { deleted: 0 } });
  });

  it("deletes everything with ?all=1 only", async () => {
    for (let i = 0; i < 5; i++) temp.store.set(`k${i}`, "v");
    await expectError(app.handle(deleteKeys("")), 400, "BAD_REQUEST", /needs a non-empty \?prefix=P/);
    await expectError(app.handle(deleteKeys("prefix=")), 400, "BAD_REQUEST", /needs a non-empty \?prefix=P/);
    await expectError(app.handle(deleteKeys("prefix=k&all=1")), 400, "BAD_REQUEST", /not both/);
    await expectError(app.handle(deleteKeys("all=yes")), 400, "BAD_REQUEST", /all/);
    expect(temp.store.count).toBe(5);
    expect(await answer(app.handle(deleteKeys("all=1")))).toEqual({ status: 200, body: { deleted: 5 } });
    expect(temp.store.count).toBe(0);
  });

  it("waits out a busy lock on each delete, and deletes every key", async () => {
    for (let i = 0; i < 4; i++) temp.store.set(`k${i}`, "v");
    const store = temp.store as unknown as { delete: KvStore["delete"] };
    const real = store.delete.bind(temp.store);
    let busy = 3;
    store.delete = (key) => {
      if (busy-- > 0) throw new KvError("STORE_BUSY", "the write lock is held", RC.STORE_BUSY);
      return real(key);
    };
    expect(await answer(app.handle(deleteKeys("prefix=k")))).toEqual({ status: 200, body: { deleted: 4 } });
    expect(temp.store.count).toBe(0);
  });

  it("deletes a store far bigger than one slice, answering other requests between slices", async () => {
    using big = new TempStore({ maxEntries: 2500 });
    const bigApp = createApp(big.store);
    for (let i = 0; i < 2500; i++) big.store.set(i % 5 === 0 ? `keep${i}` : `drop${i}`, "v");
    const deleting = bigApp.handle(deleteKeys("prefix=drop"));
    // Answered while the deletion is under way: the event loop was not held.
    const health = await bigApp.handle(get("/health"));
    const midway = big.store.count;
    expect(await answer(deleting)).toEqual({ status: 200, body: { deleted: 2000 } });
    expect({ health: health.status, midway: midway > 500 && midway < 2500, left: big.store.count }).toEqual({ health: 200, midway: true, left: 500 });
    bigApp.close();
  });
});
