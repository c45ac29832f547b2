/** GET /keys and paged GET /status: slot order, prefixes, limits, cursors, and paging while others write. */
import { describe, expect, it } from "bun:test";
import { type App } from "../../src/http/app.ts";
import { encodeCursor, SLICE_SLOTS } from "../../src/http/listing.ts";
import { eachWithTempApp, type TempApp } from "../helpers/app.ts";
import { answer, expectError, get } from "../helpers/http.ts";
import type { TempStore } from "../helpers/shm.ts";

let temp: TempStore;
let app: App;

eachWithTempApp((made) => ({ temp, app } = made), { store: { maxEntries: 300 } });

interface Page {
  keys?: string[];
  entries?: { key: string; value: string; timestamp: number; revision: number }[];
  next_cursor: string | null;
}

async function page(path: string): Promise<Page> {
  const got = await answer(app.handle(get(path)));
  expect(got.status).toBe(200);
  return got.body as Page;
}

/** Every key, following next_cursor from the first page; `between` runs after each page. */
async function pageThrough(path: string, between: (pageNo: number) => void = () => {}): Promise<string[]> {
  const keys: string[] = [];
  let cursor: string | null = null;
  for (let pageNo = 0; ; pageNo++) {
    const separator = path.includes("?") ? "&" : "?";
    const got = await page(cursor === null ? path : `${path}${separator}cursor=${cursor}`);
    keys.push(...(got.keys ?? got.entries?.map((e) => e.key) ?? []));
    if (got.next_cursor === null) return keys;
    cursor = got.next_cursor;
    between(pageNo);
  }
}

describe("GET /keys", () => {
  it("lists the keys in slot order, in one page when they fit", async () => {
    for (const key of ["b", "a", "c"]) temp.store.set(key, "v");
    expect(await page("/keys")).toEqual({ keys: ["b", "a", "c"], next_cursor: null });
  });

  it("gives the whole entries with values=1", async () => {
    temp.store.set("k", "v");
    expect(await page("/keys?values=1")).toEqual({
      entries: [{ key: "k", value: "v", timestamp: expect.any(Number), revision: 1 }],
      next_cursor: null,
    });
  });

  it("pages through every key with limit and cursor", async () => {
    for (let i = 0; i < 10; i++) temp.store.set(`k${i}`, "v");
    const first = await page("/keys?limit=4");
    expect(first).toEqual({ keys: ["k0", "k1", "k2", "k3"], next_cursor: expect.any(String) });
    expect(await pageThrough("/keys?limit=4")).toEqual(Array.from({ length: 10 }, (_, i) => `k${i}`));
  });

  it("gives 100 keys a page by default", async () => {
    for (let i = 0; i < 150; i++) temp.store.set(`k${i}`, "v");
    const first = await page("/keys");
    expect({ length: first.keys?.length, more: first.next_cursor !== null }).toEqual({ length: 100, more: true });
  });

  it("lists only the keys that start with the prefix, matched as UTF-8 bytes", async () => {
    for (const key of ["user/1", "item/1", "user/2", "usé", "us", "ключ/1"]) temp.store.set(key, "v");
    expect(await page("/keys?prefix=user%2F")).toEqual({ keys: ["user/1", "user/2"], next_cursor: null });
    expect(await page(`/keys?prefix=${encodeURIComponent("ключ")}`)).toEqual({ keys: ["ключ/1"], next_cursor: null });
    expect(await pageThrough("/keys?prefix=us&limit=1")).toEqual(["user/1", "user/2", "usé", "us"]);
  });

  it("answers an empty page for a prefix no key has, or longer than any key can be", async () => {
    temp.store.set("k", "v");
    expect(await page(`/keys?prefix=${"x".repeat(100)}`)).toEqual({ keys: [], next_cursor: null });
  });

  it("never skips nor repeats an entry that stays, while others are set and deleted between pages", async () => {
    // Stable keys interleaved with volatile ones, so deletes free slots before and after the cursor.
    const volatile: string[] = [];
    for (let i = 0; i < 60; i++) {
      temp.store.set(`stable-${i}`, "v");
      temp.store.set(`volatile-${i}`, "v");
      volatile.push(`volatile-${i}`);
    }
    let added = 0;
    let pick = 1;
    const seen = await pageThrough("/keys?limit=7", (pageNo) => {
      // Unequal numbers, so the entries before the cursor change in count (an offset would drift).
      const [deletes, sets] = pageNo % 2 ? [2, 6] : [6, 3];
      for (let j = 0; j < deletes; j++) {
        pick = (pick * 31 + 7) % 1009;
        temp.store.delete(volatile.splice(pick % volatile.length, 1)[0]!);
      }
      for (let j = 0; j < sets; j++) {
        volatile.push(`added-${added++}`); // takes a freed slot, before or after the cursor, or a new one
        temp.store.set(volatile.at(-1)!, "v");
      }
      temp.store.set(`stable-${pageNo}`, "rewritten"); // a write to a stable entry keeps its slot
    });
    const stable = seen.filter((key) => key.startsWith("stable-"));
    expect(stable).toEqual(Array.from({ length: 60 }, (_, i) => `stable-${i}`));
    expect(new Set(seen).size).toBe(seen.length);
  });

  it.each([
    ["limit=0", /^limit must be a whole number from 1 to 1000$/],
    ["limit=1001", /^limit must be a whole number from 1 to 1000$/],
    ["limit=many", /^limit must be a whole number from 1 to 1000$/],
    ["values=yes", /^values must be 1 or 0$/],
    ["cursor=nonsense", /invalid cursor/],
    [`cursor=${encodeCursor(301)}`, /invalid cursor/],
  ])("answers 400 for %s", async (query, detail) => {
    await expectError(app.handle(get(`/keys?${query}`)), 400, "BAD_REQUEST", detail);
  });
});

describe("GET /status with limit or cursor", () => {
  it("keeps the seed's shape, with every entry, when given neither", async () => {
    temp.store.set("a", "1");
    expect(await answer(app.handle(get("/status")))).toEqual({
      status: 200,
      body: {
        version: 1,
        entry_count: 1,
        max_entries: 300,
        memory_bytes: 301 * 336, // chunks of 8 + 63 + 255 bytes, rounded to 16
        memory_used: 336,
        evict: "none",
        entries: [{ key: "a", value: "1", timestamp: expect.any(Number), revision: 1 }],
      },
    });
  });

  it("answers one page of entries, the whole store's counts, and where the next page starts", async () => {
    for (const key of ["a", "b", "c"]) temp.store.set(key, key);
    const first = await answer(app.handle(get("/status?limit=2")));
    const entry = (key: string, revision: number) => ({ key, value: key, timestamp: expect.any(Number), revision });
    expect(first).toEqual({
      status: 200,
      body: { version: 3, entry_count: 3, max_entries: 300, memory_bytes: 301 * 336, memory_used: 3 * 336, evict: "none", entries: [entry("a", 1), entry("b", 2)], next_cursor: expect.any(String) },
    });
    const cursor = (first.body as { next_cursor: string }).next_cursor;
    expect(await answer(app.handle(get(`/status?limit=2&cursor=${cursor}`)))).toEqual({
      status: 200,
      body: { version: 3, entry_count: 3, max_entries: 300, memory_bytes: 301 * 336, memory_used: 3 * 336, evict: "none", entries: [entry("c", 3)], next_cursor: null },
    });
  });

  it("answers 400 for a limit out of range or a cursor it did not give", async () => {
    await expectError(app.handle(get("/status?limit=1001")), 400, "BAD_REQUEST", /limit/);
    await expectError(app.handle(get("/status?cursor=abc")), 400, "BAD_REQUEST", /invalid cursor/);
  });
});

describe("listing a store bigger than one slice", () => {
  const N = 3 * SLICE_SLOTS + 17;
  let big: TempApp;

  eachWithTempApp(
    (made) => {
      big = made;
      for (let i = 0; i < N; i++) big.temp.store.set(`k${i}`, `v${i}`);
    },
    { store: { maxEntries: N, keyMax: 16, valueMax: 16 } },
  );

  it("sends the whole /status as it reads it, the same JSON the store's status gives", async () => {
    const response = await big.app.handle(get("/status"));
    const { version, entry_count, max_entries, memory_bytes, memory_used, evict, entries } = big.temp.store.status();
    expect({ status: response.status, length: response.headers.get("content-length"), body: await response.json() }).toEqual({
      status: 200,
      length: null, // streamed: its length is not known when it starts
      body: { version, entry_count, max_entries, memory_bytes, memory_used, evict, entries },
    });
  });

  it("finds /keys matches slices apart, and answers a prefix that matches nothing with an empty last page", async () => {
    const got = await answer(big.app.handle(get(`/keys?prefix=k${N - 1}&limit=5`)));
    const none = await answer(big.app.handle(get("/keys?prefix=zzz")));
    const spread = await answer(big.app.handle(get("/keys?prefix=k1&limit=1000")));
    expect({ got, none, spreadCount: (spread.body as Page).keys!.length }).toEqual({
      got: { status: 200, body: { keys: [`k${N - 1}`], next_cursor: null } },
      none: { status: 200, body: { keys: [], next_cursor: null } },
      spreadCount: 1000, // k1, k10..k19, k100..k199, k1000..k1999 and more: over a thousand, in several slices
    });
  });
});
