import { describe, expect, it } from "bun:test";
import { BACKLOG_LIMIT, ChangeFeed, feedOf, watch, type FeedEvent } from "../src/feed.ts";
import { KvStore } from "../src/store.ts";
import { kvtool } from "./helpers/kvtool.ts";
import { TempStore } from "./helpers/shm.ts";
import { nextAccessTick, waitFor } from "./helpers/wait.ts";

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

  it("tells a delete the store made itself by its reason, and a set with an expiry by its expiresAt", async () => {
    using t = new TempStore({ maxEntries: 2, evict: "lru" });
    t.store.set("short", "1", { ttl: 30 });
    const expiresAt = t.store.getEntry("short")!.expiresAt!;
    t.store.set("b", "2");
    t.store.delete("b");
    await waitFor(() => t.store.get("short") === undefined, { what: "short to expire" });
    expect(t.store.expire()).toBe(1);
    t.store.set("c", "3");
    await nextAccessTick();
    t.store.set("d", "4");
    t.store.set("e", "5"); // the store is full: c, used least recently, is evicted
    const { changes } = t.store.changesSince(0);
    expect(changes.map(({ timestamp, ...c }) => c)).toEqual([
      { revision: 1, op: "set", key: "short", value: "1", expiresAt },
      { revision: 2, op: "set", key: "b", value: "2" },
      { revision: 3, op: "delete", key: "b" },
      { revision: 4, op: "delete", key: "short", reason: "expired" },
      { revision: 5, op: "set", key: "c", value: "3" },
      { revision: 6, op: "set", key: "d", value: "4" },
      { revision: 7, op: "delete", key: "c", reason: "evicted" },
      { revision: 8, op: "set", key: "e", value: "5" },
    ]);
    const bytes = t.store.changeBytesSince(0).changes;
    expect([bytes[0]!.expiresAt, bytes[3]!.reason, bytes[6]!.reason]).toEqual([expiresAt, "expired", "evicted"]);
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
    await waitFor(() => events.length === 2);
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

  it("never tells a subscriber that read the store's version since the last poll to resync", () => {
    using t = new TempStore();
    const feed = new ChangeFeed(t.store);
    const first: FeedEvent[] = [];
    const stopFirst = feed.subscribe(0, (e) => first.push(e)); // the feed now follows the store
    // Another process writes; a client reads the version (as from /status) before the feed polls.
    expect(kvtool(t.name, ["set", "k", "from C"]).exitCode).toBe(0);
    const read = t.store.version;
    const later: FeedEvent[] = [];
    const stopLater = feed.subscribe(read, (e) => later.push(e));
    t.store.set("k", "next");
    feed.poll();
    stopFirst();
    stopLater();
    expect({ first: first.map(brief), later: later.map(brief) }).toEqual({
      first: [[1, "set", "k", "from C"], [2, "set", "k", "next"]],
      later: [[2, "set", "k", "next"]],
    });
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

/** An event, short: [revision, op, key, value?] or ["resync", version]. */
function brief(event: FeedEvent): unknown[] {
  if (event.type === "resync") return ["resync", event.version];
  const { revision, op, key, value } = event.change;
  return value === undefined ? [revision, op, key] : [revision, op, key, value];
}

describe("ChangeFeed, idle", () => {
  it("reads only the version word while nothing changes", () => {
    using t = new TempStore();
    const feed = new ChangeFeed(t.store);
    let ringReads = 0;
    const changesSince = t.store.changesSince.bind(t.store);
    t.store.changesSince = (since) => (ringReads++, changesSince(since));
    const stop = feed.subscribe(0, () => {});
    for (let i = 0; i < 100; i++) feed.poll();
    const idle = ringReads;
    t.store.set("k", "v");
    for (let i = 0; i < 100; i++) feed.poll();
    stop();
    expect({ idle, afterOneChange: ringReads }).toEqual({ idle: 0, afterOneChange: 1 });
  });
});

describe("ChangeFeed, beyond the ring", () => {
  it("tells a subscriber whose revision is beyond the store's (another segment's) to resync", () => {
    using t = new TempStore();
    t.store.set("k", "v");
    const events: FeedEvent[] = [];
    const stop = new ChangeFeed(t.store).subscribe(5, (e) => events.push(e));
    stop();
    expect(events).toEqual([{ type: "resync", version: 1 }]);
  });

  it("ends its subscribers when its store is closed", () => {
    using t = new TempStore();
    using other = KvStore.open(t.name);
    const feed = new ChangeFeed(other);
    let ended = 0;
    feed.subscribe(0, () => {}, () => ended++);
    other.close();
    feed.poll();
    expect({ ended, subscribers: feed.subscribers }).toEqual({ ended: 1, subscribers: 0 });
    expect(() => feed.subscribe(0, () => {})).toThrow(expect.objectContaining({ code: "CLOSED" }));
  });

  it("follows a source to another store, telling its subscribers to resync, and waits while it has none", () => {
    using a = new TempStore();
    using b = new TempStore();
    for (let i = 0; i < 3; i++) b.store.set(`b${i}`, "x");
    let current: KvStore | undefined = a.store;
    const feed = new ChangeFeed(() => current);
    const events: FeedEvent[] = [];
    const stop = feed.subscribe(0, (e) => events.push(e));
    a.store.set("a", "1");
    feed.poll();
    current = b.store;
    feed.poll();
    b.store.set("b", "2");
    feed.poll();
    current = undefined;
    feed.poll();
    const subscribers = feed.subscribers;
    stop();
    expect({ events: events.map(brief), subscribers }).toEqual({
      events: [[1, "set", "a", "1"], ["resync", 3], [4, "set", "b", "2"]],
      subscribers: 1,
    });
  });
});

describe("watch", () => {
  it("yields the end of an expired entry as a delete with reason expired", async () => {
    using t = new TempStore();
    t.store.set("short", "1", { ttl: 30 });
    const iterator = watch(t.store);
    await waitFor(() => t.store.get("short") === undefined, { what: "short to expire" });
    t.store.expire();
    for await (const event of iterator) {
      expect(event).toEqual({ type: "change", change: { revision: 2, op: "delete", key: "short", reason: "expired", timestamp: (event as { change: { timestamp: number } }).change.timestamp } });
      break;
    }
  });

  it("yields each change made from now on, by any process, and lets go of the feed when the loop breaks", async () => {
    using t = new TempStore();
    t.store.set("before", "0");
    const seen: unknown[] = [];
    const iterator = watch(t.store);
    const writes = (async () => {
      await waitFor(() => feedOf(t.store).subscribers === 1);
      expect(kvtool(t.name, ["set", "c", "from C"]).exitCode).toBe(0);
      expect(kvtool(t.name, ["del", "c"]).exitCode).toBe(0);
    })();
    for await (const event of iterator) {
      seen.push(brief(event));
      if (seen.length === 2) break;
    }
    await writes;
    expect({ seen, subscribers: feedOf(t.store).subscribers }).toEqual({
      seen: [[2, "set", "c", "from C"], [3, "delete", "c"]],
      subscribers: 0,
    });
  });

  it("starts after `since` with what the ring still holds, and keeps to the prefix", async () => {
    using t = new TempStore();
    for (const key of ["app/a", "other", "app/b", "app/c"]) t.store.set(key, key);
    const iterator = watch(t.store, { since: 1, prefix: "app/" });
    const seen = [(await iterator.next()).value, (await iterator.next()).value].map((e) => brief(e!));
    await iterator.return();
    expect(seen).toEqual([[3, "set", "app/b", "app/b"], [4, "set", "app/c", "app/c"]]);
  });

  it("shares one feed, and so one timer, among every iterator of a store", async () => {
    using t = new TempStore();
    const iterators = [watch(t.store), watch(t.store), watch(t.store)];
    const firsts = iterators.map((it) => it.next());
    const subscribers = feedOf(t.store).subscribers;
    t.store.set("k", "v");
    const events = (await Promise.all(firsts)).map((r) => brief(r.value!));
    await Promise.all(iterators.map((it) => it.return()));
    expect({ subscribers, events, after: feedOf(t.store).subscribers }).toEqual({
      subscribers: 3,
      events: [[1, "set", "k", "v"], [1, "set", "k", "v"], [1, "set", "k", "v"]],
      after: 0,
    });
  });

  it("ends when its signal aborts", async () => {
    using t = new TempStore();
    const controller = new AbortController();
    const next = watch(t.store, { signal: controller.signal }).next();
    await waitFor(() => feedOf(t.store).subscribers === 1);
    controller.abort();
    expect({ result: await next, subscribers: feedOf(t.store).subscribers }).toEqual({
      result: { done: true, value: undefined },
      subscribers: 0,
    });
  });

  it("ends when the store is closed", async () => {
    using t = new TempStore();
    const other = KvStore.open(t.name);
    const next = watch(other).next();
    await waitFor(() => feedOf(other).subscribers === 1);
    other.close();
    expect(await next).toEqual({ done: true, value: undefined });
  });

  it("gives a consumer that leaves too many events unread one resync in their place", async () => {
    using t = new TempStore();
    const iterator = watch(t.store);
    const first = iterator.next();
    t.store.set("k", "0");
    expect(brief((await first).value!)).toEqual([1, "set", "k", "0"]);
    const feed = feedOf(t.store);
    for (let batch = 0; batch < 11; batch++) {
      for (let i = 0; i < 100; i++) t.store.set("k", `${batch}-${i}`);
      feed.poll(); // 100 at a time: never more than the ring holds
    }
    const unread = BACKLOG_LIMIT + 1; // revisions 2..1026 overflow the backlog
    const rest = 1101 - (unread + 1);
    const drained: unknown[] = [];
    for (let i = 0; i <= rest; i++) drained.push(brief((await iterator.next()).value!));
    await iterator.return();
    expect(drained).toEqual([["resync", 1026], ...Array.from({ length: rest }, (_, i) => [1027 + i, "set", "k", expect.any(String)])]);
  });
});
