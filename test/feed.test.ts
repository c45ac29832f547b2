import { describe, expect, it } from "bun:test";
import { ChangeFeed, type FeedEvent } from "../src/feed.ts";
import { kvtool } from "./helpers/kvtool.ts";
import { TempStore } from "./helpers/shm.ts";

/** Resolve once `condition` holds, polling on the event loop; fail after `ms`. */
async function until(condition: () => boolean, ms = 2000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 1));
  }
}

describe("KvStore.changesSince", () => {
  it("lists every write after a revision, from any process, oldest first", () => {
    using t = new TempStore();
    t.store.set("a", "1");
    expect(kvtool(t.name, ["set", "b", "from C"]).exitCode).toBe(0);
    t.store.delete("a");
    const { version, changes, expired } = t.store.changesSince(0);
    expect({ version, expired, changes: changes.map(({ timestamp, ...c }) => c) }).toEqual({
      version: 3,
      expired: false,
      changes: [
        { revision: 1, op: "set", key: "a", value: "1" },
        { revision: 2, op: "set", key: "b", value: "from C" },
        { revision: 3, op: "delete", key: "a" },
      ],
    });
    expect(t.store.changesSince(2).changes.map((c) => c.revision)).toEqual([3]);
    expect(t.store.changesSince(3)).toEqual({ version: 3, changes: [], expired: false });
  });

  it("reports expired once the ring (256 changes) has moved past the revision", () => {
    using t = new TempStore();
    for (let i = 0; i < 300; i++) t.store.set("k", `${i}`);
    expect(t.store.changesSince(0)).toEqual({ version: 300, changes: [], expired: true });
    const recent = t.store.changesSince(300 - 256);
    expect({ n: recent.changes.length, first: recent.changes[0]?.value, expired: recent.expired }).toEqual({ n: 256, first: "44", expired: false });
  });

  it("never shows a write that a dead writer's repair rolled back", () => {
    using t = new TempStore();
    t.store.set("k", "kept");
    // Point 6: the change is in the ring and version bumped, but the undo record is still armed.
    expect(kvtool(t.name, ["set", "k", "rolled-back"], 6).signalCode).toBe("SIGKILL");
    expect(t.store.changesSince(1)).toEqual({ version: 1, changes: [], expired: false });
    t.store.set("k", "next");
    expect(t.store.changesSince(1).changes.map((c) => [c.revision, c.value])).toEqual([[2, "next"]]);
  });
});

describe("ChangeFeed", () => {
  it("delivers the backlog, then each change made by another process", async () => {
    using t = new TempStore();
    t.store.set("before", "1");
    const feed = new ChangeFeed(t.store, 2);
    const events: FeedEvent[] = [];
    const stop = feed.subscribe(0, (e) => events.push(e));
    expect(kvtool(t.name, ["set", "after", "2"]).exitCode).toBe(0);
    await until(() => events.length === 2);
    stop();
    expect(events.map((e) => (e.type === "change" ? [e.change.revision, e.change.key] : e))).toEqual([[1, "before"], [2, "after"]]);
    expect(feed.subscribers).toBe(0);
  });

  it("tells a subscriber that fell behind the ring to resync", () => {
    using t = new TempStore();
    const feed = new ChangeFeed(t.store);
    const events: FeedEvent[] = [];
    const stop = feed.subscribe(0, (e) => events.push(e));
    for (let i = 0; i < 300; i++) t.store.set("k", `${i}`);
    feed.poll();
    stop();
    expect(events).toEqual([{ type: "resync", version: 300 }]);
  });

  it("shares one poll among all subscribers", () => {
    using t = new TempStore();
    const feed = new ChangeFeed(t.store);
    const seen = [0, 0, 0];
    const stops = seen.map((_, i) => feed.subscribe(0, () => seen[i]!++));
    t.store.set("k", "v");
    feed.poll();
    stops.forEach((s) => s());
    expect(seen).toEqual([1, 1, 1]);
  });
});
