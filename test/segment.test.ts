import { describe, expect, it } from "bun:test";
import { closeSync, openSync, readFileSync, writeFileSync, writeSync, ftruncateSync } from "node:fs";
import { KvError } from "../src/errors.ts";
import { HEADER, layoutOf } from "../src/layout.ts";
import { KvStore } from "../src/store.ts";
import { foreignOwner, TempStore, uniqueName, unlinkQuietly, WITHOUT_CAPABILITIES } from "./helpers/shm.ts";

/** A segment file made by hand under /dev/shm, removed when disposed. */
function handMade(bytes: Uint8Array): { name: string } & Disposable {
  const name = uniqueName();
  writeFileSync(`/dev/shm${name}`, bytes, { mode: 0o600 });
  return { name, [Symbol.dispose]: () => unlinkQuietly(name) };
}

/** The bytes of a sound, freshly created default store. */
function soundSegment(): Uint8Array {
  using t = new TempStore();
  t.store.set("k", "v");
  return new Uint8Array(readFileSync(`/dev/shm${t.name}`));
}

function openError(name: string): { code: string; message: string } {
  try {
    KvStore.open(name).close();
  } catch (e) {
    expect(e).toBeInstanceOf(KvError);
    return { code: (e as KvError).code, message: (e as KvError).message };
  }
  throw new Error("open succeeded");
}

function withU32(bytes: Uint8Array, offset: number, value: number): Uint8Array {
  const copy = bytes.slice();
  new DataView(copy.buffer).setUint32(offset, value, true);
  return copy;
}

describe("opening a segment that is not a sound store", () => {
  const sound = soundSegment();
  const cases: Record<string, Uint8Array> = {
    "truncated to half": sound.slice(0, sound.length / 2),
    "truncated to 10 bytes": sound.slice(0, 10),
    "random bytes": crypto.getRandomValues(new Uint8Array(sound.length)),
    "a foreign magic": withU32(sound, HEADER.magic, 0x12345678),
    "another layout version": withU32(sound, HEADER.layoutVersion, 3),
    "another mutex size": withU32(sound, HEADER.mutexSize, 48),
    "a key_max that disagrees with the sizes": withU32(sound, HEADER.keyMax, 200),
    "an absurd max_entries": withU32(sound, HEADER.maxEntries, 0xffffffff),
    "an index size that disagrees": withU32(sound, HEADER.indexCells, 64),
    "extra bytes at the end": new Uint8Array([...sound, 0, 0, 0, 0, 0, 0, 0, 0]),
  };
  for (const [what, bytes] of Object.entries(cases)) {
    it(`gives INCOMPATIBLE for ${what}`, () => {
      using seg = handMade(bytes);
      expect(openError(seg.name)).toEqual({ code: "INCOMPATIBLE", message: expect.stringContaining("incompatible segment") });
    });
  }

  it("tells what to do with a store of layout 1, made by an older shmkv", () => {
    using seg = handMade(withU32(sound, HEADER.layoutVersion, 1));
    expect(openError(seg.name)).toEqual({
      code: "INCOMPATIBLE",
      message: `cannot open ${seg.name}: it is a store of layout 1, made by an older shmkv; this one reads layout 2 ` +
        `(values in a heap). Dump it with the shmkv that made it (shmkv dump FILE --name ${seg.name}), ` +
        `unlink it (rm /dev/shm${seg.name}), and restore it with this one (shmkv restore FILE --name ${seg.name})`,
    });
  });

  it("waits about a second for a creator that never finishes, then gives NOT_READY", () => {
    using empty = handMade(new Uint8Array(0));
    const started = performance.now();
    expect(openError(empty.name).code).toBe("NOT_READY");
    expect(performance.now() - started).toBeGreaterThan(900);
    using unready = handMade(withU32(sound, HEADER.ready, 0));
    expect(openError(unready.name).code).toBe("NOT_READY");
  });

  it("names the segment and the fix when permission is denied", () => {
    // Root skips the mode check: the segment goes to another owner, and the child runs without
    // the capabilities that let root read it anyway.
    using t = new TempStore();
    foreignOwner(t.name);
    const child = Bun.spawnSync([...WITHOUT_CAPABILITIES, process.execPath, `${import.meta.dir}/fixtures/open.ts`, t.name]);
    expect(child.stdout.toString().trim()).toBe(
      `EACCES: permission denied opening /dev/shm${t.name}: run as its owner, or have its owner widen its mode ` +
        `(e.g. chmod 0660 /dev/shm${t.name} and share its group)`,
    );
  });
});

/** mulberry32: a small seeded PRNG, so a failing round can be replayed. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("reading a segment corrupted under the reader", () => {
  it("returns data or a KvError for every read, never crashes (seeded, 300 rounds)", () => {
    const MUTEX = [128, 192]; // corrupting the lock itself can hang writers: out of scope here
    const allowed = new Set(["CORRUPT", "KEY_TOO_LONG"]);
    let corruptFound = 0;
    for (let seed = 1; seed <= 300; seed++) {
      const random = prng(seed);
      using t = new TempStore({ maxEntries: 16, keyMax: 12, valueMax: 40 });
      const keys = Array.from({ length: 12 }, (_, i) => `key-${i}`);
      keys.forEach((k, i) => t.store.set(k, `value-${i}-${"z".repeat(i)}`));
      keys.slice(0, 3).forEach((k) => t.store.delete(k));
      // Odd rounds hit anywhere past the fixed header fields; even ones only what kv_check covers
      // (header, index, entries: not the change ring).
      const size = readFileSync(`/dev/shm${t.name}`).length;
      const end = seed % 2 ? size : layoutOf({ maxEntries: 16, keyMax: 12, valueMax: 40 }).ringOff;
      const fd = openSync(`/dev/shm${t.name}`, "r+");
      for (let n = 1 + Math.floor(random() * 8); n > 0; n--) {
        let at = HEADER.seq + Math.floor(random() * (end - HEADER.seq - 4));
        if (at >= MUTEX[0]! - 4 && at < MUTEX[1]!) at = MUTEX[1]!;
        const junk = new Uint8Array(1 + Math.floor(random() * 4)).map(() => Math.floor(random() * 256));
        writeSync(fd, junk, 0, junk.length, at);
      }
      closeSync(fd);
      const reads = [
        ...keys.map((k) => () => t.store.getEntry(k)),
        () => t.store.status(), () => t.store.version, () => t.store.count, () => t.store.changesSince(0),
      ];
      for (const read of reads) {
        try {
          read();
        } catch (e) {
          expect(e).toBeInstanceOf(KvError);
          expect(allowed.has((e as KvError).code)).toBe(true);
        }
      }
      try {
        t.store.check();
      } catch (e) {
        expect((e as KvError).code).toBe("CORRUPT");
        if (seed % 2 === 0) corruptFound++;
      }
    }
    expect(corruptFound).toBeGreaterThan(50); // of 150 rounds that damage what the check covers
  });
});
