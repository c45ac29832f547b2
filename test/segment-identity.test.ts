/** Segment identity: what a store has mapped, what its name leads to now, and telling them apart. */
import { describe, expect, it } from "bun:test";
import { statSync } from "node:fs";
import { namedIdentity, replacement } from "../src/segment-identity.ts";
import { KvStore } from "../src/store.ts";
import { TempStore } from "./helpers/shm.ts";

describe("KvStore.identity", () => {
  it("is the device and inode of the file its name led to when opened", () => {
    using temp = new TempStore();
    const stat = statSync(`/dev/shm${temp.name}`);
    expect(temp.store.identity).toEqual({ dev: stat.dev, ino: stat.ino });
  });

  it("stays that of the mapped segment after the name is unlinked", () => {
    using temp = new TempStore();
    const before = namedIdentity(temp.name);
    KvStore.unlink(temp.name);
    expect({ identity: temp.store.identity, named: namedIdentity(temp.name) }).toEqual({ identity: before!, named: undefined });
  });
});

describe("replacement", () => {
  it("is undefined while the name leads to the mapped segment", () => {
    using temp = new TempStore();
    expect(replacement(temp.name, temp.store.identity)).toBeUndefined();
  });

  it("says the name was unlinked", () => {
    using temp = new TempStore();
    KvStore.unlink(temp.name);
    expect(replacement(temp.name, temp.store.identity)).toBe(`/dev/shm${temp.name} was unlinked`);
  });

  it("says the name leads to another segment, with both inodes", () => {
    using temp = new TempStore(); // disposing it unlinks the name: the other segment, by then
    const old = temp.store.identity!;
    KvStore.unlink(temp.name);
    using other = KvStore.open(temp.name, { create: true });
    expect(replacement(temp.name, old)).toBe(
      `/dev/shm${temp.name} was replaced by another segment (inode ${other.identity!.ino}, was ${old.ino})`,
    );
  });
});
