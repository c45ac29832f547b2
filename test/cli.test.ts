/** The command line: every command, its output (plain and --json) and its exit status. */
import { describe, expect, it } from "bun:test";
import { optionsOf } from "../src/cli.ts";
import { COMMANDS } from "../src/cli/commands.ts";
import { lockTimeoutOf } from "../src/cli/durations.ts";
import { KvStore } from "../src/store.ts";
import { BUN, ROOT } from "./helpers/server-process.ts";
import { cli, storePerTest } from "./helpers/cli.ts";
import { whileStopped } from "./helpers/kvtool.ts";
import { uniqueName, unlinkQuietly } from "./helpers/shm.ts";

const temp = storePerTest();

describe("shmkv get", () => {
  it("prints the value", async () => {
    temp.store.set("k", "v\twith tab");
    expect(await cli(["get", "k"], temp.env)).toEqual({ code: 0, out: ["v\twith tab"], err: [] });
  });

  it("prints {key, value} with --json", async () => {
    temp.store.set("ключ", "значение");
    expect(await cli(["get", "ключ", "--json"], temp.env)).toEqual({ code: 0, out: ['{"key":"ключ","value":"значение"}'], err: [] });
  });

  it("exits 1 for a missing key, with the error as JSON under --json", async () => {
    expect(await cli(["get", "nope"], temp.env)).toEqual({ code: 1, out: [], err: ["shmkv: Key 'nope' not found"] });
    expect(await cli(["get", "nope", "--json"], temp.env)).toEqual({
      code: 1,
      out: [],
      err: ['{"detail":"Key \'nope\' not found","code":"NOT_FOUND"}'],
    });
  });

  it("exits 1 when the store does not exist", async () => {
    const missing = uniqueName();
    expect(await cli(["get", "k", "--name", missing], temp.env)).toEqual({
      code: 1,
      out: [],
      err: [`shmkv: no store named ${missing} (shmkv set or shmkv serve creates it)`],
    });
  });

  it("exits 2 without its key, or with one too many", async () => {
    expect((await cli(["get"], temp.env)).code).toBe(2);
    expect((await cli(["get", "a", "b"], temp.env)).code).toBe(2);
  });
});

describe("a key with control characters", () => {
  const key = "line\nforged\x1b[2J\x7f";
  const escaped = "line\\nforged\\u001b[2J\\u007f";

  it("is stored as it is, and printed escaped, never raw, by set, get and delete", async () => {
    const runs = [
      await cli(["set", key, "v"], temp.env),
      await cli(["delete", key], temp.env),
      await cli(["get", key], temp.env),
      await cli(["delete", key], temp.env),
    ];
    expect(runs).toEqual([
      { code: 0, out: [`Key '${escaped}' set successfully`], err: [] },
      { code: 0, out: [`Key '${escaped}' deleted successfully`], err: [] },
      { code: 1, out: [], err: [`shmkv: Key '${escaped}' not found`] },
      { code: 1, out: [], err: [`shmkv: Key '${escaped}' not found`] },
    ]);
  });

  it("is escaped in status and --json output too", async () => {
    temp.store.set(key, "v");
    const status = await cli(["status"], temp.env);
    const json = await cli(["set", key, "w", "--json"], temp.env);
    expect({
      status: status.out[1]?.replace(/^\S+ {2}/, ""),
      json: JSON.parse(json.out[0] ?? "{}").message,
      raw: [...status.out, ...json.out].some((line) => /[\x00-\x1f\x7f]/.test(line)),
    }).toEqual({ status: `"${escaped}" = "v"`, json: `Key '${escaped}' set successfully`, raw: false });
  });
});

describe("shmkv set", () => {
  it("stores the value and prints the seed's message", async () => {
    expect(await cli(["set", "k", "v"], temp.env)).toEqual({ code: 0, out: ["Key 'k' set successfully"], err: [] });
    expect(temp.store.get("k")).toBe("v");
  });

  it("prints the result with the new revision under --json", async () => {
    expect(await cli(["set", "k", "v", "--json"], temp.env)).toEqual({
      code: 0,
      out: ['{"success":true,"message":"Key \'k\' set successfully","revision":1}'],
      err: [],
    });
  });

  it("creates a missing store with the geometry and mode given", async () => {
    const name = uniqueName();
    try {
      const run = await cli(["set", "k", "v", "--name", name, "--max-entries", "3", "--value-max", "16", "--mode", "0640"], {});
      using store = KvStore.open(name);
      expect({ code: run.code, max: store.maxEntries, valueMax: store.valueMax, value: store.get("k") }).toEqual({
        code: 0,
        max: 3,
        valueMax: 16,
        value: "v",
      });
    } finally {
      unlinkQuietly(name);
    }
  });

  it("exits 1 when the value is over the store's limit", async () => {
    expect(await cli(["set", "k", "€".repeat(86)], temp.env)).toEqual({ code: 1, out: [], err: ["shmkv: value longer than 255 bytes"] });
  });

  it("exits 2 for a bad creation option", async () => {
    const run = await cli(["set", "k", "v", "--max-entries", "many"], temp.env);
    expect({ code: run.code, err: run.err.join("") }).toEqual({ code: 2, err: expect.stringContaining("KV_MAX_ENTRIES") });
  });
});

describe("shmkv delete", () => {
  it("removes the key", async () => {
    temp.store.set("k", "v");
    expect(await cli(["delete", "k"], temp.env)).toEqual({ code: 0, out: ["Key 'k' deleted successfully"], err: [] });
    expect(temp.store.get("k")).toBeUndefined();
  });

  it("exits 1 for a missing key", async () => {
    expect(await cli(["delete", "k"], temp.env)).toEqual({ code: 1, out: [], err: ["shmkv: Key 'k' not found"] });
  });
});

describe("shmkv status", () => {
  it("prints a summary line and one line per entry", async () => {
    temp.store.set("a", "1");
    const run = await cli(["status"], temp.env);
    expect(run).toEqual({
      code: 0,
      out: [
        `${temp.name}: version 1, 1 of 10 entries, keys up to 63 bytes, values up to 255 bytes, memory 336 of 3696 bytes in use, eviction none`,
        expect.stringMatching(/^\d{4}-\d\d-\d\dT\S+Z {2}"a" = "1"$/),
      ],
      err: [],
    });
  });

  it("prints the whole status under --json", async () => {
    temp.store.set("a", "1");
    const run = await cli(["status", "--json"], temp.env);
    expect(JSON.parse(run.out[0] ?? "")).toEqual({
      version: 1,
      entry_count: 1,
      max_entries: 10,
      key_max: 63,
      value_max: 255,
      memory_bytes: 3696,
      memory_used: 336,
      evict: "none",
      entries: [{ key: "a", value: "1", timestamp: expect.any(Number), revision: 1 }],
    });
  });
});

describe("shmkv check", () => {
  it("reports a sound store", async () => {
    expect(await cli(["check", "--json"], temp.env)).toEqual({ code: 0, out: ['{"ok":true}'], err: [] });
  });
});

describe("shmkv unlink", () => {
  it("removes the store's name, and exits 1 when there is none", async () => {
    expect(await cli(["unlink", "--name", temp.name], {})).toEqual({ code: 0, out: [`${temp.name} unlinked`], err: [] });
    expect((await cli(["unlink"], temp.env)).code).toBe(1);
  });
});

describe("shmkv incr", () => {
  it("adds 1, or BY (negative too), and prints the new value; a missing key counts as 0", async () => {
    const runs = [await cli(["incr", "n"], temp.env), await cli(["incr", "n", "41"], temp.env), await cli(["incr", "n", "-50"], temp.env)];
    expect(runs).toEqual([
      { code: 0, out: ["1"], err: [] },
      { code: 0, out: ["42"], err: [] },
      { code: 0, out: ["-8"], err: [] },
    ]);
    expect(temp.store.get("n")).toBe("-8");
  });

  it("prints {key, value} with --json, the value's digits exact beyond 2^53", async () => {
    temp.store.set("n", "9007199254740993");
    expect(await cli(["incr", "n", "--json"], temp.env)).toEqual({ code: 0, out: ['{"key":"n","value":9007199254740994}'], err: [] });
  });

  it("exits 1 for a value that is no integer, or a sum beyond int64, changing nothing", async () => {
    temp.store.set("name", "alice");
    temp.store.set("max", "9223372036854775807");
    const runs = [await cli(["incr", "name", "--json"], temp.env), await cli(["incr", "max", "--json"], temp.env)];
    expect(runs.map((r) => [r.code, JSON.parse(r.err[0] ?? "{}").code])).toEqual([
      [1, "NOT_A_NUMBER"],
      [1, "ERANGE"],
    ]);
    expect([temp.store.get("name"), temp.store.get("max")]).toEqual(["alice", "9223372036854775807"]);
  });

  it("exits 2 without a key, with a BY that is no integer, or with too many arguments", async () => {
    const codes = await Promise.all([["incr"], ["incr", "n", "x"], ["incr", "n", "1.5"], ["incr", "n", "1", "2"]].map(async (a) => (await cli(a, temp.env)).code));
    expect(codes).toEqual([2, 2, 2, 2]);
    expect(temp.store.version).toBe(0);
  });
});

describe("shmkv keys", () => {
  it("prints the keys one a line, those with --prefix P, at most --limit N, as a JSON array with --json", async () => {
    for (const key of ["user:1", "other", "user:2", "user:3"]) temp.store.set(key, "v");
    expect(await cli(["keys"], temp.env)).toEqual({ code: 0, out: ["user:1", "other", "user:2", "user:3"], err: [] });
    expect(await cli(["keys", "--prefix", "user:", "--limit", "2"], temp.env)).toEqual({ code: 0, out: ["user:1", "user:2"], err: [] });
    expect(await cli(["keys", "--prefix", "user:", "--json"], temp.env)).toEqual({ code: 0, out: ['["user:1","user:2","user:3"]'], err: [] });
    expect(await cli(["keys", "--prefix", "none", "--json"], temp.env)).toEqual({ code: 0, out: ["[]"], err: [] });
  });

  it("escapes a key's control characters", async () => {
    temp.store.set("evil\x1b[2Jkey", "v");
    expect(await cli(["keys"], temp.env)).toEqual({ code: 0, out: ["evil\\u001b[2Jkey"], err: [] });
  });

  it("exits 2 for a bad --limit or an argument, and takes no --since", async () => {
    const codes = await Promise.all([["keys", "--limit", "0"], ["keys", "--limit", "x"], ["keys", "k"], ["keys", "--since", "1"]].map(async (a) => (await cli(a, temp.env)).code));
    expect(codes).toEqual([2, 2, 2, 2]);
  });
});

describe("usage", () => {
  it("prints help with --help, and exits 2 with none given", async () => {
    const help = await cli(["--help"]);
    expect({ code: help.code, lists: ["serve", "get", "set", "delete", "incr", "keys", "status", "check", "unlink"].every((c) => help.out[0]?.includes(`  ${c} `)) })
      .toEqual({ code: 0, lists: true });
    expect((await cli([])).code).toBe(2);
  });

  it("prints a command's help", async () => {
    expect(await cli(["get", "--help"])).toEqual({
      code: 0,
      out: [
        [
          "Usage: shmkv get KEY [options]",
          "print the value of KEY (exit 1 when it is missing)",
          "",
          "Options:",
          '  --name NAME         the store, "/name" (default: $KV_SHM_NAME, else /shared_memory_kv)',
          '  --json              print results (and errors, as {"detail", "code"}) as JSON',
          "  --help              this text",
          "  --trust-segment-owner  open the store even when another user owns it or others may write it",
          "                      (or KV_TRUST_SEGMENT_OWNER=1; see docs/security.md)",
          "  --lock-timeout DURATION  how long to wait for another process's hold of the store's lock, then",
          "                      fail (or KV_LOCK_TIMEOUT; default 10s; 0: do not wait)",
        ].join("\n"),
      ],
      err: [],
    });
  });

  it("lists, in each command's help, every option that command takes", async () => {
    const missing: string[] = [];
    for (const [name, command] of Object.entries(COMMANDS)) {
      const help = (await cli([name, "--help"])).out.join("\n");
      for (const flag of Object.keys(optionsOf(command))) if (!help.includes(`  --${flag} `)) missing.push(`${name} --${flag}`);
    }
    expect(missing).toEqual([]);
    // And takes none it does not list.
    expect((await cli(["get", "k", "--max-entries", "5"], temp.env)).err[0]?.split("\n")[0]).toBe("shmkv: get takes no --max-entries");
  });

  it("exits 2 for an unknown command, an unknown option and a bad store name", async () => {
    expect((await cli(["frobnicate"])).code).toBe(2);
    expect((await cli(["status", "--verbose"], temp.env)).code).toBe(2);
    expect((await cli(["status", "--name", "no-slash"])).code).toBe(2);
  });
});

describe("the shmkv process", () => {
  it("exits with the command's status", () => {
    const run = (...args: string[]) =>
      Bun.spawnSync([BUN, "src/cli.ts", ...args], { cwd: ROOT, env: { ...process.env, KV_SHM_NAME: temp.name } });
    const set = run("set", "k", "v");
    const got = run("get", "k");
    expect([set.exitCode, got.exitCode, got.stdout.toString(), run("get", "x").exitCode, run("nope").exitCode]).toEqual([
      0,
      0,
      "v\n",
      1,
      2,
    ]);
  });
});

describe("shmkv set and delete with a condition", () => {
  it("set --if-revision N writes only while KEY is at revision N", async () => {
    const revision = temp.store.set("k", "one");
    expect(await cli(["set", "k", "two", "--if-revision", String(revision)], temp.env)).toEqual({
      code: 0,
      out: ["Key 'k' set successfully"],
      err: [],
    });
    expect(await cli(["set", "k", "three", "--if-revision", String(revision)], temp.env)).toEqual({
      code: 1,
      out: [],
      err: ['shmkv: cannot set "k": it is at revision 2 (expected revision 1)'],
    });
    expect(temp.store.get("k")).toBe("two");
  });

  it("set --if-absent creates KEY only when it is missing, with the conflict as JSON under --json", async () => {
    expect((await cli(["set", "k", "first", "--if-absent"], temp.env)).code).toBe(0);
    expect(await cli(["set", "k", "second", "--if-absent", "--json"], temp.env)).toEqual({
      code: 1,
      out: [],
      err: ['{"detail":"cannot set \\"k\\": it exists (revision 1)","code":"CONFLICT"}'],
    });
    expect(temp.store.get("k")).toBe("first");
  });

  it("delete --if-revision N removes KEY only while it is at revision N", async () => {
    temp.store.set("k", "one");
    temp.store.set("k", "two");
    expect(await cli(["delete", "k", "--if-revision", "1"], temp.env)).toEqual({
      code: 1,
      out: [],
      err: ['shmkv: cannot delete "k": it is at revision 2 (expected revision 1)'],
    });
    expect(await cli(["delete", "k", "--if-revision", "2"], temp.env)).toEqual({ code: 0, out: ["Key 'k' deleted successfully"], err: [] });
  });

  it("exits 2 for a bad revision, both conditions, or a condition a command does not take", async () => {
    const usage = async (argv: string[]) => {
      const run = await cli(argv, temp.env);
      return { code: run.code, err: run.err[0]?.split("\n")[0] };
    };
    expect([
      await usage(["set", "k", "v", "--if-revision", "0"]),
      await usage(["set", "k", "v", "--if-revision", "1", "--if-absent"]),
      await usage(["delete", "k", "--if-absent"]),
      await usage(["get", "k", "--if-revision", "1"]),
    ]).toEqual([
      { code: 2, err: expect.stringContaining("--if-revision must be a revision of 1 or more") },
      { code: 2, err: "shmkv: give --if-revision or --if-absent, not both" },
      { code: 2, err: "shmkv: delete takes no --if-absent" },
      { code: 2, err: "shmkv: get takes no --if-revision" },
    ]);
    expect(temp.store.count).toBe(0);
  });
});

describe("a writer stopped holding the store's lock", () => {
  const busy = (command: string, waited: number) =>
    `shmkv: cannot ${command}: store busy: another process holds the write lock (try again later) ` +
    `(waited ${waited} ms: --lock-timeout (KV_LOCK_TIMEOUT) waits longer)`;

  it("fails a write and a resize after --lock-timeout or KV_LOCK_TIMEOUT, changing nothing", async () => {
    const capacity = temp.store.maxEntries;
    // A kvtool writer stopped inside the lock, half-way through a set of "held".
    const { result: runs } = await whileStopped(temp.name, ["set", "held", "x"], 4, async () => [
      await cli(["set", "k", "v", "--lock-timeout", "50ms"], temp.env),
      await cli(["resize", "--max-entries", "20", "--lock-timeout", "0"], temp.env),
      await cli(["delete", "k"], { ...temp.env, KV_LOCK_TIMEOUT: "0.05" }),
    ]);
    expect(runs).toEqual([
      { code: 1, out: [], err: [busy('set "k"', 50)] },
      { code: 1, out: [], err: [busy(`resize ${temp.name}`, 0)] },
      { code: 1, out: [], err: [busy('delete "k"', 50)] },
    ]);
    // The stopped writer's own set completes once it goes on.
    expect([temp.store.maxEntries, temp.store.get("k"), temp.store.get("held")]).toEqual([capacity, undefined, "x"]);
  });

  it("waits 10 s by default, and refuses a --lock-timeout that is no duration", async () => {
    expect(lockTimeoutOf({}, {})).toBe(10_000);
    const refused = await cli(["set", "k", "v", "--lock-timeout", "soon"], temp.env);
    expect(refused).toEqual({
      code: 2,
      out: [],
      err: [
        'shmkv: KV_LOCK_TIMEOUT (--lock-timeout) must be a duration of 0 or more, a number with a unit of ms, s, m or h (250ms, 30s) or of seconds (10), not "soon"\n' +
          "(shmkv set --help tells how to use it)",
      ],
    });
  });
});
