import { describe, expect, it } from "bun:test";
import { KvError } from "../src/errors.ts";
import { TempStore } from "./helpers/shm.ts";

describe("a store of 1,000,000 entries", () => {
  it("fills, reads back, refuses one more, empties, and stays sound", () => {
    const N = 1_000_000;
    using t = new TempStore({ maxEntries: N, keyMax: 16, valueMax: 16 });
    const s = t.store;
    for (let i = 0; i < N; i++) s.set(`key${i}`, `v${i}`);
    let wrong = 0;
    for (let i = 0; i < N; i++) if (s.get(`key${i}`) !== `v${i}`) wrong++;
    expect({ wrong, count: s.count, version: s.version }).toEqual({ wrong: 0, count: N, version: N });
    expect(() => s.set("one-more", "x")).toThrow(
      new KvError("TABLE_FULL", `cannot set "one-more": the store is full: all ${N} entries are in use; grow it with shmkv resize --name ${t.name} --max-entries ${2 * N}`),
    );
    s.check();
    for (let i = 0; i < N; i++) s.delete(`key${i}`);
    expect({ count: s.count, version: s.version, first: s.get("key0") }).toEqual({ count: 0, version: 2 * N, first: undefined });
    s.check();
  });
});
