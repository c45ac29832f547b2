/**
 * A segment owned by someone else, or that others may write, is not trusted: the binding refuses it
 * when asked (checkOwner, the library's KV_CHECK_OWNER), the CLI and the server always unless told
 * --trust-segment-owner. The tests run as root (as CI does), which may hand a file to `nobody`.
 */
import { afterEach, beforeEach, describe, expect, it } from "bun:test";
import { chmodSync, existsSync, rmSync } from "node:fs";
import { main } from "../src/cli.ts";
import { KvError } from "../src/errors.ts";
import { serverConfig, type Env } from "../src/config.ts";
import { startServer, type Logger } from "../src/server.ts";
import { KvStore } from "../src/store.ts";
import { foreignOwner, TempStore, uniqueName } from "./helpers/shm.ts";

/** The segment as `nobody` would have left it (its own, mode 0600), holding what it planted. */
let foreign: TempStore;
/** A segment of ours that every user may write. */
let open: TempStore;

beforeEach(() => {
  foreign = new TempStore();
  foreign.store.set("greeting", "planted by nobody");
  foreignOwner(foreign.name);
  open = new TempStore();
  open.store.set("greeting", "written by anyone");
  chmodSync(`/dev/shm${open.name}`, 0o666);
});

afterEach(() => {
  foreign[Symbol.dispose]();
  open[Symbol.dispose]();
});

function refusal(name: string, owner: string, mode: string): string {
  const path = `/dev/shm${name}`;
  return (
    `refusing ${path}: it is owned by ${owner}, mode ${mode}; this process runs as uid 0 (root), and trusts only a ` +
    "segment of its own that others may not write (another user could have made it to read or change the store). " +
    `Remove it, or make it yours (chown 0 ${path}; chmod o-w ${path}); or, when it is shared on purpose, trust it ` +
    "with --trust-segment-owner (KV_TRUST_SEGMENT_OWNER=1)"
  );
}

/** What KvStore.open throws, as {code, message}; or "opened". */
function opening(name: string, options: Parameters<typeof KvStore.open>[1]): { code: string; message: string } | "opened" {
  try {
    KvStore.open(name, options).close();
    return "opened";
  } catch (error) {
    if (!(error instanceof KvError)) throw error;
    return { code: error.code, message: error.message };
  }
}

describe("KvStore.open with checkOwner", () => {
  it("refuses a segment another user owns, naming its owner, its mode and the fix", () => {
    expect(opening(foreign.name, { checkOwner: true })).toEqual({ code: "UNTRUSTED", message: refusal(foreign.name, "uid 65534 (nobody)", "0600") });
    expect(opening(foreign.name, { checkOwner: true, create: true })).toEqual({
      code: "UNTRUSTED",
      message: refusal(foreign.name, "uid 65534 (nobody)", "0600"),
    });
  });

  it("refuses a segment of its own that others may write", () => {
    expect(opening(open.name, { checkOwner: true })).toEqual({ code: "UNTRUSTED", message: refusal(open.name, "uid 0 (root)", "0666") });
  });

  it("opens its own segment, group-writable too, and either one without the check", () => {
    using mine = new TempStore({ mode: 0o660 });
    expect([
      opening(mine.name, { checkOwner: true }),
      opening(foreign.name, {}),
      opening(open.name, { checkOwner: false }),
    ]).toEqual(["opened", "opened", "opened"]);
  });
});

describe("store names", () => {
  // The library's own refusal (KV_EINVAL) is tested in test/c/test_store.c.
  it("hold no control character: the binding refuses them, and nothing is made", () => {
    const base = uniqueName();
    for (const name of [`${base}\nline`, `${base}\x1b[2J`, `${base}\x07`, `${base}\x7f`]) {
      try {
        expect(opening(name, { create: true })).toEqual({ code: "INVALID_ARGUMENT", message: `invalid store name ${JSON.stringify(name)}` });
        expect(() => KvStore.unlink(name)).toThrow(`invalid store name ${JSON.stringify(name)}`);
        expect(existsSync(`/dev/shm${name}`)).toBe(false);
      } finally {
        rmSync(`/dev/shm${name}`, { force: true }); // what a binding that took the name would have made
      }
    }
  });
});

interface Run {
  code: number;
  out: string[];
  err: string[];
}

async function cli(argv: string[], env: Env): Promise<Run> {
  const run: Run = { code: -1, out: [], err: [] };
  run.code = await main(argv, env, { out: (t) => run.out.push(t), err: (t) => run.err.push(t) });
  return run;
}

describe("the CLI", () => {
  it("refuses a foreign or others-writable segment for every command that opens it, exit 1", async () => {
    const runs = [];
    for (const args of [["get", "greeting"], ["set", "secret", "s3cr3t"], ["status"], ["check"], ["delete", "greeting"]]) {
      runs.push(await cli(args, { KV_SHM_NAME: foreign.name }));
      runs.push(await cli(args, { KV_SHM_NAME: open.name }));
    }
    const refused = (store: TempStore, owner: string, mode: string) => ({ code: 1, out: [], err: [`shmkv: ${refusal(store.name, owner, mode)}`] });
    expect(runs).toEqual(
      Array.from({ length: 5 }, () => [refused(foreign, "uid 65534 (nobody)", "0600"), refused(open, "uid 0 (root)", "0666")]).flat(),
    );
    expect([foreign.store.get("secret"), foreign.store.get("greeting")]).toEqual([undefined, "planted by nobody"]);
  });

  it("says so as JSON under --json", async () => {
    expect(await cli(["get", "greeting", "--json"], { KV_SHM_NAME: foreign.name })).toEqual({
      code: 1,
      out: [],
      err: [JSON.stringify({ detail: refusal(foreign.name, "uid 65534 (nobody)", "0600"), code: "UNTRUSTED" })],
    });
  });

  it("opens it with --trust-segment-owner or KV_TRUST_SEGMENT_OWNER=1", async () => {
    expect([
      await cli(["get", "greeting", "--trust-segment-owner"], { KV_SHM_NAME: foreign.name }),
      await cli(["get", "greeting"], { KV_SHM_NAME: open.name, KV_TRUST_SEGMENT_OWNER: "1" }),
    ]).toEqual([
      { code: 0, out: ["planted by nobody"], err: [] },
      { code: 0, out: ["written by anyone"], err: [] },
    ]);
  });

  it("unlinks it without trusting it: that is the fix", async () => {
    expect(await cli(["unlink"], { KV_SHM_NAME: foreign.name })).toEqual({ code: 0, out: [`${foreign.name} unlinked`], err: [] });
    expect(existsSync(`/dev/shm${foreign.name}`)).toBe(false);
  });

  it("refuses a name with a control character as a usage error", async () => {
    const run = await cli(["get", "k"], { KV_SHM_NAME: "/evil\n2026-01-01 forged line" });
    expect({ code: run.code, err: run.err[0]?.split("\n")[0] }).toEqual({
      code: 2,
      err: 'shmkv: KV_SHM_NAME (--name) must be "/" followed by 1 to 254 bytes with no other "/" and no control character, not "/evil\\n2026-01-01 forged line"',
    });
  });
});

describe("the server", () => {
  const lines: string[] = [];
  const log: Logger = { info: (line) => void lines.push(line), error: (line) => void lines.push(line) };

  /** /health and GET /get/greeting of a server configured by `env`, which is then stopped. */
  async function served(env: Env, argv: string[] = []) {
    const config = serverConfig(argv, { PORT: "0", KV_LOG_REQUESTS: "0", ...env });
    if (config === "help") throw new Error("help");
    const server = startServer(config, log);
    try {
      const health = await fetch(`${server.url}health`);
      const get = await fetch(`${server.url}get/greeting`);
      return { health: { status: health.status, body: await health.json() }, get: { status: get.status, body: await get.json() } };
    } finally {
      await server.abort();
    }
  }

  it("answers 503 naming the owner, the mode and the fix, and never serves what was planted (even with a token)", async () => {
    lines.length = 0;
    const unavailable = (detail: string) => ({ status: 503, body: { detail: `the store is not available: ${detail}`, code: "STORE_UNAVAILABLE" } });
    const foreignRefusal = refusal(foreign.name, "uid 65534 (nobody)", "0600");
    expect(await served({ KV_SHM_NAME: foreign.name, KV_API_TOKEN: "t0ken" })).toEqual({
      health: unavailable(foreignRefusal),
      get: { status: 401, body: { detail: "this route needs the API token: send Authorization: Bearer <token>", code: "UNAUTHORIZED" } },
    });
    const openRefusal = refusal(open.name, "uid 0 (root)", "0666");
    expect(await served({ KV_SHM_NAME: open.name })).toEqual({ health: unavailable(openRefusal), get: unavailable(openRefusal) });
    expect(lines.filter((line) => line.includes("cannot open"))).toEqual([
      expect.stringContaining(`cannot open ${foreign.name}: ${foreignRefusal} (answering 503; retrying every second)`),
      expect.stringContaining(`cannot open ${open.name}: ${openRefusal} (answering 503; retrying every second)`),
    ]);
  });

  it("serves it with KV_TRUST_SEGMENT_OWNER=1 or --trust-segment-owner", async () => {
    const ok = (value: string) => ({
      health: { status: 200, body: expect.objectContaining({ status: "ok" }) },
      get: { status: 200, body: { key: "greeting", value } },
    });
    expect([
      await served({ KV_SHM_NAME: foreign.name, KV_TRUST_SEGMENT_OWNER: "1" }),
      await served({ KV_SHM_NAME: open.name }, ["--trust-segment-owner"]),
    ]).toEqual([ok("planted by nobody"), ok("written by anyone")]);
  });
});
