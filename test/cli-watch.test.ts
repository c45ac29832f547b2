/** `shmkv watch`, as a user runs it: its own process, writes made in C, stopped with SIGINT. */
import { describe, expect, it } from "bun:test";
import { cli as cliIn, storePerTest } from "./helpers/cli.ts";
import { kvtool } from "./helpers/kvtool.ts";
import { BUN, ServerProcess } from "./helpers/server-process.ts";
import { uniqueName } from "./helpers/shm.ts";
import { waitFor } from "./helpers/wait.ts";

const temp = storePerTest();

function watcher(...flags: string[]): ServerProcess {
  return new ServerProcess([BUN, "src/cli.ts", "watch", "--name", temp.name, ...flags]);
}

/** The lines it printed so far. */
const lines = (proc: ServerProcess) => proc.stdout.split("\n").filter(Boolean);

const STAMP = "\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.000Z";

describe("shmkv watch", () => {
  it("prints one line per change made by another process, until SIGINT (exit 0)", async () => {
    await using proc = watcher("--since", "0");
    expect(kvtool(temp.name, ["set", "k", "from C"]).exitCode).toBe(0);
    expect(kvtool(temp.name, ["del", "k"]).exitCode).toBe(0);
    await waitFor(() => lines(proc).length === 2, { what: "two lines" });
    expect(await proc.stop("SIGINT")).toBe(0);
    expect(lines(proc)).toEqual([
      expect.stringMatching(new RegExp(`^${STAMP}  #1  set "k" = "from C"$`)),
      expect.stringMatching(new RegExp(`^${STAMP}  #2  delete "k"$`)),
    ]);
    expect(proc.stderr).toBe("");
  });

  it("starts from now without --since", async () => {
    temp.store.set("before", "0");
    await using proc = watcher();
    // It prints nothing until it is watching: write until a line shows it saw a write.
    await waitFor(() => kvtool(temp.name, ["set", "after", "1"]).exitCode === 0 && lines(proc).length > 0, { what: "a line" });
    expect(await proc.stop("SIGTERM")).toBe(0);
    expect(lines(proc).every((line) => line.endsWith('set "after" = "1"'))).toBe(true);
  });

  it("says when a set's entry expires, and why the store deleted one itself, in text and in JSON", async () => {
    await using text = watcher("--since", "0");
    await using json = watcher("--since", "0", "--json");
    temp.store.set("brief", "v", { ttl: 30 });
    const expiresAt = temp.store.getEntry("brief")!.expiresAt!;
    await waitFor(() => temp.store.get("brief") === undefined, { what: "brief to expire" });
    expect(temp.store.expire()).toBe(1);
    await waitFor(() => lines(text).length === 2 && lines(json).length === 2, { what: "two lines each" });
    expect([await text.stop("SIGINT"), await json.stop("SIGINT")]).toEqual([0, 0]);
    expect({ text: lines(text), json: lines(json).map((line) => JSON.parse(line)) }).toEqual({
      text: [
        expect.stringMatching(new RegExp(`^${STAMP}  #1  set "brief" = "v"  \\(expires ${new Date(expiresAt).toISOString()}\\)$`)),
        expect.stringMatching(new RegExp(`^${STAMP}  #2  delete "brief" \\(expired\\)$`)),
      ],
      json: [
        { event: "set", key: "brief", value: "v", revision: 1, timestamp: expect.any(Number), expires_at: expiresAt / 1000 },
        { event: "delete", key: "brief", revision: 2, timestamp: expect.any(Number), reason: "expired" },
      ],
    });
  });

  it("prints JSON, shaped as /watch's events, for the keys with --prefix", async () => {
    await using proc = watcher("--since", "0", "--prefix", "app/", "--json");
    for (const key of ["other", "app/x"]) expect(kvtool(temp.name, ["set", key, "v"]).exitCode).toBe(0);
    expect(kvtool(temp.name, ["del", "app/x"]).exitCode).toBe(0);
    await waitFor(() => lines(proc).length === 2, { what: "two lines" });
    expect(await proc.stop("SIGINT")).toBe(0);
    expect(lines(proc).map((line) => JSON.parse(line))).toEqual([
      { event: "set", key: "app/x", value: "v", revision: 2, timestamp: expect.any(Number) },
      { event: "delete", key: "app/x", revision: 3, timestamp: expect.any(Number) },
    ]);
  });

  it("says plainly when it fell behind the ring and must resync", async () => {
    for (let i = 0; i < 300; i++) temp.store.set("k", `${i}`);
    await using proc = watcher("--since", "1");
    await waitFor(() => lines(proc).length === 1, { what: "a line" });
    expect(await proc.stop("SIGINT")).toBe(0);
    expect(lines(proc)).toEqual([
      "resync: changes were missed (the store keeps its last 256); it is now at version 300: reread it (shmkv status)",
    ]);
  });
});

describe("shmkv watch, misused", () => {
  /** main() in this process: these all return before watching. */
  const cli = (argv: string[]) => cliIn(argv, temp.env);

  it("exits 2 for a --since that is not a revision, and when another command is given --since or --prefix", async () => {
    expect(await cli(["watch", "--since", "1.5"])).toEqual({
      code: 2,
      out: [],
      err: ['shmkv: --since must be a revision (0, 1, 2, ...), not "1.5"\n(shmkv watch --help tells how to use it)'],
    });
    expect((await cli(["get", "k", "--prefix", "a"])).err).toEqual(["shmkv: get takes no --prefix\n(shmkv get --help tells how to use it)"]);
  });

  it("exits 1 when the store does not exist", async () => {
    const missing = uniqueName();
    expect(await cli(["watch", "--name", missing])).toEqual({
      code: 1,
      out: [],
      err: [`shmkv: no store named ${missing} (shmkv set or shmkv serve creates it)`],
    });
  });
});
