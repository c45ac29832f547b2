/** StoreSlot: a store that may be absent, the reason why, and the retries until it is there. */
import { describe, expect, it } from "bun:test";
import { ApiError } from "../../src/http/errors.ts";
import { StoreSlot } from "../../src/http/store-slot.ts";
import { KvStore } from "../../src/store.ts";
import { GarbageSegment } from "../helpers/segments.ts";
import { TempStore } from "../helpers/shm.ts";
import { waitFor } from "../helpers/wait.ts";

/** The slot's store, or undefined while it has none. */
function current(slot: StoreSlot): KvStore | undefined {
  try {
    return slot.require();
  } catch {
    return undefined;
  }
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error("nothing was thrown");
}

describe("StoreSlot.of", () => {
  it("holds an open store and closes it when closed, without unlinking it", () => {
    using temp = new TempStore();
    const slot = StoreSlot.of(temp.store);
    expect(slot.require()).toBe(temp.store);
    slot.close();
    expect(temp.store.closed).toBe(true);
    using again = KvStore.open(temp.name);
    expect(again.name).toBe(temp.name);
  });
});

describe("StoreSlot.opening", () => {
  it("opens the store at once when it can", () => {
    using temp = new TempStore();
    const opened: string[] = [];
    using slot = StoreSlot.opening(() => KvStore.open(temp.name), { onOpen: (s) => opened.push(s.name) });
    expect({ open: current(slot) !== undefined, opened }).toEqual({ open: true, opened: [temp.name] });
  });

  it("throws STORE_UNAVAILABLE with the reason while it cannot open the store", () => {
    using garbage = new GarbageSegment();
    using slot = StoreSlot.opening(() => KvStore.open(garbage.name, { create: true }));
    const error = thrown(() => slot.require());
    expect(error).toBeInstanceOf(ApiError);
    expect({ code: (error as ApiError).code, message: (error as ApiError).message }).toEqual({
      code: "STORE_UNAVAILABLE",
      message: expect.stringMatching(/^the store is not available: cannot open .*incompatible segment/),
    });
  });

  it("keeps retrying in the background and serves the store once it can be opened", async () => {
    using garbage = new GarbageSegment();
    const failures: string[] = [];
    using slot = StoreSlot.opening(() => KvStore.open(garbage.name, { create: true }), {
      retryMs: 20,
      onFailure: (reason) => failures.push(reason),
    });
    await waitFor(() => current(slot) === undefined && failures.length === 1, { what: "the first failure" });
    garbage.remove();
    const store = await waitFor(() => current(slot), { what: "the retry to create the store" });
    expect({ created: store.created, failures: failures.length }).toEqual({ created: true, failures: 1 });
  });

  it("reports a reason once, not at every retry", async () => {
    using garbage = new GarbageSegment();
    let attempts = 0;
    const failures: string[] = [];
    using slot = StoreSlot.opening(
      () => {
        attempts++;
        return KvStore.open(garbage.name, { create: true });
      },
      { retryMs: 5, onFailure: (reason) => failures.push(reason) },
    );
    await waitFor(() => attempts >= 5, { what: "five attempts" });
    expect({ open: current(slot) !== undefined, failures: failures.length }).toEqual({ open: false, failures: 1 });
  });

  it("stops retrying when closed", async () => {
    using garbage = new GarbageSegment();
    let attempts = 0;
    const slot = StoreSlot.opening(
      () => {
        attempts++;
        return KvStore.open(garbage.name, { create: true });
      },
      { retryMs: 5 },
    );
    await waitFor(() => attempts >= 2, { what: "a retry" });
    slot.close();
    const after = attempts;
    // A witness retrying at the same pace: once it has tried ten times, a live timer would have too.
    let witnessed = 0;
    using witness = StoreSlot.opening(() => {
      witnessed++;
      return KvStore.open(garbage.name, { create: true });
    }, { retryMs: 5 });
    await waitFor(() => witnessed >= 10, { what: "ten attempts of the witness" });
    expect({
      attempts,
      witnessStillFailing: current(witness) === undefined,
      reason: (thrown(() => slot.require()) as Error).message,
    }).toEqual({ attempts: after, witnessStillFailing: true, reason: "the store is not available: the server is shutting down" });
  });
});
