/** The server and the segment's file mode: 0600 by default whatever the umask, KV_SHM_MODE only on creation. */
import { afterEach, beforeEach, describe, expect, it } from "bun:test";
import { statSync } from "node:fs";
import { startServer, type Logger } from "../../src/server.ts";
import { KvStore, type KvOptions } from "../../src/store.ts";
import { uniqueName, unlinkQuietly } from "../helpers/shm.ts";

let name: string;
let lines: string[];
const log: Logger = { info: (line) => void lines.push(line), error: (line) => void lines.push(line) };

beforeEach(() => {
  name = uniqueName();
  lines = [];
});

afterEach(() => unlinkQuietly(name));

/** The mode of the segment a server makes (or finds) under `umask`, with these creation options. */
async function modeServed(umask: number, create: KvOptions): Promise<number> {
  const old = process.umask(umask);
  try {
    await startServer({ host: "127.0.0.1", port: 0, name, create, maxBodyBytes: 1024, logRequests: false }, log).abort();
  } finally {
    process.umask(old);
  }
  const mode = statSync(`/dev/shm${name}`).mode & 0o777;
  unlinkQuietly(name);
  return mode;
}

describe("the segment a server creates", () => {
  it("is 0600 by default, and KV_SHM_MODE's mode when set, whatever the umask", async () => {
    expect([
      await modeServed(0o000, {}),
      await modeServed(0o077, {}),
      await modeServed(0o000, { mode: 0o660 }),
      await modeServed(0o077, { mode: 0o660 }),
    ]).toEqual([0o600, 0o600, 0o660, 0o660]);
  });
});

describe("a segment that exists", () => {
  it("keeps its mode: a server told KV_SHM_MODE=0666 never widens it", async () => {
    KvStore.open(name, { create: true }).close();
    const mode = () => statSync(`/dev/shm${name}`).mode & 0o777;
    const before = mode();
    await startServer({ host: "127.0.0.1", port: 0, name, create: { mode: 0o666 }, maxBodyBytes: 1024, logRequests: false }, log).abort();
    expect({ before, after: mode(), opened: lines[0] }).toEqual({
      before: 0o600,
      after: 0o600,
      opened: `opened segment ${name}: 10 entries, keys up to 63 bytes, values up to 255 bytes, memory 3696 bytes, eviction none`,
    });
  });
});
