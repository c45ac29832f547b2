/**
 * Expiry and eviction over HTTP (app.handle): POST /set's and POST /incr's ttl, where an expiry
 * shows (X-Expires-At, expires_at), a ttl on a replicated server, the eviction policy in
 * /status and /health, and the server's sweep of expired entries (ExpirySweep), a busy lock included.
 */
import { afterEach, describe, expect, it } from "bun:test";
import { TTL_MAX_SECONDS } from "../../src/config.ts";
import { createApp, type App } from "../../src/http/app.ts";
import { ExpirySweep, type SweepOptions } from "../../src/http/expiry.ts";
import type { ReplicatedWriter } from "../../src/http/writer.ts";
import { KvError } from "../../src/errors.ts";
import { KvStore } from "../../src/store.ts";
import { eachWithTempApp } from "../helpers/app.ts";
import { answer, expectError, get, keyPath, postIncr, postSet } from "../helpers/http.ts";
import { whileStopped } from "../helpers/kvtool.ts";
import { TempStore } from "../helpers/shm.ts";
import { waitFor } from "../helpers/wait.ts";

let temp: TempStore;
let app: App;

eachWithTempApp((made) => ({ temp, app } = made), { store: { maxEntries: 64 } });

const TTL_ERROR = `ttl must be a number of seconds from 0.001 to ${TTL_MAX_SECONDS} (ten years), such as 30 or 0.5`;

/** A GET's status and its X-Expires-At, as a number of seconds (null without the header). */
async function expiryOf(request: Request, target: App = app) {
  const response = await target.handle(request);
  const header = response.headers.get("x-expires-at");
  return { status: response.status, expiresAt: header === null ? null : Number(header) };
}

/** Write through `write`, and the bounds (ms) of the moment it was made: before and after it. */
async function timedWrite<T>(write: () => Promise<T>): Promise<{ result: T; before: number; after: number }> {
  const before = Date.now();
  const result = await write();
  return { result, before, after: Date.now() };
}

/** Wait until GET /get/{key} answers 404: the entry has expired. */
async function expired(key: string): Promise<void> {
  await waitFor(async () => (await app.handle(get(keyPath("get", key)))).status === 404, { what: `${key} to expire` });
}

describe("POST /set with a ttl", () => {
  it("expires the entry after ttl seconds, counted to the millisecond, and says when everywhere it shows the entry", async () => {
    const { result, before, after } = await timedWrite(() => answer(app.handle(postSet({ key: "session", value: "s", ttl: 30.0015 }))));
    expect(result.status).toBe(200);
    const entry = temp.store.getEntry("session")!;
    // 30.0015 s is 30001.5 ms: rounded to 30002.
    expect(entry.expiresAt! >= before + 30_002 && entry.expiresAt! <= after + 30_002).toBe(true);
    const seconds = entry.expiresAt! / 1000;
    const revision = `"${entry.revision}"`;
    const status = (await answer(app.handle(get("/status")))).body as { entries: unknown[] };
    const keys = (await answer(app.handle(get("/keys?values=1")))).body as { entries: unknown[] };
    expect({
      get: await expiryOf(get("/get/session")),
      raw: await expiryOf(get("/get/session?raw")),
      notModified: await expiryOf(new Request("http://localhost/get/session", { headers: { "if-none-match": revision } })),
      status: status.entries,
      keys: keys.entries,
    }).toEqual({
      get: { status: 200, expiresAt: seconds },
      raw: { status: 200, expiresAt: seconds },
      notModified: { status: 304, expiresAt: seconds },
      status: [{ key: "session", value: "s", timestamp: expect.any(Number), revision: 1, expires_at: seconds }],
      keys: [{ key: "session", value: "s", timestamp: expect.any(Number), revision: 1, expires_at: seconds }],
    });
  });

  it("answers 404 for the entry once it has expired, and lists it no more", async () => {
    await app.handle(postSet({ key: "stays", value: "1" }));
    expect((await app.handle(postSet({ key: "brief", value: "2", ttl: 0.03 }))).status).toBe(200);
    await expired("brief");
    const status = (await answer(app.handle(get("/status")))).body as { entries: { key: string }[] };
    expect({
      keys: (await answer(app.handle(get("/keys")))).body,
      status: status.entries.map((e) => e.key),
      get: await expiryOf(get("/get/stays")),
    }).toEqual({ keys: { keys: ["stays"], next_cursor: null }, status: ["stays"], get: { status: 200, expiresAt: null } });
    await expectError(app.handle(new Request("http://localhost/delete/brief", { method: "DELETE" })), 404, "NOT_FOUND", /not found/);
  });

  it("takes the smallest ttl, 0.001, and the largest, ten years", async () => {
    const { before, after } = await timedWrite(() => app.handle(postSet({ key: "long", value: "v", ttl: TTL_MAX_SECONDS })));
    const { expiresAt } = await expiryOf(get("/get/long"));
    expect(expiresAt! * 1000 >= before + TTL_MAX_SECONDS * 1000 && expiresAt! * 1000 <= after + TTL_MAX_SECONDS * 1000).toBe(true);
    expect((await app.handle(postSet({ key: "short", value: "v", ttl: 0.001 }))).status).toBe(200);
    await expired("short");
  });

  it("says nothing of an expiry for an entry that never expires, right after answering for one that does", async () => {
    await app.handle(postSet({ key: "brief", value: "1", ttl: 30 }));
    await app.handle(postSet({ key: "stays", value: "2" }));
    const conditional = (key: string) => new Request(`http://localhost/get/${key}`, { headers: { "if-none-match": "*" } });
    const pairs = [
      [get("/get/brief"), get("/get/stays")],
      [get("/get/brief?raw"), get("/get/stays?raw")],
      [conditional("brief"), conditional("stays")],
    ];
    const answers = [];
    for (const [expiring, lasting] of pairs) answers.push([(await expiryOf(expiring!)).expiresAt !== null, await expiryOf(lasting!)]);
    expect(answers).toEqual([
      [true, { status: 200, expiresAt: null }],
      [true, { status: 200, expiresAt: null }],
      [true, { status: 304, expiresAt: null }],
    ]);
  });

  it("clears the expiry when the key is set again without a ttl", async () => {
    await app.handle(postSet({ key: "k", value: "1", ttl: 30 }));
    await app.handle(postSet({ key: "k", value: "2" }));
    expect([await expiryOf(get("/get/k")), temp.store.getEntry("k")?.expiresAt]).toEqual([{ status: 200, expiresAt: null }, undefined]);
  });

  it.each([
    ["zero", 0],
    ["a negative number", -1],
    ["less than a millisecond", 0.0004],
    ["more than ten years", TTL_MAX_SECONDS + 1],
    ["a string of digits", "30"],
    ["a duration", "30s"],
    ["a boolean", true],
    ["null", null],
  ])("answers 400 to a ttl that is %s, saying what it takes, and writes nothing", async (_, ttl) => {
    await expectError(app.handle(postSet({ key: "k", value: "v", ttl })), 400, "BAD_REQUEST", new RegExp(`^${TTL_ERROR.replace(/[()]/g, "\\$&")}$`));
    expect(temp.store.version).toBe(0);
  });

  it("answers 400 to a ttl too large for a number (1e400 is Infinity to JSON.parse)", async () => {
    await expectError(app.handle(postSet('{"key": "k", "value": "v", "ttl": 1e400}')), 400, "BAD_REQUEST", /^ttl must be a number of seconds/);
    expect(temp.store.version).toBe(0);
  });

  it("makes with If-None-Match: * a lock that frees itself: taken once, refused while held, free again once expired", async () => {
    const take = () => app.handle(postSet({ key: "lock", value: "me", ttl: 0.03 }, { "content-type": "application/json", "if-none-match": "*" }));
    expect((await take()).status).toBe(200);
    expect((await take()).status).toBe(412);
    await expired("lock");
    expect((await take()).status).toBe(200);
  });
});

describe("POST /incr with a ttl", () => {
  it("gives a counter it creates an expiry, which later increments keep whatever ttl they send", async () => {
    expect(await answer(app.handle(postIncr({ key: "hits", ttl: 30 })))).toEqual({ status: 200, body: { key: "hits", value: 1 } });
    const first = await expiryOf(get("/get/hits"));
    await app.handle(postIncr({ key: "hits", ttl: 300 }));
    await app.handle(postIncr({ key: "hits", by: 5 }));
    expect({ first: first.expiresAt !== null, now: await expiryOf(get("/get/hits")), value: temp.store.get("hits") }).toEqual({
      first: true,
      now: first,
      value: "7",
    });
  });

  it("counts from 0 again once the counter has expired", async () => {
    await app.handle(postIncr({ key: "rate", by: 5, ttl: 0.03 }));
    await expired("rate");
    expect(await answer(app.handle(postIncr({ key: "rate" })))).toEqual({ status: 200, body: { key: "rate", value: 1 } });
    expect(temp.store.getEntry("rate")?.expiresAt).toBeUndefined();
  });

  it("answers 400 to a bad ttl as POST /set does, and writes nothing", async () => {
    await expectError(app.handle(postIncr({ key: "n", ttl: 0 })), 400, "BAD_REQUEST", /^ttl must be a number of seconds/);
    await expectError(app.handle(postIncr({ key: "n", ttl: "1h" })), 400, "BAD_REQUEST", /^ttl must be a number of seconds/);
    expect(temp.store.version).toBe(0);
  });
});

describe("a ttl on a replicated server", () => {
  it("goes to the replicated writer in milliseconds, with a set and with an increment", async () => {
    const sent: [string, string, number | undefined][] = [];
    const replication: ReplicatedWriter = {
      set: (key, _value, _condition, ttlMs) => {
        sent.push(["set", key, ttlMs]);
        return 1;
      },
      delete: () => false,
      incr: (key, _by, ttlMs) => {
        sent.push(["incr", key, ttlMs]);
        return { value: 1n, revision: 1 };
      },
      deletePrefix: () => Promise.resolve(0),
      status: () => ({ state: "following", lag_ms: 0, applied_revision: 0, last_error: null }),
    };
    const replicated = createApp(temp.store, { replication });
    try {
      const statuses = [
        (await replicated.handle(postSet({ key: "k", value: "v", ttl: 30 }))).status,
        (await replicated.handle(postIncr({ key: "n", ttl: 0.25 }))).status,
        (await replicated.handle(postSet({ key: "k", value: "v" }))).status,
      ];
      expect({ statuses, sent }).toEqual({
        statuses: [200, 200, 200],
        sent: [
          ["set", "k", 30_000],
          ["incr", "n", 250],
          ["set", "k", undefined],
        ],
      });
    } finally {
      replicated.close();
    }
  });
});

describe("the eviction policy", () => {
  it("is none by default, in /status and /health", async () => {
    const status = (await answer(app.handle(get("/status")))).body as { evict: string };
    const health = (await answer(app.handle(get("/health")))).body as { evict: string };
    expect([status.evict, health.evict]).toEqual(["none", "none"]);
  });

  it("is lru for a store made so, which then answers 200 to sets far past its capacity", async () => {
    using lru = new TempStore({ maxEntries: 8, evict: "lru" });
    const lruApp = createApp(lru.store);
    try {
      const statuses = new Set<number>();
      for (let i = 0; i < 100; i++) statuses.add((await lruApp.handle(postSet({ key: `k${i}`, value: "v" }))).status);
      const status = (await answer(lruApp.handle(get("/status?limit=1")))).body as { evict: string; entry_count: number };
      const health = (await answer(lruApp.handle(get("/health")))).body as { evict: string };
      expect({ statuses: [...statuses], evict: [status.evict, health.evict], count: status.entry_count, last: lru.store.get("k99") }).toEqual({
        statuses: [200],
        evict: ["lru", "lru"],
        count: 8,
        last: "v",
      });
    } finally {
      lruApp.close();
    }
  });
});

describe("ExpirySweep", () => {
  const sweeps: ExpirySweep[] = [];
  afterEach(() => sweeps.splice(0).forEach((s) => s.stop()));

  /** A sweep whose timer never fires during a test: its ticks are the test's. */
  function sweep(store: KvStore, options: SweepOptions & { batch: number; maxPasses: number }): ExpirySweep {
    const made = new ExpirySweep(() => store, { intervalMs: 3_600_000, ...options });
    sweeps.push(made);
    return made;
  }

  /** `count` keys k0.. (in slot order), those `expiring(i)` says with a ttl of 30 ms; resolves once those have expired. */
  async function fill(count: number, expiring: (i: number) => boolean): Promise<void> {
    for (let i = 0; i < count; i++) temp.store.set(`k${i}`, "v", expiring(i) ? { ttl: 30 } : undefined);
    const last = Array.from({ length: count }, (_, i) => i).findLast(expiring);
    await waitFor(() => temp.store.get(`k${last}`) === undefined, { what: "the entries to expire" });
  }

  it("reclaims a batch a pass, going on at once while a pass reclaims more than a quarter, up to its passes a tick", async () => {
    await fill(64, () => true);
    const ticks = sweep(temp.store, { batch: 16, maxPasses: 3 });
    expect(temp.store.count).toBe(64); // expired, absent to readers, but not reclaimed yet
    expect([ticks.tick(), temp.store.count, ticks.tick(), temp.store.count, temp.store.stats().expired]).toEqual([48, 16, 16, 0, 64]);
  });

  it("ends a tick after a pass that reclaims a quarter of its slots or fewer", async () => {
    await fill(64, (i) => i % 16 < 4);
    const ticks = sweep(temp.store, { batch: 16, maxPasses: 4 });
    expect([ticks.tick(), ticks.tick(), temp.store.count]).toEqual([4, 4, 56]);
  });

  it("looks at enough slots a tick to go round the whole store in its lap, however few have expired", async () => {
    await fill(64, (i) => i % 16 === 0);
    const ticks = sweep(temp.store, { batch: 4, maxPasses: 4, lapTicks: 4 });
    expect([ticks.tick(), ticks.tick(), ticks.tick(), ticks.tick(), temp.store.count]).toEqual([1, 1, 1, 1, 60]);
  });

  it("ends a tick once its passes have taken its budget", async () => {
    await fill(64, (i) => i % 16 === 0);
    const ticks = sweep(temp.store, { batch: 4, maxPasses: 4, lapTicks: 4, budgetMs: 0 });
    expect([ticks.tick(), ticks.tick(), temp.store.count]).toEqual([1, 0, 63]);
  });

  it("skips a tick while another process holds the lock, without waiting for it, and reclaims at the next", async () => {
    await fill(1, () => true);
    // The server's handle on the store: it never waits for the lock.
    using server = KvStore.open(temp.name, { lockTimeoutMs: 0 });
    const errors: string[] = [];
    const ticks = sweep(server, { batch: 16, maxPasses: 4, onError: (message) => errors.push(message) });
    const { exitCode } = await whileStopped(temp.name, ["set", "other", "v"], 1, () => {
      const started = performance.now();
      expect(ticks.tick()).toBe(0);
      expect(performance.now() - started).toBeLessThan(100);
    });
    expect(exitCode).toBe(0);
    expect([ticks.tick(), errors]).toEqual([1, []]);
  });

  it("tells of a store it cannot read, rather than throwing out of its timer", () => {
    const errors: string[] = [];
    const gone = {
      get readOnly(): boolean {
        throw new KvError("ENOENT", "the store's segment is gone", -2);
      },
    } as unknown as KvStore;
    expect([sweep(gone, { batch: 16, maxPasses: 4, onError: (message) => errors.push(message) }).tick(), errors]).toEqual([
      0,
      ["the store's segment is gone"],
    ]);
  });

  it("leaves a read-only store (a replica's) alone", async () => {
    await fill(1, () => true);
    temp.store.setReadOnly(true);
    expect([sweep(temp.store, { batch: 16, maxPasses: 4 }).tick(), temp.store.count]).toEqual([0, 1]);
  });
});
