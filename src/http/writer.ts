/**
 * KvWriter: how the service writes. Locally (the store's own lock) by default; through Redis when
 * the server replicates (src/replication/), where a write answers once its own segment has it.
 */
import type { KvStore } from "../store.ts";
import { nextTurn } from "./busy.ts";
import { deleteIf, setIf, type Condition } from "./conditions.ts";
import { SLICE_SLOTS, type WhenFree } from "./listing.ts";
import type { StoreSlot } from "./store-slot.ts";

/** An increment's outcome: the new value and the revision it gave the entry. */
export interface Incremented {
  value: bigint;
  revision: number;
}

export interface KvWriter {
  /** Set `key` when `condition` holds, to expire after `ttlMs` when given; the new revision, or PRECONDITION_FAILED. */
  set(key: string, value: string, condition: Condition, ttlMs?: number): number | Promise<number>;
  /** Delete `key` when `condition` holds; false when there was nothing to delete (see deleteIf). */
  delete(key: string, condition: Condition): boolean | Promise<boolean>;
  /** Add `by` to the integer `key` holds (a missing key counts as 0, and expires after `ttlMs` when given), atomically. */
  incr(key: string, by: bigint, ttlMs?: number): Incremented | Promise<Incremented>;
  /**
   * Delete every key that starts with `prefix` ("": every key), each by a delete of its own (a
   * revision and a change each), a slice at a time; how many were deleted.
   */
  deletePrefix(prefix: string): Promise<number>;
}

/** What /health and /metrics tell of replication (GET /health's "replication"). */
export interface ReplicationStatus {
  /** "starting", "loading", "following" or "disconnected". */
  state: string;
  /** How far behind Redis the segment is, in milliseconds (0 when caught up). */
  lag_ms: number;
  /** Redis's revision of the last change applied to the segment. */
  applied_revision: number;
  /** The last failure, or null when there was none since the last success. */
  last_error: string | null;
}

/** A writer through a replicating process, which can tell how it is doing. */
export interface ReplicatedWriter extends KvWriter {
  status(): ReplicationStatus;
}

/** Writes to the slot's store directly; `freeFor` waits out a busy lock (see busy.ts). */
export function localWriter(slot: StoreSlot, freeFor: (store: KvStore) => WhenFree): KvWriter {
  return {
    set: (key, value, condition, ttlMs) => setIf(slot.require(), key, value, condition, ttlMs),
    delete: (key, condition) => deleteIf(slot.require(), key, condition),
    incr: (key, by, ttlMs) => slot.require().increment(key, by, { ttl: ttlMs }),
    deletePrefix: (prefix) => {
      const store = slot.require();
      return deletePrefixLocally(store, prefix, freeFor(store));
    },
  };
}

/**
 * The keys with `prefix` are found SLICE_SLOTS slots at a time and deleted one by one, each delete
 * waiting out a busy lock on its own, with a turn of the event loop between slices: the server
 * goes on answering meanwhile. An entry keeps its slot while it exists, so every key that had the
 * prefix throughout is deleted; keys set during the deletion may or may not be.
 */
async function deletePrefixLocally(store: KvStore, prefix: string, free: WhenFree): Promise<number> {
  let deleted = 0;
  for (let from: number | undefined = 0; from !== undefined; ) {
    const at: number = from;
    const page = await free(() => store.keysFrom(at, SLICE_SLOTS, prefix, SLICE_SLOTS));
    for (const key of page.items) if (await free(() => store.delete(key))) deleted++;
    from = page.next;
    if (from !== undefined) await nextTurn();
  }
  return deleted;
}
