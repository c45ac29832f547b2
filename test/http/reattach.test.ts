/** StoreSlot when its segment changes under it: unlinked, or replaced by another under the same name. */
import { afterEach, beforeEach, describe, expect, it } from "bun:test";
import { writeFileSync } from "node:fs";
import { createApp } from "../../src/http/app.ts";
import { StoreSlot, type OpeningOptions } from "../../src/http/store-slot.ts";
import { KvStore } from "../../src/store.ts";
import { answer, get } from "../helpers/http.ts";
import { uniqueName, unlinkQuietly } from "../helpers/shm.ts";
import { waitFor } from "../helpers/wait.ts";

let name: string;
let events: string[];
let slot: StoreSlot;

function watching(options: OpeningOptions = {}): StoreSlot {
  slot = StoreSlot.opening(() => KvStore.open(name, { create: true }), {
    retryMs: 10,
    watchMs: 10,
    onOpen: (store) => events.push(store.created ? "created" : "opened"),
    onFailure: (reason) => events.push(`failed: ${reason}`),
    onReplaced: (reason) => events.push(`replaced: ${reason}`),
    ...options,
  });
  return slot;
}

/** The slot's store once it is another than `old`. */
function reattached(old: KvStore): Promise<KvStore> {
  return waitFor(() => (slot.current !== old ? slot.current : undefined), { what: "the slot to reattach" });
}

beforeEach(() => {
  name = uniqueName();
  events = [];
});

afterEach(() => {
  slot.close();
  unlinkQuietly(name);
});

describe("StoreSlot.opening, when the segment changes under it", () => {
  it("creates the segment again once it was unlinked, and says when and why", async () => {
    const old = watching().require();
    KvStore.unlink(name);
    const store = await reattached(old);
    expect({ created: store.created, oldClosed: old.closed, events, reattached: slot.reattached }).toEqual({
      created: true,
      oldClosed: true,
      events: ["created", `replaced: /dev/shm${name} was unlinked`, "created"],
      reattached: { at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/), reason: `/dev/shm${name} was unlinked` },
    });
  });

  it("attaches to the segment that replaced it, and sees what others write there", async () => {
    const old = watching().require();
    const oldInode = old.identity!.ino;
    KvStore.unlink(name);
    using other = KvStore.open(name, { create: true, maxEntries: 3 });
    other.set("k", "written elsewhere");
    const store = await reattached(old);
    expect({ maxEntries: store.maxEntries, value: store.get("k"), reason: slot.reattached?.reason }).toEqual({
      maxEntries: 3,
      value: "written elsewhere",
      reason: `/dev/shm${name} was replaced by another segment (inode ${other.identity!.ino}, was ${oldInode})`,
    });
  });

  it("answers with the reason while the name leads to no store, then attaches once it does", async () => {
    const old = watching().require();
    KvStore.unlink(name);
    writeFileSync(`/dev/shm${name}`, "not a store ".repeat(64));
    await waitFor(() => events.some((e) => e.startsWith("failed:")), { what: "a failed attempt" });
    expect(() => slot.require()).toThrow(/incompatible segment/);
    unlinkQuietly(name);
    const store = await reattached(old);
    expect(store.created).toBe(true);
  });

  it("reports the reattachment in /health, with the usual fields", async () => {
    const old = watching().require();
    KvStore.unlink(name);
    await reattached(old);
    expect(await answer(createApp(slot).handle(get("/health")))).toEqual({
      status: 200,
      body: {
        status: "ok",
        name,
        entry_count: 0,
        max_entries: 10,
        memory_bytes: 11 * 336,
        memory_used: 0,
        evict: "none",
        lock: { held_for_ms: 0 },
        reattached: { at: slot.reattached!.at, reason: `/dev/shm${name} was unlinked` },
      },
    });
  });
});
