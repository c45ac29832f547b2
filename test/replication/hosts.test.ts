/**
 * Replication through a real Redis: two and three "hosts" (each its own segment and server) on one
 * namespace. Writes on any reach every segment, with the same revisions; compare-and-set is decided
 * once, in Redis; a replica's segment refuses direct writers.
 */
import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { KvError } from "../../src/errors.ts";
import { KvStore } from "../../src/store.ts";
import { kvtool } from "../helpers/kvtool.ts";
import { RedisServer } from "../helpers/redis.ts";
import { caughtUp, Host, redisRevision, uniqueNamespace, watching } from "../helpers/replicas.ts";
import { BUN, ServerProcess } from "../helpers/server-process.ts";
import { uniqueName, unlinkQuietly } from "../helpers/shm.ts";
import { waitFor } from "../helpers/wait.ts";

let redis: RedisServer;

beforeAll(async () => {
  redis = await RedisServer.start();
});

afterAll(async () => {
  await redis[Symbol.asyncDispose]();
});

describe("hosts replicating one namespace", () => {
  it("bring a write on any of three hosts to every other's segment, and end with the same keys, values and revisions", async () => {
    const namespace = uniqueNamespace();
    await using a = new Host(redis.url, namespace);
    await using b = new Host(redis.url, namespace);
    await using c = new Host(redis.url, namespace);
    const hosts = [a, b, c];
    // Each host's first write is read at once on the others' segments.
    for (const [i, host] of hosts.entries()) {
      expect((await host.set(`first-${i}`, `from ${i}`)).status).toBe(200);
    }
    // Then writes from every host at once: sets, overwrites and deletes.
    await Promise.all(
      hosts.map(async (host, i) => {
        for (let n = 0; n < 20; n++) {
          expect((await host.set(`k${n % 7}`, `${i}:${n}`)).status).toBe(200);
          if (n % 5 === 4) expect([200, 404]).toContain((await fetch(`${host.url}delete/k${n % 7}`, { method: "DELETE" })).status);
        }
      }),
    );
    const revision = await caughtUp(redis.url, namespace, hosts);
    const [first, ...rest] = hosts.map((host) => host.segment());
    expect(first!.version).toBe(revision);
    expect(first!.entries.map((e) => e.key)).toEqual(expect.arrayContaining(["first-0", "first-1", "first-2"]));
    for (const other of rest) expect(other).toEqual(first!);
  });

  it("read their own write at once, on the host that wrote it, with Redis's revision as its ETag everywhere", async () => {
    const namespace = uniqueNamespace();
    await using a = new Host(redis.url, namespace);
    await using b = new Host(redis.url, namespace);
    const created = await a.set("mine", "v1", { "if-none-match": "*" });
    const etag = created.headers.get("etag");
    // No wait: answered means applied to a's own segment.
    const read = await fetch(`${a.url}get/mine`);
    expect({ status: created.status, etag, read: await read.json(), readEtag: read.headers.get("etag") }).toEqual({
      status: 200,
      etag: `"${await redisRevision(redis.url, namespace)}"`,
      read: { key: "mine", value: "v1" },
      readEtag: etag,
    });
    await b.applied(Number(JSON.parse(etag!)));
    const onB = await fetch(`${b.url}get/mine`);
    // The ETag b gives is good for a compare-and-set on b.
    const updated = await b.set("mine", "v2", { "if-match": onB.headers.get("etag")! });
    expect({ etagOnB: onB.headers.get("etag"), updated: updated.status }).toEqual({ etagOnB: etag, updated: 200 });
  });

  it("delete a key with '/' sent as it is (DELETE /delete/a/b) on every host, and only that key", async () => {
    const namespace = uniqueNamespace();
    await using a = new Host(redis.url, namespace);
    await using b = new Host(redis.url, namespace);
    for (const key of ["config/db/url", "config/db", "config"]) expect((await a.set(key, `value of ${key}`)).status).toBe(200);
    const deleted = await fetch(`${b.url}delete/config/db/url`, { method: "DELETE", headers: { "if-match": "*" } });
    expect({ status: deleted.status, body: await deleted.json() }).toEqual({
      status: 200,
      body: { success: true, message: "Key 'config/db/url' deleted successfully" },
    });
    const revision = await redisRevision(redis.url, namespace);
    await a.applied(revision);
    const keys = (host: Host) => host.segment().entries.map(({ key }) => key);
    expect({ onA: keys(a), onB: keys(b), read: (await fetch(`${a.url}get/config/db/url`)).status }).toEqual({
      onA: ["config", "config/db"],
      onB: ["config", "config/db"],
      read: 404,
    });
  });

  it("show every host's writes on /watch of every host, in the same order with the same ids", async () => {
    const namespace = uniqueNamespace();
    await using a = new Host(redis.url, namespace);
    await using b = new Host(redis.url, namespace);
    using watchers = await watching([a, b]);
    expect((await a.set("x", "from a")).status).toBe(200);
    expect((await b.set("y", "from b")).status).toBe(200);
    expect((await fetch(`${a.url}delete/y`, { method: "DELETE" })).status).toBe(200);
    const seen = await Promise.all(watchers.map(async (w) => (await w.received(3)).map(({ id, event, data }) => ({ id, event, key: JSON.parse(data).key }))));
    const expected = [
      { id: "1", event: "set", key: "x" },
      { id: "2", event: "set", key: "y" },
      { id: "3", event: "delete", key: "y" },
    ];
    expect(seen).toEqual([expected, expected]);
  });

  it("report the replication on /health and /metrics", async () => {
    await using a = new Host(redis.url, uniqueNamespace());
    expect((await a.set("k", "v")).status).toBe(200);
    expect((await fetch(`${a.url}delete/k`, { method: "DELETE" })).status).toBe(200);
    await a.applied(2);
    const metrics = await (await fetch(`${a.url}metrics`)).text();
    const health = (await a.health()) as unknown as Record<string, unknown>;
    expect({
      health,
      applied: metrics.match(/^shmkv_replication_applied_revision (\d+)$/m)?.[1],
      connected: metrics.match(/^shmkv_replication_connected (\d+)$/m)?.[1],
      lag: /^shmkv_replication_lag_seconds [\d.]+$/m.test(metrics),
    }).toEqual({
      health: {
        status: "ok",
        name: a.name,
        entry_count: 0,
        max_entries: 500,
        memory_bytes: 501 * 336, // chunks of 8 + 63 + 255 bytes, rounded to 16
        memory_used: 0,
        evict: "none",
        lock: { held_for_ms: 0 },
        replication: { state: "following", lag_ms: expect.any(Number), applied_revision: 2, last_error: null },
      },
      applied: "2",
      connected: "1",
      lag: true,
    });
  });

  it("let exactly one compare-and-set win per revision, whichever hosts race for it", async () => {
    const namespace = uniqueNamespace();
    await using a = new Host(redis.url, namespace);
    await using b = new Host(redis.url, namespace);
    await using c = new Host(redis.url, namespace);
    expect((await a.set("counter", "0")).status).toBe(200);
    const wins = new Map<string, number>();
    let total = 0;
    await Promise.all(
      [a, b, c].map(async (host) => {
        for (let n = 0; n < 15; n++) {
          const read = await fetch(`${host.url}get/counter`);
          const etag = read.headers.get("etag")!;
          const { value } = (await read.json()) as { value: string };
          const written = await host.set("counter", String(Number(value) + 1), { "if-match": etag });
          expect([200, 412]).toContain(written.status);
          if (written.status === 200) {
            wins.set(etag, (wins.get(etag) ?? 0) + 1);
            total++;
          }
        }
      }),
    );
    const revision = await caughtUp(redis.url, namespace, [a, b, c]);
    // Increments that each won their revision sum exactly: no lost update.
    expect({ once: [...wins.values()].every((n) => n === 1), value: a.segment().entries }).toEqual({
      once: true,
      value: [{ key: "counter", value: String(total), revision }],
    });
    expect(revision).toBe(total + 1);
  });

  it("refuse direct writes to a replica's segment: KV_EREADONLY from C, READ_ONLY from Bun", async () => {
    await using a = new Host(redis.url, uniqueNamespace());
    expect((await a.set("k", "through the server")).status).toBe(200);
    const fromC = kvtool(a.name, ["set", "k", "directly"]);
    let fromBun: unknown;
    using store = KvStore.open(a.name);
    try {
      store.set("k", "directly");
    } catch (error) {
      fromBun = error instanceof KvError ? { code: error.code, rc: error.rc } : error;
    }
    expect({ exit: fromC.exitCode, says: fromC.stderr.includes("(-30988)"), fromBun, value: store.get("k") }).toEqual({
      exit: 2, // kvtool: a failure other than "not found"
      says: true,
      fromBun: { code: "READ_ONLY", rc: -30988 },
      value: "through the server",
    });
    expect(fromC.stderr).toContain("write through its server");
  });

  it("keep a segment that `shmkv replicate` follows, without HTTP, for C readers on its host", async () => {
    const namespace = uniqueNamespace();
    await using a = new Host(redis.url, namespace);
    expect((await a.set("before", "loaded at start")).status).toBe(200);
    const name = uniqueName();
    try {
      await using replica = new ServerProcess([BUN, "src/cli.ts", "replicate", "--replicate", redis.url, "--namespace", namespace, "--name", name]);
      await replica.printed(/replicating namespace \S+ into/);
      expect((await a.set("after", "followed")).status).toBe(200);
      const read = (key: string) => kvtool(name, ["get", key]).stdout.trim();
      await waitFor(() => read("after") === "followed", { what: "the change to reach the replica" });
      const before = read("before");
      const code = await replica.stop("SIGTERM");
      expect({ before, code, said: replica.stdout.includes("SIGTERM: stopped") }).toEqual({ before: "loaded at start", code: 0, said: true });
    } finally {
      unlinkQuietly(name);
    }
  });
});

describe("a Redis with a password", () => {
  it("is reached with the password in the URL, which the log never shows", async () => {
    await using locked = await RedisServer.start({ args: ["--requirepass", "s3cret-pw"] });
    const url = `redis://:s3cret-pw@127.0.0.1:${locked.port}`;
    await using a = new Host(url, uniqueNamespace());
    const written = await a.set("k", "v");
    expect({ status: written.status, logged: a.log.filter((line) => line.includes("replicating namespace")) }).toEqual({
      status: 200,
      logged: [expect.stringContaining(`through redis://***@127.0.0.1:${locked.port}`)],
    });
    expect(a.log.join("\n")).not.toContain("s3cret-pw");
  });
});
