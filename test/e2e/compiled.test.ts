/**
 * The single binary, built here with `bun build --compile` as `make compile` does, run from an empty
 * folder with no other file beside it: the C library and the documentation's script are inside.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "bun:test";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BUN, ROOT, ServerProcess } from "../helpers/server-process.ts";
import { createApp } from "../../src/http/app.ts";
import { TempStore, uniqueName, unlinkQuietly } from "../helpers/shm.ts";

let folder: string; // holds the binary and nothing else; the working directory of every run
let binary: string;
let tmp: string; // the TMPDIR of the runs, where the library is extracted
let name: string;

beforeAll(() => {
  folder = mkdtempSync(join(tmpdir(), "shmkv-bin-"));
  binary = join(folder, "shmkv");
  const build = Bun.spawnSync([BUN, "build", "--compile", "src/shmkv.ts", "--outfile", binary], { cwd: ROOT });
  if (build.exitCode !== 0) throw new Error(`bun build --compile failed:\n${build.stderr}`);
}, 60_000);

afterAll(() => {
  rmSync(folder, { recursive: true, force: true });
});

beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), "shmkv-tmp-"));
  name = uniqueName();
});

afterEach(() => {
  rmSync(tmp, { recursive: true, force: true });
  unlinkQuietly(name);
});

/** Only what a user's shell would have: no KV_LIB_PATH, no project on any path. */
function env(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: "/usr/bin:/bin", TMPDIR: tmp, KV_SHM_NAME: name, ...extra };
}

function run(args: string[], extra: Record<string, string> = {}) {
  const r = Bun.spawnSync([binary, ...args], { cwd: folder, env: env(extra) });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
}

/** The paths the OpenAPI document of the app built from these sources lists. */
async function sourcePaths(): Promise<string[]> {
  using temp = new TempStore();
  const response = await createApp(temp.store).handle(new Request("http://localhost/swagger/json"));
  const spec = (await response.json()) as { paths: Record<string, unknown> };
  return Object.keys(spec.paths).sort();
}

describe("the compiled shmkv", () => {
  it("is alone in its folder", () => {
    expect(readdirSync(folder)).toEqual(["shmkv"]);
  });

  it("sets and gets a key", () => {
    expect(run(["set", "k", "välue"])).toEqual({ code: 0, out: "Key 'k' set successfully\n", err: "" });
    expect(run(["get", "k"])).toEqual({ code: 0, out: "välue\n", err: "" });
    expect(run(["get", "missing"]).code).toBe(1);
  });

  it("serves the API and its documentation, then stops on SIGTERM", async () => {
    await using server = new ServerProcess([binary, "serve", "--port", "0"], { cwd: folder, env: env() });
    const url = await server.url();
    const body = JSON.stringify({ key: "k", value: "served" });
    await fetch(`${url}set`, { method: "POST", headers: { "content-type": "application/json" }, body });
    const script = await fetch(`${url}swagger/scalar.js`);
    const spec = (await (await fetch(`${url}swagger/json`)).json()) as { paths: Record<string, unknown> };
    expect({
      value: await (await fetch(`${url}get/k`)).json(),
      script: { status: script.status, large: (await script.arrayBuffer()).byteLength > 1_000_000 },
      routes: Object.keys(spec.paths).sort(),
      page: (await (await fetch(`${url}ui`)).text()).includes("/watch?since="),
    }).toEqual({ value: { key: "k", value: "served" }, script: { status: 200, large: true }, routes: await sourcePaths(), page: true });
    expect(await server.stop()).toBe(0);
    expect(run(["get", "k"]).out).toBe("served\n");
  });

  it("says clearly when TMPDIR does not exist", () => {
    const missing = join(tmp, "missing");
    expect(run(["get", "k"], { TMPDIR: missing })).toEqual({
      code: 1,
      out: "",
      err: expect.stringContaining(`cannot extract the embedded C library into TMPDIR (${missing}): ENOENT`),
    });
  });

  it("says clearly when TMPDIR is not a folder", () => {
    const file = join(tmp, "file");
    writeFileSync(file, "");
    expect(run(["set", "k", "v"], { TMPDIR: file })).toEqual({
      code: 1,
      out: "",
      err: expect.stringMatching(/cannot extract the embedded C library into TMPDIR .*ENOTDIR.*Set TMPDIR to a writable folder/),
    });
  });
});
