/** The command line's expiry and eviction: set and incr --ttl, where expiry shows, --evict and KV_EVICT. */
import { describe, expect, it } from "bun:test";
import { startServer } from "../src/server.ts";
import { KvStore } from "../src/store.ts";
import { cli, storePerTest } from "./helpers/cli.ts";
import { uniqueName, unlinkQuietly } from "./helpers/shm.ts";
import { waitFor } from "./helpers/wait.ts";

const temp = storePerTest();

/** Run the CLI, and whether the entry `key` it wrote expires `ms` after the run (give or take the run itself). */
async function expiresAfter(argv: string[], key: string, ms: number) {
  const before = Date.now();
  const run = await cli(argv, temp.env);
  const after = Date.now();
  const expiresAt = temp.store.getEntry(key)?.expiresAt ?? Number.NaN;
  return { code: run.code, inRange: expiresAt >= before + ms && expiresAt <= after + ms };
}

/** Wait until `key` is gone from the store: it has expired. */
async function expired(key: string): Promise<void> {
  await waitFor(() => temp.store.get(key) === undefined, { what: `${key} to expire` });
}

describe("shmkv set --ttl", () => {
  it.each([
    ["250ms", 250],
    ["30s", 30_000],
    ["1.5m", 90_000],
    ["2h", 7_200_000],
    ["45", 45_000],
    ["0.5", 500],
  ])("--ttl %s: the entry expires %d ms after the set", async (ttl, ms) => {
    expect(await expiresAfter(["set", "k", "v", "--ttl", ttl], "k", ms)).toEqual({ code: 0, inRange: true });
  });

  it("makes an entry that get no longer finds once it expired (exit 1)", async () => {
    expect((await cli(["set", "k", "v", "--ttl", "30ms"], temp.env)).code).toBe(0);
    await expired("k");
    expect(await cli(["get", "k"], temp.env)).toEqual({ code: 1, out: [], err: ["shmkv: Key 'k' not found"] });
  });

  it("with --if-absent takes a lock that frees itself once it expired", async () => {
    const take = () => cli(["set", "lock", "me", "--if-absent", "--ttl", "30ms"], temp.env);
    expect([(await take()).code, (await take()).code]).toEqual([0, 1]);
    await expired("lock");
    expect((await take()).code).toBe(0);
  });

  it("set again without --ttl never expires", async () => {
    await cli(["set", "k", "v", "--ttl", "30s"], temp.env);
    await cli(["set", "k", "w"], temp.env);
    expect(temp.store.getEntry("k")?.expiresAt).toBeUndefined();
  });

  it.each(["0", "0s", "0.4ms", "30d", "1e3", "ten", "", "87601h"])("exits 2 for --ttl %p, writing nothing", async (ttl) => {
    const run = await cli(["set", "k", "v", "--ttl", ttl], temp.env);
    expect({ code: run.code, err: run.err[0]?.split("\n")[0], version: temp.store.version }).toEqual({
      code: 2,
      err: `shmkv: --ttl must be a duration from 1ms to ten years, a number with a unit of ms, s, m or h (30s, 1.5h) or of seconds (30), not ${JSON.stringify(ttl)}`,
      version: 0,
    });
  });

  it("takes up to ten years", async () => {
    expect(await expiresAfter(["set", "k", "v", "--ttl", "87600h"], "k", 87_600 * 3_600_000)).toEqual({ code: 0, inRange: true });
  });
});

describe("shmkv incr --ttl", () => {
  it("gives a counter it creates an expiry, which later increments keep", async () => {
    expect(await expiresAfter(["incr", "hits", "--ttl", "1m"], "hits", 60_000)).toEqual({ code: 0, inRange: true });
    const first = temp.store.getEntry("hits")?.expiresAt;
    const runs = [await cli(["incr", "hits", "5", "--ttl", "1h"], temp.env), await cli(["incr", "hits"], temp.env)];
    expect({ out: runs.map((r) => r.out[0]), expiresAt: temp.store.getEntry("hits")?.expiresAt }).toEqual({ out: ["6", "7"], expiresAt: first });
  });

  it("counts from 0 again once the counter expired, and takes a negative BY beside --ttl", async () => {
    await cli(["incr", "rate", "-3", "--ttl", "30ms"], temp.env);
    await expired("rate");
    expect((await cli(["incr", "rate", "--ttl", "30s"], temp.env)).out).toEqual(["1"]);
  });

  it("exits 2 for a bad --ttl, writing nothing", async () => {
    expect([(await cli(["incr", "n", "--ttl", "soon"], temp.env)).code, temp.store.version]).toEqual([2, 0]);
  });
});

describe("where the CLI shows an expiry", () => {
  it("get --json, status and status --json show when an entry expires, as /status does", async () => {
    temp.store.set("brief", "v", { ttl: 60_000 });
    temp.store.set("stays", "w");
    const expiresAt = temp.store.getEntry("brief")!.expiresAt!;
    const status = await cli(["status"], temp.env);
    const json = JSON.parse((await cli(["status", "--json"], temp.env)).out[0] ?? "{}") as { evict: string; entries: unknown[] };
    expect({
      get: (await cli(["get", "brief", "--json"], temp.env)).out,
      plain: (await cli(["get", "stays", "--json"], temp.env)).out,
      status: status.out.slice(1),
      json: [json.evict, json.entries],
    }).toEqual({
      get: [JSON.stringify({ key: "brief", value: "v", expires_at: expiresAt / 1000 })],
      plain: ['{"key":"stays","value":"w"}'],
      status: [expect.stringMatching(new RegExp(`  "brief" = "v"  \\(expires ${new Date(expiresAt).toISOString()}\\)$`)), expect.stringMatching(/ {2}"stays" = "w"$/)],
      json: [
        "none",
        [
          { key: "brief", value: "v", timestamp: expect.any(Number), revision: 1, expires_at: expiresAt / 1000 },
          { key: "stays", value: "w", timestamp: expect.any(Number), revision: 2 },
        ],
      ],
    });
  });
});

describe("--evict", () => {
  it("creates a store that evicts the least recently used entries when full, as KV_EVICT does", async () => {
    const [flagged, variable] = [uniqueName(), uniqueName()];
    try {
      expect((await cli(["set", "a", "1", "--name", flagged, "--evict", "lru", "--max-entries", "2"], {})).code).toBe(0);
      expect((await cli(["incr", "n", "--name", variable], { KV_EVICT: "lru" })).code).toBe(0);
      const more = await Promise.all(["b", "c", "d"].map(async (key) => (await cli(["set", key, "1", "--name", flagged], {})).code));
      using store = KvStore.open(flagged);
      using other = KvStore.open(variable);
      const summary = (await cli(["status", "--name", flagged], {})).out[0];
      expect({ more, evict: [store.evict, other.evict], count: store.count, summary }).toEqual({
        more: [0, 0, 0],
        evict: ["lru", "lru"],
        count: 2,
        summary: `${flagged}: version 6, 2 of 2 entries, keys up to 63 bytes, values up to 255 bytes, memory 672 of 1008 bytes in use, eviction lru`,
      });
    } finally {
      unlinkQuietly(flagged);
      unlinkQuietly(variable);
    }
  });

  it("on an existing store with another policy warns, naming the resize that changes it, which keeps every entry", async () => {
    temp.store.set("k", "v");
    expect(await cli(["set", "k2", "v", "--evict", "lru"], temp.env)).toEqual({
      code: 0,
      out: ["Key 'k2' set successfully"],
      err: [
        `shmkv: warning: ${temp.name} exists with 10 entries, 63 bytes of key, 255 bytes of value, eviction none; asked for eviction lru: ` +
          `the existing segment is used as it is (to change it, keeping every entry: shmkv resize --name ${temp.name} --evict lru)`,
      ],
    });
    const resize = await cli(["resize", "--evict", "lru"], temp.env);
    expect({ resize, evict: temp.store.evict, keys: temp.store.keysFrom(0, 10).items }).toEqual({
      resize: {
        code: 0,
        out: [
          `${temp.name} resized: 10 entries, keys up to 63 bytes, values up to 255 bytes, memory 3696 bytes -> 10 entries, keys up to 63 bytes, ` +
            "values up to 255 bytes, memory 3696 bytes; eviction none -> lru; 2 entries kept, version 2",
        ],
        err: [],
      },
      evict: "lru",
      keys: ["k", "k2"],
    });
  });

  it("exits 2 for a policy other than none or lru, and with --replicate for lru", async () => {
    const bad = await cli(["set", "k", "v", "--evict", "random"], temp.env);
    const replica = await cli(["replicate", "--replicate", "redis://127.0.0.1:1", "--evict", "lru", "--name", temp.name], {});
    expect({ bad: [bad.code, bad.err[0]?.split("\n")[0]], replica: [replica.code, replica.err[0]?.split("\n")[0]] }).toEqual({
      bad: [2, 'shmkv: KV_EVICT (--evict) must be none or lru, not "random"'],
      replica: [2, expect.stringMatching(/^shmkv: KV_EVICT \(--evict\) lru cannot go with --replicate/)],
    });
  });
});

describe("--ttl with --server", () => {
  it("sends the ttl to the server in seconds, for set and incr; --evict goes with no server", async () => {
    const quiet = { info: () => {}, error: () => {} };
    const server = startServer({ host: "127.0.0.1", port: 0, name: temp.name, create: {}, maxBodyBytes: 1024, logRequests: false }, quiet);
    try {
      const remote = ["--server", server.url];
      expect(await expiresAfter(["set", "k", "v", "--ttl", "1.5s", ...remote], "k", 1500)).toEqual({ code: 0, inRange: true });
      expect(await expiresAfter(["incr", "n", "--ttl", "250ms", ...remote], "n", 250)).toEqual({ code: 0, inRange: true });
      const refused = await cli(["set", "k", "v", "--evict", "lru", ...remote], temp.env);
      expect([refused.code, refused.err[0]?.split("\n")[0]]).toEqual([2, "shmkv: --evict shapes a store the CLI creates: a write sent with --server creates none"]);
    } finally {
      await server.stop();
    }
  });
});
