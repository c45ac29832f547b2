/**
 * Replication when things fail: Redis killed (SIGKILL) under load and started again from its
 * append-only file; a replica killed mid-stream and started again; a replica whose position the
 * stream no longer holds.
 */
import { describe, expect, it } from "bun:test";
import { chmodSync, statSync } from "node:fs";
import { KvStore } from "../../src/store.ts";
import { RedisServer } from "../helpers/redis.ts";
import { caughtUp, Host, redisRevision, uniqueNamespace } from "../helpers/replicas.ts";
import { BUN, ServerProcess } from "../helpers/server-process.ts";
import { uniqueName, unlinkQuietly } from "../helpers/shm.ts";
import { waitFor } from "../helpers/wait.ts";

async function converged(url: string, namespace: string, hosts: Host[]): Promise<void> {
  await caughtUp(url, namespace, hosts);
  const [first, ...rest] = hosts.map((host) => host.segment());
  for (const other of rest) expect(other).toEqual(first!);
}

describe("replication under failures", () => {
  it("loses no write answered 200 when Redis is killed under load and restarted, and never stops serving reads", async () => {
    await using redis = await RedisServer.start({ appendonly: true });
    const namespace = uniqueNamespace();
    await using a = new Host(redis.url, namespace);
    await using b = new Host(redis.url, namespace);
    expect((await a.set("steady", "read all along")).status).toBe(200);
    await b.applied(1);
    let writing = true;
    let down = false;
    const readsWhileDown = { ok: 0, failed: 0 };
    const failedReads: number[] = [];
    const readers = [a, b].map(async (host) => {
      while (writing) {
        const status = (await fetch(`${host.url}get/steady`)).status;
        if (status !== 200) failedReads.push(status);
        if (down) readsWhileDown[status === 200 ? "ok" : "failed"]++;
      }
    });
    /** Per host and key, the last value a 200 answered. */
    const answered = new Map<string, number>();
    const statuses = new Set<number>();
    let restarted = false;
    // Each host writes until Redis is back and has taken 10 more of its writes.
    const writer = async (host: Host, tag: string) => {
      for (let i = 0, okAfter = 0; !restarted || okAfter < 10; i++) {
        const key = `${tag}-${i % 30}`;
        const response = await host.set(key, String(i));
        statuses.add(response.status);
        if (response.status === 200) {
          answered.set(key, i);
          if (restarted) okAfter++;
        } else expect({ status: response.status, retryAfter: response.headers.get("retry-after") }).toEqual({ status: 503, retryAfter: "1" });
      }
    };
    const writers = [writer(a, "a"), writer(b, "b")];
    await waitFor(() => answered.size >= 20, { what: "writes before the crash" });
    await redis.kill();
    down = true;
    await waitFor(async () => (await a.health()).replication.state === "disconnected", { what: "a to see Redis gone" });
    await waitFor(() => readsWhileDown.ok >= 20 && statuses.has(503), { what: "reads, and a write refused, while Redis is down" });
    down = false;
    await redis.restart();
    restarted = true;
    await Promise.all(writers);
    writing = false;
    await Promise.all(readers);
    await converged(redis.url, namespace, [a, b]);
    const segment = a.segment();
    const lost = [...answered].filter(([key, i]) => {
      const value = segment.entries.find((e) => e.key === key)?.value;
      return value === undefined || Number(value) < i;
    });
    expect({ lost, failedReads, readsWhileDownFailed: readsWhileDown.failed, sawBoth: [...statuses].sort() }).toEqual({
      lost: [],
      failedReads: [],
      readsWhileDownFailed: 0,
      sawBoth: [200, 503],
    });
    // Redis came back with its data: the replicas went on from where they were, with no reload.
    expect([...a.log, ...b.log].filter((line) => line.includes("loaded revision"))).toEqual([]);
  });

  it("stops a server at once while Redis is gone, and then it serves reads until stopped", async () => {
    await using redis = await RedisServer.start();
    const host = new Host(redis.url, uniqueNamespace());
    try {
      expect((await host.set("k", "v")).status).toBe(200);
      await redis.kill();
      await waitFor(async () => (await host.health()).replication.state === "disconnected", { what: "the host to see Redis gone" });
      const read = await (await fetch(`${host.url}get/k`)).json();
      await host.stop(); // would never finish if it waited for Redis
      expect({ read, closed: host.log.some((line) => line.includes("Connection closed")) }).toEqual({ read: { key: "k", value: "v" }, closed: true });
    } finally {
      unlinkQuietly(host.name);
    }
  });

  it("catches up a replica killed (SIGKILL) mid-stream and started again, from where it stopped", async () => {
    await using redis = await RedisServer.start();
    const namespace = uniqueNamespace();
    await using a = new Host(redis.url, namespace);
    const name = uniqueName();
    const env = { PORT: "0", KV_SHM_NAME: name, KV_MAX_ENTRIES: "500", KV_REPLICATE: redis.url, KV_NAMESPACE: namespace, KV_LOG_REQUESTS: "0" };
    try {
      await using first = new ServerProcess([BUN, "src/server.ts"], { env });
      const firstUrl = await first.url();
      const applied = async (url: string) => ((await (await fetch(`${url}health`)).json()) as { replication: { applied_revision: number } }).replication.applied_revision;
      // Writes go on all along, and 50 more once the replica is dead.
      let killed = false;
      let afterKill = 0;
      const writes = (async () => {
        for (let i = 0; !killed || afterKill++ < 50; i++) expect((await a.set(`k${i % 40}`, String(i))).status).toBe(200);
      })();
      await waitFor(async () => (await applied(firstUrl)) >= 30, { what: "the replica to apply some changes" });
      await first[Symbol.asyncDispose](); // SIGKILL, mid-stream (disposing it again at the end is a no-op)
      killed = true;
      await writes;
      await using second = new ServerProcess([BUN, "src/server.ts"], { env });
      const secondUrl = await second.url();
      const revision = await redisRevision(redis.url, namespace);
      await waitFor(async () => (await applied(secondUrl)) === revision, { what: "the restarted replica to catch up" });
      const b = new Host(redis.url, namespace, name); // only to read its segment: same name
      try {
        expect(b.segment()).toEqual(a.segment());
      } finally {
        await b.stop();
      }
      expect(second.stdout + second.stderr).not.toContain("loaded revision");
    } finally {
      unlinkQuietly(name);
    }
  });

  it("reloads, into a new segment put in place whole, a replica whose position was trimmed from the stream", async () => {
    // Small stream nodes, so that MAXLEN ~ trims after a few entries.
    await using redis = await RedisServer.start({ args: ["--stream-node-max-entries", "4"] });
    const namespace = uniqueNamespace();
    await using a = new Host(redis.url, namespace, undefined, ["--replicate-maxlen", "8"]);
    const b = new Host(redis.url, namespace);
    try {
      expect((await a.set("early", "kept")).status).toBe(200);
      await b.applied(1);
      await b.stop();
      chmodSync(`/dev/shm${b.name}`, 0o640); // shared with the readers' group
      const before = b.segment();
      // A local reader of the old segment, open across the reload.
      using reader = KvStore.open(b.name);
      for (let i = 0; i < 60; i++) expect((await a.set(`k${i % 12}`, String(i))).status).toBe(200);
      expect((await fetch(`${a.url}delete/k0`, { method: "DELETE" })).status).toBe(200);
      await using again = new Host(redis.url, namespace, b.name);
      await converged(redis.url, namespace, [a, again]);
      const reload = again.log.find((line) => line.includes("loaded revision"));
      // The old segment was replaced, never rewritten: its reader still sees the whole old state.
      expect({ before: before.entries, oldReader: reader.status().entries.map((e) => e.key), mode: statSync(`/dev/shm${b.name}`).mode & 0o777, reload, version: again.segment().version }).toEqual({
        before: [{ key: "early", value: "kept", revision: 1 }],
        oldReader: ["early"],
        mode: 0o640,
        reload: expect.stringMatching(/loaded revision 62 of namespace \S+ \(the stream no longer holds revision 2\)/),
        version: 62,
      });
    } finally {
      unlinkQuietly(b.name);
    }
  });
});
