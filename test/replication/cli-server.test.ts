/**
 * The CLI's writes sent to a server (`--server URL`, KV_SERVER) in place of the segment: the way to
 * write to a replica from the command line. Against two replicating hosts and a real Redis, and a
 * plain server with a token.
 */
import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { startServer } from "../../src/server.ts";
import { KvStore } from "../../src/store.ts";
import { cli } from "../helpers/cli.ts";
import { RedisServer } from "../helpers/redis.ts";
import { Host, uniqueNamespace } from "../helpers/replicas.ts";
import { uniqueName, unlinkQuietly } from "../helpers/shm.ts";

let redis: RedisServer;

beforeAll(async () => {
  redis = await RedisServer.start();
});

afterAll(async () => {
  await redis[Symbol.asyncDispose]();
});

/** An entry of a segment, read directly. */
function entryOf(name: string, key: string) {
  using store = KvStore.open(name);
  const entry = store.getEntry(key);
  return entry && { value: entry.value, revision: entry.revision };
}

describe("shmkv set, delete and incr with --server", () => {
  it("write through a replica's server, so every host's segment gets the write with Redis's revision", async () => {
    const namespace = uniqueNamespace();
    await using a = new Host(redis.url, namespace);
    await using b = new Host(redis.url, namespace);
    const server = ["--server", a.url];
    expect(await cli(["set", "k", "v1", ...server])).toEqual({ code: 0, out: ["Key 'k' set successfully"], err: [] });
    // Read-your-writes on the host that wrote: its segment holds the write once the CLI is answered.
    expect(entryOf(a.name, "k")).toEqual({ value: "v1", revision: 1 });
    expect(await cli(["set", "k", "v2", "--if-revision", "1", "--json", ...server])).toEqual({
      code: 0,
      out: ['{"success":true,"message":"Key \'k\' set successfully","revision":2}'],
      err: [],
    });
    expect(await cli(["incr", "hits", "5", ...server])).toEqual({ code: 0, out: ["5"], err: [] });
    expect(await cli(["incr", "hits", "-2", "--json", ...server], {})).toEqual({ code: 0, out: ['{"key":"hits","value":3}'], err: [] });
    expect(await cli(["delete", "hits", ...server])).toEqual({ code: 0, out: ["Key 'hits' deleted successfully"], err: [] });
    await b.applied(5);
    expect({ a: a.segment(), b: b.segment() }).toEqual({
      a: { version: 5, entries: [{ key: "k", value: "v2", revision: 2 }] },
      b: { version: 5, entries: [{ key: "k", value: "v2", revision: 2 }] },
    });
  });

  it("send --ttl with set and incr, so every host's segment holds the expiry Redis gave", async () => {
    const namespace = uniqueNamespace();
    await using a = new Host(redis.url, namespace);
    await using b = new Host(redis.url, namespace);
    const server = ["--server", a.url];
    const before = Date.now();
    const answered = [await cli(["set", "session", "t", "--ttl", "30s", ...server]), await cli(["incr", "hits", "--ttl", "1m", ...server])];
    const after = Date.now();
    await b.applied(2);
    using store = KvStore.open(b.name);
    const within = (key: string, ttl: number) => {
      const at = store.getEntry(key)?.expiresAt ?? 0;
      return at >= before + ttl && at <= after + ttl;
    };
    expect({ answered, session: within("session", 30_000), hits: within("hits", 60_000) }).toEqual({
      answered: [
        { code: 0, out: ["Key 'session' set successfully"], err: [] },
        { code: 0, out: ["1"], err: [] },
      ],
      session: true,
      hits: true,
    });
  });

  it("say what the server refused, with its code, and exit 1", async () => {
    await using a = new Host(redis.url, uniqueNamespace());
    const env = { KV_SERVER: a.url };
    expect(await cli(["set", "k", "v"], env)).toMatchObject({ code: 0 });
    const origin = new URL(a.url).origin;
    expect({
      conflict: await cli(["set", "k", "w", "--if-revision", "7"], env),
      missing: await cli(["delete", "nothing", "--json"], env),
      notNumber: await cli(["incr", "k"], env),
    }).toEqual({
      conflict: { code: 1, out: [], err: [`shmkv: ${origin}: Key 'k' is at revision 1: the condition does not hold`] },
      missing: { code: 1, out: [], err: [`{"detail":"${origin}: Key 'nothing' not found","code":"NOT_FOUND"}`] },
      notNumber: { code: 1, out: [], err: [expect.stringContaining(`shmkv: ${origin}: `)] },
    });
    expect(entryOf(a.name, "k")).toEqual({ value: "v", revision: 1 });
  });
});

describe("--server against a server with a token", () => {
  it("sends KV_API_TOKEN, and without it gets the server's 401 as UNAUTHORIZED", async () => {
    const name = uniqueName();
    const server = startServer(
      { host: "127.0.0.1", port: 0, name, create: {}, maxBodyBytes: 65536, logRequests: false, token: "s3cret-t0ken" },
      { info: () => {}, error: () => {} },
    );
    try {
      const flags = ["--server", server.url, "--json"];
      expect({
        without: await cli(["set", "k", "v", ...flags]),
        with: await cli(["set", "k", "v", ...flags], { KV_API_TOKEN: "s3cret-t0ken" }),
      }).toEqual({
        without: { code: 1, out: [], err: [expect.stringContaining('"code":"UNAUTHORIZED"')] },
        with: { code: 0, out: ['{"success":true,"message":"Key \'k\' set successfully","revision":1}'], err: [] },
      });
    } finally {
      await server.stop();
      unlinkQuietly(name);
    }
  });
});

describe("--server refused before anything is sent", () => {
  it("takes only an http(s) URL, no creation option, and says when the server cannot be reached", async () => {
    const name = uniqueName();
    const result = {
      scheme: await cli(["set", "k", "v", "--server", "redis://127.0.0.1:6379"]),
      creation: await cli(["set", "k", "v", "--server", "http://127.0.0.1:1", "--max-entries", "5"]),
      tokenAlone: await cli(["set", "k", "v", "--token-file", "/nonexistent", "--name", name]),
      unreachable: await cli(["set", "k", "v", "--server", "http://127.0.0.1:1", "--json"]),
    };
    expect(result).toEqual({
      scheme: { code: 2, out: [], err: [expect.stringContaining("KV_SERVER (--server) must be the http:// or https:// address")] },
      creation: { code: 2, out: [], err: [expect.stringContaining("--max-entries shapes a store the CLI creates")] },
      tokenAlone: { code: 2, out: [], err: [expect.stringContaining("--token-file goes with --server")] },
      unreachable: { code: 1, out: [], err: [expect.stringContaining('"code":"SERVER_UNREACHABLE"')] },
    });
    expect(() => KvStore.open(name)).toThrow();
  });
});
