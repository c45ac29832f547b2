/**
 * A store busy at first (a writer holds its lock: the binding throws STORE_BUSY at once rather than
 * wait) is tried again after a pause, while other requests go on; past the wait, 503 STORE_BUSY.
 */
import { afterEach, beforeEach, describe, expect, it } from "bun:test";
import { createApp } from "../../src/http/app.ts";
import { KvError, RC } from "../../src/errors.ts";
import { answer, get, postSet } from "../helpers/http.ts";
import { TempStore } from "../helpers/shm.ts";

let temp: TempStore;

beforeEach(() => {
  temp = new TempStore();
  temp.store.set("k", "v");
});

afterEach(() => temp[Symbol.dispose]());

/** Make `method` of the store throw STORE_BUSY its first `times` calls. */
function busyFor<K extends "getEntry" | "set" | "entriesFrom">(method: K, times: number): void {
  const store = temp.store as unknown as Record<K, (...args: unknown[]) => unknown>;
  const real = store[method].bind(temp.store);
  let left = times;
  store[method] = (...args: unknown[]) => {
    if (left-- > 0) throw new KvError("STORE_BUSY", "the write lock is held", RC.STORE_BUSY);
    return real(...args);
  };
}

describe("a busy store", () => {
  it("answers GET /get, POST /set and GET /status once it is free again, the routes answering as usual", async () => {
    const app = createApp(temp.store, { busyWaitMs: 1000 });
    busyFor("getEntry", 3);
    busyFor("set", 3);
    busyFor("entriesFrom", 3);
    const [got, set, status] = await Promise.all([
      answer(app.handle(get("/get/k"))),
      answer(app.handle(postSet({ key: "k2", value: "v2" }))),
      answer(app.handle(get("/status"))),
    ]);
    expect({ got, set: set.status, entries: (status.body as { entries: unknown[] }).entries.length }).toEqual({
      got: { status: 200, body: { key: "k", value: "v" } },
      set: 200,
      entries: 1,
    });
  });

  it("answers 503 STORE_BUSY with Retry-After once the wait has passed, and serves other requests meanwhile", async () => {
    const app = createApp(temp.store, { busyWaitMs: 50 });
    busyFor("getEntry", 1_000_000);
    const late = app.handle(get("/get/k"));
    const health = await answer(app.handle(get("/health")));
    const response = await late;
    expect({
      health: health.status,
      status: response.status,
      retryAfter: response.headers.get("retry-after"),
      code: ((await response.json()) as { code: string }).code,
    }).toEqual({ health: 200, status: 503, retryAfter: "1", code: "STORE_BUSY" });
  });
});
