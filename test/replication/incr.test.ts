/**
 * POST /incr and DELETE /keys on replicated hosts: each runs in Redis (a Lua script), so increments
 * from every host at once sum exactly, and a deletion by prefix reaches every host's segment.
 */
import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { RedisClient } from "bun";
import { RedisServer } from "../helpers/redis.ts";
import { caughtUp, Host, redisRevision, uniqueNamespace } from "../helpers/replicas.ts";

let redis: RedisServer;

beforeAll(async () => {
  redis = await RedisServer.start();
});

afterAll(async () => {
  await redis[Symbol.asyncDispose]();
});

/** Status and parsed body. */
async function answered(response: Promise<Response>): Promise<{ status: number; body: unknown }> {
  const r = await response;
  return { status: r.status, body: await r.json() };
}

describe("POST /incr on replicated hosts", () => {
  it("sums increments from three hosts at once exactly, on every host", async () => {
    const namespace = uniqueNamespace();
    await using a = new Host(redis.url, namespace);
    await using b = new Host(redis.url, namespace);
    await using c = new Host(redis.url, namespace);
    const hosts = [a, b, c];
    // Four clients per host, each 25 increments by its host's step: 1, 2, -4.
    const statuses = await Promise.all(
      hosts.flatMap((host, i) =>
        Array.from({ length: 4 }, async () => {
          const got: number[] = [];
          for (let n = 0; n < 25; n++) got.push((await host.post("incr", { key: "hits", by: [1, 2, -4][i] })).status);
          return got;
        }),
      ),
    );
    const revision = await caughtUp(redis.url, namespace, hosts);
    const expected = { version: revision, entries: [{ key: "hits", value: String(100 * (1 + 2 - 4)), revision }] };
    expect({ statuses: [...new Set(statuses.flat())], revision, segments: hosts.map((h) => h.segment()) }).toEqual({
      statuses: [200],
      revision: 300,
      segments: [expected, expected, expected],
    });
  });

  it("answers the value and Redis's revision, exact over int64, read at once on the host that wrote", async () => {
    const namespace = uniqueNamespace();
    await using a = new Host(redis.url, namespace);
    await using b = new Host(redis.url, namespace);
    const first = await a.post("incr", { key: "n", by: "9223372036854775806" });
    const second = await b.post("incr", { key: "n" });
    expect({
      first: [first.status, first.headers.get("etag"), await first.text()],
      second: [second.status, second.headers.get("etag"), await second.text()],
      readOnB: await (await fetch(`${b.url}get/n`)).json(),
    }).toEqual({
      first: [200, '"1"', '{"key":"n","value":9223372036854775806}'],
      second: [200, '"2"', '{"key":"n","value":9223372036854775807}'],
      readOnB: { key: "n", value: "9223372036854775807" },
    });
    await caughtUp(redis.url, namespace, [a, b]);
    expect(a.segment()).toEqual(b.segment());
  });

  it("refuses a value that is no integer (409 NOT_A_NUMBER) and an overflow (409 ERANGE), writing nothing in Redis", async () => {
    const namespace = uniqueNamespace();
    await using a = new Host(redis.url, namespace);
    expect((await a.set("name", "alice")).status).toBe(200);
    expect((await a.set("padded", "007")).status).toBe(200);
    expect((await a.post("incr", { key: "max", by: "9223372036854775807" })).status).toBe(200);
    const refusals = await Promise.all([
      answered(a.post("incr", { key: "name" })),
      answered(a.post("incr", { key: "padded" })),
      answered(a.post("incr", { key: "max" })),
    ]);
    expect(refusals.map(({ status, body }) => [status, (body as { code: string }).code])).toEqual([
      [409, "NOT_A_NUMBER"],
      [409, "NOT_A_NUMBER"],
      [409, "ERANGE"],
    ]);
    const client = new RedisClient(redis.url);
    try {
      // No revision taken, and INCR's scratch key left behind by none of them.
      expect([await redisRevision(redis.url, namespace), await client.exists(`{${namespace}}:incr`)]).toEqual([3, false]);
    } finally {
      client.close();
    }
  });
});

describe("DELETE /keys on replicated hosts", () => {
  it("deletes the prefix's keys in Redis, each a change of its own, and every host's segment follows", async () => {
    const namespace = uniqueNamespace();
    await using a = new Host(redis.url, namespace);
    await using b = new Host(redis.url, namespace);
    for (let i = 0; i < 30; i++) expect((await (i % 2 ? a : b).set(i % 3 ? `tmp:${i}` : `keep:${i}`, "v")).status).toBe(200);
    const deleted = await answered(fetch(`${b.url}keys?prefix=tmp%3A`, { method: "DELETE" }));
    // Answered means b's own segment holds every delete already.
    const onB = b.segment().entries.map((e) => e.key);
    const revision = await caughtUp(redis.url, namespace, [a, b]);
    expect({ deleted, onB: onB.every((k) => k.startsWith("keep:")), count: onB.length, revision }).toEqual({
      deleted: { status: 200, body: { deleted: 20 } },
      onB: true,
      count: 10,
      revision: 50,
    });
    expect(a.segment()).toEqual(b.segment());
    expect(await answered(fetch(`${a.url}keys?all=1`, { method: "DELETE" }))).toEqual({ status: 200, body: { deleted: 10 } });
    await caughtUp(redis.url, namespace, [a, b]);
    expect([a.segment().entries, b.segment().entries]).toEqual([[], []]);
  });
});
