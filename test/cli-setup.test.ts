/**
 * The CLI and the server as a new user first runs them: with only the pinned bun (none on PATH),
 * and from a checkout whose C library is not built yet.
 */
import { afterEach, describe, expect, it } from "bun:test";
import { cpSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BUN, ROOT, ServerProcess } from "./helpers/server-process.ts";
import { uniqueName, unlinkQuietly } from "./helpers/shm.ts";

/** The bun `make deps` installs; PATH below holds no other. */
const PINNED_BUN = join(ROOT, ".tools", "node_modules", ".bin", "bun");
const PATH_WITHOUT_BUN = "/usr/local/bin:/usr/bin:/bin";

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

function run(cmd: string[], env: Record<string, string>, cwd = ROOT) {
  const ran = Bun.spawnSync(cmd, { cwd, env: { ...process.env, ...env } });
  return { exitCode: ran.exitCode, stdout: ran.stdout.toString(), stderr: ran.stderr.toString() };
}

describe("bun run with only the pinned bun", () => {
  it("runs the CLI: `bun run cli set` and `bun run cli get`", () => {
    const name = uniqueName();
    cleanups.push(() => unlinkQuietly(name));
    const env = { PATH: PATH_WITHOUT_BUN, KV_SHM_NAME: name };
    const set = run([PINNED_BUN, "run", "--silent", "cli", "set", "k", "v"], env);
    const get = run([PINNED_BUN, "run", "--silent", "cli", "get", "k"], env);
    expect([set, get]).toEqual([
      { exitCode: 0, stdout: "Key 'k' set successfully\n", stderr: "" },
      { exitCode: 0, stdout: "v\n", stderr: "" },
    ]);
  });

  it("runs the server: `bun run server`", async () => {
    const name = uniqueName();
    cleanups.push(() => unlinkQuietly(name));
    await using server = new ServerProcess([PINNED_BUN, "run", "server", "--quiet"], {
      env: { PATH: PATH_WITHOUT_BUN, PORT: "0", KV_SHM_NAME: name },
    });
    const health = await fetch(`${await server.url()}health`);
    expect(health.status).toBe(200);
  });
});

describe("the CLI before `make libso`", () => {
  it("says to run `make libso`, with no module-resolution or dlopen trace, for every store command", () => {
    // A checkout of the sources with no build/ folder.
    const dir = mkdtempSync(join(tmpdir(), "shmkv-unbuilt-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    cpSync(join(ROOT, "src"), join(dir, "src"), { recursive: true });
    cpSync(join(ROOT, "package.json"), join(dir, "package.json"));
    symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
    const message = `shmkv: the C library is missing at ${join(dir, "build", "libshared_memory_kv.so")}: run \`make libso\` (or set KV_LIB_PATH)\n`;
    const env = { KV_SHM_NAME: uniqueName(), KV_LIB_PATH: "" };
    const runs = [["get", "k"], ["set", "k", "v"], ["status"], ["dump"], ["unlink"]].map((args) => run([BUN, "src/cli.ts", ...args], env, dir));
    expect(runs).toEqual(runs.map(() => ({ exitCode: 1, stdout: "", stderr: message })));
  });
});
