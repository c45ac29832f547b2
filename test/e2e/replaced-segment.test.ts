/**
 * A running server whose segment is unlinked (`shmkv unlink`) or replaced under it: within a second it
 * attaches to what the name leads to now, and serves what other processes (kvtool, in C) write there.
 */
import { afterEach, beforeEach, describe, expect, it } from "bun:test";
import { renameSync } from "node:fs";
import { kvtool } from "../helpers/kvtool.ts";
import { BUN, ServerProcess } from "../helpers/server-process.ts";
import { uniqueName, unlinkQuietly } from "../helpers/shm.ts";
import { waitFor } from "../helpers/wait.ts";

let name: string;
let spare: string;

beforeEach(() => {
  name = uniqueName();
  spare = uniqueName();
});

afterEach(() => {
  unlinkQuietly(name);
  unlinkQuietly(spare);
});

function server(): ServerProcess {
  return new ServerProcess([BUN, "src/server.ts"], { env: { PORT: "0", KV_SHM_NAME: name } });
}

async function json(url: string): Promise<unknown> {
  return (await fetch(url)).json();
}

describe("a server whose segment changes under it", () => {
  it("creates the segment again within a second of `shmkv unlink`, and serves what C writes there", async () => {
    await using proc = server();
    const url = await proc.url();
    expect(kvtool(name, ["set", "old", "gone with the old segment"]).exitCode).toBe(0);
    const unlink = Bun.spawnSync([BUN, "src/cli.ts", "unlink", "--name", name]);
    expect(unlink.exitCode).toBe(0);
    await proc.printed(/was unlinked: closing it and opening/, { timeoutMs: 1000 });
    await proc.printed(/created segment[^]*created segment/);
    expect(kvtool(name, ["set", "new", "from C"]).exitCode).toBe(0);
    const old = (await fetch(`${url}get/old`)).status;
    expect({ old, got: await json(`${url}get/new`), health: await json(`${url}health`) }).toEqual({
      old: 404,
      got: { key: "new", value: "from C" },
      health: {
        status: "ok",
        name,
        entry_count: 1,
        max_entries: 10,
        memory_bytes: 11 * 336, // chunks of 8 + 63 + 255 bytes, rounded to 16
        memory_used: 336,
        evict: "none",
        lock: { held_for_ms: 0 },
        reattached: { at: expect.any(String), reason: `/dev/shm${name} was unlinked` },
      },
    });
  });

  it("serves, within a second, what C writes to a segment that replaced its own under the same name", async () => {
    await using proc = server();
    const url = await proc.url();
    // The replacement, made under another name and renamed over the first: the name never leads nowhere.
    expect(kvtool(spare, ["create", "3", "63", "255"]).exitCode).toBe(0);
    expect(kvtool(spare, ["set", "k", "written by C"]).exitCode).toBe(0);
    renameSync(`/dev/shm${spare}`, `/dev/shm${name}`);
    const seen = await waitFor(async () => (await fetch(`${url}get/k`)).ok, { timeoutMs: 1000, what: "the value" });
    expect({ seen, health: await json(`${url}health`) }).toEqual({
      seen: true,
      health: {
        status: "ok",
        name,
        entry_count: 1,
        max_entries: 3,
        memory_bytes: 4 * 336,
        memory_used: 336,
        evict: "none",
        lock: { held_for_ms: 0 },
        reattached: { at: expect.any(String), reason: expect.stringMatching(/ was replaced by another segment \(inode \d+, was \d+\)$/) },
      },
    });
    expect(proc.stdout).toContain(`opened segment ${name}: 3 entries`);
  });
});
