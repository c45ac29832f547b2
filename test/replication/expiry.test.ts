/**
 * Expiry under replication, through a real Redis: Redis's clock sets a key's expiry and every
 * replica's segment holds it, so readers on each host find the key absent once it passes (by their
 * own clock); the key's end in Redis (a write meeting it, or the sweep) is a change of its own that
 * every host applies as a delete with reason "expired". Replicas run no sweep of their own: only
 * writes and writer.expire() end a key in Redis; hosts (servers) sweep.
 */
import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { RedisClient } from "bun";
import { KvStore, type KvChange } from "../../src/store.ts";
import { RedisServer } from "../helpers/redis.ts";
import { caughtUp, Host, Replica, uniqueNamespace, watching } from "../helpers/replicas.ts";
import { uniqueName } from "../helpers/shm.ts";
import { waitFor } from "../helpers/wait.ts";

let redis: RedisServer;
let client: RedisClient;

beforeAll(async () => {
  redis = await RedisServer.start();
  client = new RedisClient(redis.url);
});

afterAll(async () => {
  client.close();
  await redis[Symbol.asyncDispose]();
});

/** Once `key` reads as absent in every store (its expiry passed). */
async function gone(key: string, stores: KvStore[]): Promise<void> {
  await waitFor(() => stores.every((store) => store.get(key) === undefined), { what: `${key} to expire` });
}

/** The changes a store recorded after revision `since`. */
function changesAfter(store: KvStore, since: number) {
  return store.changesSince(since).changes;
}

/** The keys a store holds (and has not expired), sorted. */
function keysOf(store: KvStore): string[] {
  return store
    .status()
    .entries.map(({ key }) => key)
    .sort();
}

/** The keys Redis holds an expiry for in the namespace, with when. */
async function redisExpiries(namespace: string): Promise<string[]> {
  return (await client.send("ZRANGE", [`{${namespace}}:ttl`, "0", "-1", "WITHSCORES"])) as string[];
}

describe("expiry through the replication writer, on every replica", () => {
  it("gives every replica the key with Redis's expiry, absent on each once it passes, and its sweep as an expired delete everywhere", async () => {
    const namespace = uniqueNamespace();
    await using a = new Replica(redis.url, namespace);
    await using b = new Replica(redis.url, namespace);
    using onA = a.open();
    using onB = b.open();
    const before = Date.now();
    const revision = await a.writer.set("session", "token", undefined, 60);
    const after = Date.now();
    await b.applied(revision);
    // As changes: an entry read may have expired already on a slow run.
    const [setOnA, setOnB] = [changesAfter(onA, 0), changesAfter(onB, 0)];
    const expiresAt = setOnA[0]?.expiresAt ?? 0;
    expect({ setOnA, setOnB, within: expiresAt >= before + 60 && expiresAt <= after + 60 }).toEqual({
      setOnA: [{ revision: 1, op: "set", key: "session", value: "token", timestamp: expect.any(Number), expiresAt }],
      setOnB: setOnA,
      within: true,
    });
    await gone("session", [onA, onB]);
    // Absent to readers on every host while Redis still holds it, until the sweep.
    expect(await client.hexists(`{${namespace}}:kv`, "session")).toBe(true);
    expect([await a.writer.expire(100), await b.writer.expire(100)]).toEqual([1, 0]);
    expect(await caughtUp(redis.url, namespace, [a, b])).toBe(2);
    const ended: KvChange[] = [{ revision: 2, op: "delete", key: "session", timestamp: expect.any(Number), reason: "expired" }];
    expect({ onA: changesAfter(onA, 1), onB: changesAfter(onB, 1), count: [onA.count, onB.count], redis: await redisExpiries(namespace) }).toEqual({
      onA: ended,
      onB: ended,
      count: [0, 0],
      redis: [],
    });
  });

  it("clears a key's expiry on every replica when a set gives none, as Redis's SET does", async () => {
    const namespace = uniqueNamespace();
    await using a = new Replica(redis.url, namespace);
    await using b = new Replica(redis.url, namespace);
    await a.writer.set("k", "expiring", undefined, 60_000);
    const revision = await b.writer.set("k", "kept", undefined);
    await caughtUp(redis.url, namespace, [a, b]);
    using onA = a.open();
    using onB = b.open();
    const kept = { key: "k", value: "kept", timestamp: expect.any(Number), revision };
    expect({ onA: onA.getEntry("k"), onB: onB.getEntry("k"), redis: await redisExpiries(namespace), swept: await a.writer.expire(100) }).toEqual({
      onA: kept,
      onB: kept,
      redis: [],
      swept: 0,
    });
  });

  it("keeps a counter's expiry through increments with another ttl, and counts from 0 once it passed", async () => {
    const namespace = uniqueNamespace();
    await using a = new Replica(redis.url, namespace);
    await using b = new Replica(redis.url, namespace);
    using onA = a.open();
    using onB = b.open();
    // The window opens with the first increment; later ones (from any host) leave it as it is.
    expect(await a.writer.incr("window", 1n, 60_000)).toEqual({ value: 1n, revision: 1 });
    const opened = onA.getEntry("window")?.expiresAt;
    expect(await b.writer.incr("window", 2n, 5)).toEqual({ value: 3n, revision: 2 });
    expect(await a.writer.incr("burst", 1n, 50)).toEqual({ value: 1n, revision: 3 });
    await b.applied(3);
    await gone("burst", [onA, onB]);
    const again = await b.writer.incr("burst", 5n, 60_000);
    await caughtUp(redis.url, namespace, [a, b]);
    expect({
      window: [onA.getEntry("window")?.expiresAt, onB.getEntry("window")?.expiresAt],
      again,
      burst: onA.get("burst"),
      changes: changesAfter(onB, 3).map(({ revision, op, key, value, reason }) => ({ revision, op, key, value, reason })),
      later: (onB.getEntry("burst")?.expiresAt ?? 0) > (opened ?? Infinity),
    }).toEqual({
      window: [opened, opened],
      again: { value: 5n, revision: 5 },
      burst: "5",
      // The expired counter ends as a change of its own, then the increment creates it anew.
      changes: [
        { revision: 4, op: "delete", key: "burst", value: undefined, reason: "expired" },
        { revision: 5, op: "set", key: "burst", value: "5", reason: undefined },
      ],
      later: true,
    });
  });

  it("lets a create-only set win on a key whose expiry passed, and finds it absent for a delete", async () => {
    const namespace = uniqueNamespace();
    await using a = new Replica(redis.url, namespace);
    await using b = new Replica(redis.url, namespace);
    using onB = b.open();
    await a.writer.set("lock", "held by a", undefined, 50);
    await a.writer.set("gone", "soon", undefined, 50);
    await b.applied(2);
    await gone("lock", [onB]);
    await gone("gone", [onB]);
    const created = await b.writer.set("lock", "held by b", 0, 60_000);
    const deleted = await b.writer.delete("gone", undefined);
    await caughtUp(redis.url, namespace, [a, b]);
    expect({
      created,
      deleted,
      lock: onB.get("lock"),
      changes: changesAfter(onB, 2).map(({ revision, op, key, reason }) => ({ revision, op, key, reason })),
    }).toEqual({
      created: 4,
      deleted: false,
      lock: "held by b",
      changes: [
        { revision: 3, op: "delete", key: "lock", reason: "expired" },
        { revision: 4, op: "set", key: "lock", reason: undefined },
        { revision: 5, op: "delete", key: "gone", reason: "expired" },
      ],
    });
  });

  it("deletes a prefix's live keys and counts only them, ending its expired keys as expired", async () => {
    const namespace = uniqueNamespace();
    await using a = new Replica(redis.url, namespace);
    using onA = a.open();
    await a.writer.set("tmp:old", "v", undefined, 50);
    await a.writer.set("tmp:new", "v", undefined);
    await a.writer.set("keep", "v", undefined);
    await gone("tmp:old", [onA]);
    expect(await a.writer.deletePrefix("tmp:")).toBe(1);
    const changes = changesAfter(onA, 3).map(({ op, key, reason }) => ({ op, key, reason }));
    expect({ changes: changes.sort((x, y) => (x.key < y.key ? -1 : 1)), keys: keysOf(onA), redis: await redisExpiries(namespace) }).toEqual({
      changes: [
        { op: "delete", key: "tmp:new", reason: undefined },
        { op: "delete", key: "tmp:old", reason: "expired" },
      ],
      keys: ["keep"],
      redis: [],
    });
  });

  it("makes room in a full namespace by ending a key whose expiry passed", async () => {
    const namespace = uniqueNamespace();
    await using a = new Replica(redis.url, namespace, undefined, { maxEntries: 2 });
    using onA = a.open();
    await a.writer.set("old", "v", undefined, 50);
    await a.writer.set("live", "v", undefined);
    await gone("old", [onA]);
    const added = await a.writer.set("new", "v", undefined);
    let refused: unknown;
    try {
      await a.writer.set("more", "v", undefined);
    } catch (error) {
      refused = (error as { code?: string }).code;
    }
    expect({ added, refused, keys: keysOf(onA), ended: changesAfter(onA, 2)[0]?.reason }).toEqual({
      added: 4,
      refused: "TABLE_FULL",
      keys: ["live", "new"],
      ended: "expired",
    });
  });

  it("loads a snapshot with each key's expiry, leaving out keys already expired", async () => {
    const namespace = uniqueNamespace();
    await using a = new Replica(redis.url, namespace);
    using onA = a.open();
    await a.writer.set("long", "v", undefined, 60_000);
    await a.writer.set("forever", "v", undefined);
    await a.writer.set("short", "v", undefined, 50);
    await gone("short", [onA]);
    // A segment written directly, no replica: the follower replaces it with the namespace's state.
    const name = uniqueName();
    using local = KvStore.open(name, { create: true, maxEntries: 500 });
    local.set("local", "v");
    await using b = new Replica(redis.url, namespace, name);
    await b.applied(3);
    using onB = b.open();
    const loaded = onB.status();
    expect({
      log: b.log,
      version: loaded.version,
      entries: loaded.entries.map(({ key, expiresAt }) => ({ key, expiresAt })).sort((x, y) => (x.key < y.key ? -1 : 1)),
      count: onB.count,
    }).toEqual({
      log: [expect.stringMatching(/^loaded revision 3 of namespace \S+ \(the segment was not a replica\)$/)],
      version: 3,
      entries: [
        { key: "forever", expiresAt: undefined },
        { key: "long", expiresAt: onA.getEntry("long")?.expiresAt },
      ],
      count: 2, // "short" left out, not merely hidden
    });
    // Its end, swept later, applies as the delete of a key the replica never held.
    expect(await a.writer.expire(100)).toBe(1);
    await b.applied(4);
    expect(changesAfter(onB, 3)).toEqual([{ revision: 4, op: "delete", key: "short", timestamp: expect.any(Number), reason: "expired" }]);
  });
});

describe("expiry on replicated servers", () => {
  it("takes a ttl on POST /set: 404 on every host once it passes, then the servers' sweep ends it, an expired delete on every /watch", async () => {
    const namespace = uniqueNamespace();
    await using a = new Host(redis.url, namespace);
    await using b = new Host(redis.url, namespace);
    using watchers = await watching([a, b]);
    expect((await a.post("set", { key: "session", value: "token", ttl: 0.06 })).status).toBe(200);
    const seen = await Promise.all(watchers.map(async (w) => (await w.received(2)).map(({ id, event, data }) => ({ id, event, data: JSON.parse(data) }))));
    expect(seen[0]).toEqual([
      { id: "1", event: "set", data: { key: "session", value: "token", revision: 1, timestamp: expect.any(Number), expires_at: expect.any(Number) } },
      { id: "2", event: "delete", data: { key: "session", revision: 2, timestamp: expect.any(Number), reason: "expired" } },
    ]);
    expect(seen[1]).toEqual(seen[0]!);
    const reads = await Promise.all([a, b].map(async (host) => (await fetch(`${host.url}get/session`)).status));
    expect({ reads, inRedis: await client.hexists(`{${namespace}}:kv`, "session"), expiries: await redisExpiries(namespace) }).toEqual({
      reads: [404, 404],
      inRedis: false,
      expiries: [],
    });
  });

  it("takes a ttl on POST /incr for the counter it creates, and shows its expiry on every host", async () => {
    const namespace = uniqueNamespace();
    await using a = new Host(redis.url, namespace);
    await using b = new Host(redis.url, namespace);
    const answers = [await a.post("incr", { key: "hits", ttl: 60 }), await b.post("incr", { key: "hits", by: 2, ttl: 1 })];
    await caughtUp(redis.url, namespace, [a, b]);
    const expiresAt = await Promise.all([a, b].map(async (host) => (await fetch(`${host.url}get/hits`)).headers.get("x-expires-at")));
    const opened = Number(expiresAt[0]);
    expect({ answers: await Promise.all(answers.map((r) => r.json())), same: expiresAt[1] === expiresAt[0], window: opened - Date.now() / 1000 > 50 }).toEqual({
      answers: [
        { key: "hits", value: 1 },
        { key: "hits", value: 3 },
      ],
      same: true,
      window: true, // the first increment's 60 s, not the second's 1 s
    });
  });
});
