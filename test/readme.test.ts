/**
 * Every example of README.md, run as written and its output compared with what the README shows.
 * Each fenced block is marked `<!-- example: KIND -->`; an unmarked block fails the test, so no
 * example goes unchecked. Each runs against a store of its own: the README's store name, and its
 * `localhost:8000`, are replaced by the test's. Timestamps are compared as "some timestamp".
 * Also: the facts the docs repeat (the paths open without a token, the header's numbers) are the
 * program's.
 */
import { afterEach, describe, expect, it } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SERVER_HELP } from "../src/config.ts";
import { PUBLIC_PATHS } from "../src/http/auth.ts";
import { DOCS_PATHS } from "../src/http/docs.ts";
import { DEFAULTS, LIMITS, NAME_MAX, READ_ATTEMPTS } from "../src/limits.ts";
import { startServer, type RunningServer } from "../src/server.ts";
import { KvStore } from "../src/store.ts";
import { ensureDebianPackage } from "./helpers/debian.ts";
import { RedisServer } from "./helpers/redis.ts";
import { Host, uniqueNamespace } from "./helpers/replicas.ts";
import { uniqueName, unlinkQuietly } from "./helpers/shm.ts";

const ROOT = join(import.meta.dir, "..");
const README = readFileSync(join(ROOT, "README.md"), "utf8");
const README_NAME = "/shared_memory_kv";
const README_ADDRESS = "localhost:8000";

interface Example {
  kind: string;
  /** What follows the kind in the marker: a file name for a source block. */
  arg: string | undefined;
  code: string;
}

/** Every fenced block of the README, with the marker before it ("" when it has none). */
function fencedBlocks(markdown: string): { marker: string; code: string }[] {
  return [...markdown.matchAll(/(?:<!-- (example: [^>]*?) -->\n)?```[a-z]*\n([\s\S]*?)```/g)].map(([, marker, code]) => ({
    marker: marker ?? "",
    code: code!,
  }));
}

const EXAMPLES: Example[] = fencedBlocks(README).map(({ marker, code }) => {
  const [kind = "", arg] = marker.replace(/^example: /, "").split(" ");
  return { kind, arg, code };
});

function example(kind: string): Example {
  const found = EXAMPLES.find((e) => e.kind === kind);
  if (!found) throw new Error(`README.md has no example marked ${kind}`);
  return found;
}

/** A console block's commands ("$ ..."), each with the output shown after it. */
function transcript(code: string): { command: string; output: string }[] {
  return code
    .split(/^\$ /m)
    .slice(1)
    .map((part) => {
      const [command = "", ...output] = part.split("\n");
      return { command, output: output.join("\n") };
    });
}

/** Output with what differs from run to run (timestamps, dates, line ends) made alike. */
function normalized(text: string): string {
  return text
    .replaceAll("\r", "")
    .replace(/"timestamp":\d+/g, '"timestamp":T')
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, "DATE")
    .trimEnd();
}

const MARK = "@@ readme example: next command @@";

/**
 * Run a console block's commands one after another in one bash (stderr into stdout), in `cwd`, with
 * `shmkv` the CLI; the output of each command.
 */
async function runTranscript(commands: string[], cwd: string, env: Record<string, string>): Promise<string[]> {
  const script = [
    "exec 2>&1",
    `shmkv() { ${JSON.stringify(process.execPath)} ${JSON.stringify(join(ROOT, "src", "cli.ts"))} "$@"; }`,
    ...commands.flatMap((command) => [`printf '%s\\n' ${JSON.stringify(MARK)}`, command]),
  ].join("\n");
  const child = Bun.spawn(["bash", "-c", script], { cwd, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  const out = await new Response(child.stdout).text();
  await child.exited;
  return out.split(`${MARK}\n`).slice(1);
}

function expectTranscript(ran: string[], shown: { output: string }[], names: string | Record<string, string>) {
  const byName = typeof names === "string" ? { [README_NAME]: names } : names;
  const replaced = shown.map(({ output }) => normalized(Object.entries(byName).reduce((text, [from, to]) => text.replaceAll(from, to), output)));
  expect(ran.map(normalized)).toEqual(replaced);
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * A CURL_HOME whose .curlrc makes curl silent: it shows no progress meter on a terminal, but here its
 * output is a pipe.
 */
function curlQuietly(): string {
  const curlHome = mkdtempSync(join(tmpdir(), "shmkv-readme-curl-"));
  writeFileSync(join(curlHome, ".curlrc"), "silent\n");
  cleanups.push(() => rmSync(curlHome, { recursive: true, force: true }));
  return curlHome;
}

describe("README.md", () => {
  it("marks every fenced block as an example of a kind this test runs", () => {
    expect(EXAMPLES.map((e) => e.kind)).toEqual(["make", "http", "cli", "c", "c-build", "ts", "python", "replication", "crontab"]);
  });

  it("names Makefile targets that exist", () => {
    const targets = [...example("make").code.matchAll(/^make (\S+)/gm)].map(([, target]) => target!);
    const makefile = readFileSync(join(ROOT, "Makefile"), "utf8");
    expect(targets.filter((target) => !new RegExp(`^${target}:`, "m").test(makefile))).toEqual([]);
    expect(targets).toEqual(["test", "server"]);
  });

  it("shows what the HTTP server answers to its curl commands", async () => {
    ensureDebianPackage("/usr/bin/curl", "curl");
    const name = uniqueName();
    const server: RunningServer = startServer(
      { host: "127.0.0.1", port: 0, name, create: {}, maxBodyBytes: 65536, logRequests: false },
      { info: () => {}, error: () => {} },
    );
    cleanups.push(() => unlinkQuietly(name), () => server.stop());
    const curlHome = curlQuietly();
    const address = new URL(server.url).host;
    const shown = transcript(example("http").code);
    const commands = shown.map(({ command }) => command.replaceAll(README_ADDRESS, address));
    expectTranscript(await runTranscript(commands, ROOT, { CURL_HOME: curlHome }), shown, name);
  });

  it("shows what the CLI prints", async () => {
    const name = uniqueName();
    cleanups.push(() => unlinkQuietly(name));
    const shown = transcript(example("cli").code);
    const ran = await runTranscript(shown.map(({ command }) => command), ROOT, { KV_SHM_NAME: name });
    expectTranscript(ran, shown, name);
  });

  it("has a C example that compiles with the line shown, links the library and prints what is shown", async () => {
    const name = uniqueName();
    const dir = mkdtempSync(join(tmpdir(), "shmkv-readme-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }), () => unlinkQuietly(name));
    const source = example("c");
    writeFileSync(join(dir, source.arg ?? "missing-file-name.c"), source.code.replaceAll(README_NAME, name));
    symlinkSync(join(ROOT, "csrc"), join(dir, "csrc"));
    symlinkSync(join(ROOT, "build"), join(dir, "build"));
    const shown = transcript(example("c-build").code);
    expectTranscript(await runTranscript(shown.map(({ command }) => command), dir, {}), shown, name);
  });

  it("shows two replicating servers agreeing on revisions through one Redis", async () => {
    ensureDebianPackage("/usr/bin/curl", "curl");
    const redis = await RedisServer.start();
    cleanups.push(() => redis[Symbol.asyncDispose]());
    const namespace = uniqueNamespace();
    const hosts = [new Host(redis.url, namespace), new Host(redis.url, namespace)];
    cleanups.push(...hosts.map((host) => () => host[Symbol.asyncDispose]()));
    const curlHome = curlQuietly();
    const names = { "/orders-a": hosts[0]!.name, "/orders-b": hosts[1]!.name };
    const addresses = { "localhost:8001": new URL(hosts[0]!.url).host, "localhost:8002": new URL(hosts[1]!.url).host };
    const shown = transcript(example("replication").code);
    const commands = shown.map(({ command }) =>
      Object.entries({ ...names, ...addresses }).reduce((text, [from, to]) => text.replaceAll(from, to), command),
    );
    expectTranscript(await runTranscript(commands, ROOT, { CURL_HOME: curlHome }), shown, names);
  });

  it("has a Bun example whose console.log lines print what their comments say", async () => {
    const name = uniqueName();
    cleanups.push(() => unlinkQuietly(name));
    const { code } = example("ts");
    const expected = [...code.matchAll(/^console\.log\(.*\); \/\/ (.*)$/gm)].map(([, printed]) => printed!);
    const child = Bun.spawn([process.execPath, "-e", code.replaceAll(README_NAME, name)], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    const [out, err] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()]);
    expect({ exitCode: await child.exited, err, printed: out.trimEnd().split("\n") }).toEqual({ exitCode: 0, err: "", printed: expected });
  });

  it("has a Python example whose print lines print what their comments say", async () => {
    const name = uniqueName();
    cleanups.push(() => unlinkQuietly(name));
    const { code } = example("python");
    const expected = [...code.matchAll(/^\s*print\(.*\) {2}# (.*)$/gm)].map(([, printed]) => printed!);
    const child = Bun.spawn(["python3", "-c", code.replaceAll(README_NAME, name)], {
      cwd: ROOT,
      env: { ...process.env, PYTHONPATH: join(ROOT, "python") },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()]);
    expect({ exitCode: await child.exited, err, printed: out.trimEnd().split("\n") }).toEqual({ exitCode: 0, err: "", printed: expected });
  });

  it("has crontab lines whose commands save a store and bring it back after it is gone", async () => {
    const name = uniqueName();
    const dir = mkdtempSync(join(tmpdir(), "shmkv-readme-cron-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }), () => unlinkQuietly(name));
    const lines = example("crontab").code.trimEnd().split("\n");
    // Each line's command: what follows its five time fields, or its @reboot.
    const commands = lines.map((line) =>
      line
        .replace(/^(?:@\w+|(?:\S+\s+){4}\S+)\s+/, "")
        .replace("/usr/local/bin/shmkv", "shmkv")
        .replace("/var/lib/shmkv/", `${dir}/`),
    );
    expect(commands.map((command) => command.split(" ").slice(0, 2).join(" "))).toEqual(["shmkv dump", "shmkv restore"]);
    const before = (() => {
      using store = KvStore.open(name, { create: true, maxEntries: 5 });
      store.set("greeting", "héllo");
      store.set(new Uint8Array([0x62, 0xff]), new Uint8Array([0, 0xfe]));
      return store.rawEntriesFrom(0, 10).items;
    })();
    const [dumped = ""] = await runTranscript([commands[0]!], ROOT, { KV_SHM_NAME: name });
    KvStore.unlink(name); // the reboot
    const [restored = ""] = await runTranscript([commands[1]!], ROOT, { KV_SHM_NAME: name });
    using store = KvStore.open(name);
    expect({ dumped, restored: restored.replace(/\(version .*\)/, "(...)"), entries: store.rawEntriesFrom(0, 10).items, maxEntries: store.maxEntries }).toEqual({
      dumped: `dumped 2 entries of ${name} (version 2) to ${dir}/store.jsonl\n`,
      restored: `restored 2 entries into ${name} (...)\n`,
      entries: before,
      maxEntries: 5,
    });
  });
});

describe("the access rules, as the docs and `serve --help` state them", () => {
  /** The paths named in each "every path but /, /health, ... and the documentation" of a text. */
  function openPathsStated(text: string): string[][] {
    const plain = text.replaceAll("`", "").replace(/\s+/g, " ");
    return [...plain.matchAll(/\bbut (\/[^.;:]*?) (?:and the (?:documentation|docs)|answers 401)/g)].map(([, list]) =>
      [...list!.matchAll(/\/\w*/g)].map(([path]) => path!).sort(),
    );
  }

  const open = [...PUBLIC_PATHS].filter((path) => !DOCS_PATHS.includes(path)).sort();

  it.each([
    ["README.md", README],
    ["docs/http.md", readFileSync(join(ROOT, "docs", "http.md"), "utf8")],
    ["docs/design.md", readFileSync(join(ROOT, "docs", "design.md"), "utf8")],
    ["serve --help", SERVER_HELP],
  ])("lists the same public paths as the server in %s", (_, text) => {
    const stated = openPathsStated(text);
    expect(stated.length).toBeGreaterThan(0);
    expect(stated).toEqual(stated.map(() => open));
  });
});

describe("the header's numbers, as the docs state them", () => {
  const read = (file: string) => readFileSync(join(ROOT, file), "utf8");
  const number = (text: string) => Number(text.replaceAll(",", ""));
  const all = (text: string, pattern: RegExp) => [...text.matchAll(pattern)].map(([, n]) => number(n!));

  it("gives the reader's attempts before it takes the lock as KV_READ_SPINS", () => {
    const docs = ["README.md", "docs/design.md", "docs/c-api.md"].map(read).join("\n");
    const stated = all(docs, /(\d+)\)? overlapped attempts/g);
    expect(stated.length).toBeGreaterThan(0);
    expect(stated).toEqual(stated.map(() => READ_ATTEMPTS));
  });

  it("gives the server's geometry settings the header's defaults and maxima", () => {
    const http = read("docs/http.md");
    const row = (variable: string) => {
      const found = new RegExp(`^\\| \`${variable}\` \\|[^|]*\\| \`(\\d+)\` \\|[^\\n]*\\(1–([\\d,]+)\\) \\|$`, "m").exec(http);
      return found ? [number(found[1]!), number(found[2]!)] : [];
    };
    expect([row("KV_MAX_ENTRIES"), row("KV_KEY_MAX"), row("KV_VALUE_MAX")]).toEqual([
      [DEFAULTS.maxEntries, LIMITS.maxEntries],
      [DEFAULTS.keyMax, LIMITS.keyMax],
      [DEFAULTS.valueMax, LIMITS.valueMax],
    ]);
    expect(all(http, /followed by 1–(\d+) bytes/g)).toEqual([NAME_MAX - 1]);
    expect(all(read("README.md"), /up to ([\d,]+) entries/g)).toEqual([LIMITS.maxEntries]);
  });
});
