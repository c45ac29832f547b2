/**
 * As a user would: `bun run server` in its own process, HTTP on one side and the C library (kvtool)
 * on the other, stopped with SIGTERM and started again.
 */
import { afterEach, beforeEach, describe, expect, it } from "bun:test";
import { cpSync, existsSync } from "node:fs";
import { join } from "node:path";
import pkg from "../../package.json";
import { kvtool } from "../helpers/kvtool.ts";
import { GarbageSegment } from "../helpers/segments.ts";
import { BUN, ROOT, ServerProcess } from "../helpers/server-process.ts";
import { uniqueName, unlinkQuietly } from "../helpers/shm.ts";
import { TempDir } from "../helpers/temp-dir.ts";
import { waitFor } from "../helpers/wait.ts";

let name: string;

beforeEach(() => {
  name = uniqueName();
});

afterEach(() => {
  unlinkQuietly(name);
});

function server(env: Record<string, string> = {}): ServerProcess {
  return new ServerProcess([BUN, "run", "server"], { env: { PORT: "0", KV_SHM_NAME: name, ...env } });
}

describe("bun run server", () => {
  it("shares the store with C programs, and keeps it across a SIGTERM and a restart", async () => {
    await using first = server();
    const url = await first.url();
    const set = await fetch(`${url}set`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ key: "from http", value: "héllo" }),
    });
    expect(set.status).toBe(200);
    expect(kvtool(name, ["get", "from http"])).toMatchObject({ exitCode: 0, stdout: "héllo" });

    expect(kvtool(name, ["set", "from c", "wörld"]).exitCode).toBe(0);
    expect(await (await fetch(`${url}get/from%20c`)).json()).toEqual({ key: "from c", value: "wörld" });

    expect(await first.stop("SIGTERM")).toBe(0);
    expect(first.stdout).toMatch(/SIGTERM: no new connections.*\n.*stopped; the store is closed, not unlinked\n$/);
    expect(first.stdout).toContain(`created segment ${name}: 10 entries`);

    await using second = server();
    const again = await second.url();
    const status = (await (await fetch(`${again}status`)).json()) as { entries: { key: string; value: string }[] };
    expect(status.entries.map(({ key, value }) => ({ key, value }))).toEqual([
      { key: "from http", value: "héllo" },
      { key: "from c", value: "wörld" },
    ]);
    expect(second.stdout).toContain(`opened segment ${name}: 10 entries`);
    expect(await second.stop("SIGINT")).toBe(0);
  });

  it("answers 503 with the reason while it cannot open the store, and serves once it can", async () => {
    using garbage = new GarbageSegment();
    name = garbage.name;
    await using proc = server();
    const url = await proc.url();
    const health = await fetch(`${url}health`);
    expect({ status: health.status, body: await health.json() }).toEqual({
      status: 503,
      body: { detail: expect.stringContaining("incompatible segment"), code: "STORE_UNAVAILABLE" },
    });
    expect(proc.stderr).toContain(`cannot open ${name}`);
    garbage.remove();
    await waitFor(async () => (await fetch(`${url}health`)).status === 200, { what: "the server to create the store" });
    expect(proc.stdout).toContain(`created segment ${name}`);
    expect(await proc.stop()).toBe(0);
  });

  it("logs a line per request unless KV_LOG_REQUESTS=0", async () => {
    await using quiet = server({ KV_LOG_REQUESTS: "0" });
    await fetch(`${await quiet.url()}status`);
    expect(await quiet.stop()).toBe(0);
    await using loud = server();
    await fetch(`${await loud.url()}status`);
    await loud.printed(/GET \/status 200 /);
    expect(await loud.stop()).toBe(0);
    expect(quiet.stdout).not.toContain("GET /status");
  });

  it("without `make deps`, exits 1 with one line naming it, not a module-resolution trace", async () => {
    // A checkout where `make deps` has not run: the sources and package.json, no node_modules.
    using checkout = new TempDir();
    cpSync(join(ROOT, "src"), join(checkout.path, "src"), { recursive: true });
    for (const file of ["package.json", "bunfig.toml", "tsconfig.json"]) cpSync(join(ROOT, file), join(checkout.path, file));
    await using proc = new ServerProcess([BUN, "run", "server"], { cwd: checkout.path, env: { PORT: "0", KV_SHM_NAME: name } });
    expect(await proc.exited()).toBe(1);
    // `bun run` frames the script's output with "$ bun src/server-main.ts" and its exit code.
    const told = proc.stderr.split("\n").filter((line) => line.startsWith("shmkv: "));
    expect({ stdout: proc.stdout, told, trace: /Cannot find|resolve|    at /.test(proc.stderr) }).toEqual({
      stdout: "",
      told: [
        `shmkv: the packages it needs are not installed (${Object.keys(pkg.dependencies).join(", ")}): ` +
          `run \`make deps\` in ${checkout.path} (it installs the pinned bun and the packages)`,
      ],
      trace: false,
    });
    expect(existsSync(`/dev/shm${name}`)).toBe(false);
  });

  it("exits 2 with a clear message for a bad setting", async () => {
    await using proc = server({ PORT: "eighty" });
    expect(await proc.exited()).toBe(2);
    expect(proc.stderr).toContain('PORT (--port) must be an integer from 0 to 65535, not "eighty"');
  });
});
