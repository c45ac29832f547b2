/**
 * The facts the TypeScript side states once (src/limits.ts, src/errors.ts, src/layout.ts) agree with
 * csrc/shared_memory_kv.h and csrc/layout.h, read here as text: a code, a limit or an offset added or
 * changed in the headers alone fails this test.
 */
import { describe, expect, it } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { codeOf, RC } from "../src/errors.ts";
import { kvLib } from "../src/ffi.ts";
import { CHANGE_FLAG, ENTRY, EVICT, HEADER as HEADER_OFFSETS, OP, RING_CELLS } from "../src/layout.ts";
import { DEFAULTS, LIMITS, NAME_MAX, nameProblem, READ_ATTEMPTS } from "../src/limits.ts";

const HEADER = readFileSync(join(import.meta.dir, "..", "csrc", "shared_memory_kv.h"), "utf8");
/** The library's own header of the segment's structures, with their offsets asserted. */
const LAYOUT = readFileSync(join(import.meta.dir, "..", "csrc", "layout.h"), "utf8");

/** The value of a header #define: a decimal or octal integer, negated or shifted, with or without `u`. */
function evaluate(text: string): number {
  const plain = text.replace(/\b(\d+)u\b/g, "$1").replace(/^\((.*)\)$/, "$1").trim();
  const shift = /^(\d+) << (\d+)$/.exec(plain);
  if (shift) return Number(shift[1]) * 2 ** Number(shift[2]);
  if (/^-?0[0-7]+$/.test(plain)) return Number.parseInt(plain, 8);
  if (/^-?\d+$/.test(plain)) return Number(plain);
  throw new Error(`cannot read #define value ${JSON.stringify(text)}`);
}

/** Every integer #define of the headers, by name. */
const DEFINES = new Map(
  [...`${HEADER}\n${LAYOUT}`.matchAll(/^#define\s+(KV_\w+)\s+(\(?-?[\d]+u?(?: << \d+)?\)?)/gm)].map(([, name, value]) => [name!, evaluate(value!)]),
);

function define(name: string): number {
  const value = DEFINES.get(name);
  if (value === undefined) throw new Error(`csrc/shared_memory_kv.h defines no ${name}`);
  return value;
}

describe("the TypeScript side's facts against csrc/shared_memory_kv.h", () => {
  it("reads the header's defines", () => {
    expect([define("KV_NOTFOUND"), define("KV_LIMIT_MAX_ENTRIES"), define("KV_DEFAULT_MODE")]).toEqual([-31000, 16777216, 0o600]);
  });

  it("names every return code of the header's reserved range, and no other", () => {
    const [first, last] = [define("KV_ERR_FIRST"), define("KV_ERR_LAST")];
    const inHeader = [...DEFINES]
      .filter(([name, value]) => value >= first && value <= last && name !== "KV_ERR_FIRST" && name !== "KV_ERR_LAST")
      .map(([, value]) => value)
      .sort();
    expect(Object.values(RC).sort() as number[]).toEqual(inHeader);
    // codeOf gives each a name of its own, never the "ERNO..." of an unknown errno.
    expect(inHeader.map(codeOf).filter((code) => !(code in RC))).toEqual([]);
  });

  it("has kv_strerror describe every return code", () => {
    const lib = kvLib();
    const unknown = Object.values(RC).filter((rc) => String(lib.kv_strerror(rc)) === "unknown error");
    expect(unknown).toEqual([]);
  });

  it("states the default and largest geometry as the header does", () => {
    expect(DEFAULTS as Record<string, number>).toEqual({
      maxEntries: define("KV_DEFAULT_MAX_ENTRIES"),
      keyMax: define("KV_DEFAULT_KEY_MAX"),
      valueMax: define("KV_DEFAULT_VALUE_MAX"),
      mode: define("KV_DEFAULT_MODE"),
    });
    expect(LIMITS as Record<string, number>).toEqual({
      maxEntries: define("KV_LIMIT_MAX_ENTRIES"),
      keyMax: define("KV_LIMIT_KEY_MAX"),
      valueMax: define("KV_LIMIT_VALUE_MAX"),
      valueMaxMemory: define("KV_LIMIT_VALUE_MAX_MEMORY"),
      memoryMin: define("KV_LIMIT_MEMORY_MIN"),
      memory: define("KV_LIMIT_MEMORY"),
      mode: 0o777,
    });
  });

  it("states the change ops, the change flags and the eviction policies as the headers do", () => {
    expect({ OP, CHANGE_FLAG, EVICT } as Record<string, Record<string, number>>).toEqual({
      OP: { set: define("KV_CHANGE_SET"), delete: define("KV_CHANGE_DELETE"), expired: define("KV_CHANGE_EXPIRED"), evicted: define("KV_CHANGE_EVICTED") },
      CHANGE_FLAG: { unkept: define("KV_CHANGE_UNKEPT"), expires: define("KV_CHANGE_EXPIRES") },
      EVICT: { none: define("KV_EVICT_NONE"), lru: define("KV_EVICT_LRU") },
    });
  });

  it("states the offsets layout.h asserts of the header's and an entry's fields as it does", () => {
    const ours: Record<string, Record<string, number>> = { kv_header: HEADER_OFFSETS, kv_entry: ENTRY };
    const checked: string[] = [];
    for (const [, struct, field, offset] of LAYOUT.matchAll(/_Static_assert\(offsetof\((kv_header|kv_entry), (\w+)\) == (\d+)/g)) {
      // lock_since_ms is HEADER.lockSince, expires_at_ms ENTRY.expiresAt: the unit is in the comments.
      const name = field!.replace(/_ms$/, "").replace(/_(\w)/g, (_, c: string) => c.toUpperCase());
      if (!(name in ours[struct!]!)) continue;
      expect(`${struct}.${name} ${ours[struct!]![name]}`).toBe(`${struct}.${name} ${offset}`);
      checked.push(name);
    }
    expect(checked).toEqual(expect.arrayContaining(["seq", "lastAccess", "expiresAt", "evictPolicy", "expiredTotal", "evictedTotal"]));
  });

  it("states the ring, the reader's attempts and the name rule as the header does", () => {
    expect({ RING_CELLS, READ_ATTEMPTS, NAME_MAX }).toEqual({
      RING_CELLS: define("KV_RING_CELLS"),
      READ_ATTEMPTS: define("KV_READ_SPINS"),
      NAME_MAX: define("KV_NAME_MAX"),
    });
    const longest = `/${"n".repeat(NAME_MAX - 1)}`;
    expect([longest, `${longest}n`, "/", "nope", "/a/b"].map((name) => nameProblem(name) === undefined)).toEqual([
      true, false, false, false, false,
    ]);
  });
});
