/**
 * KvWriter: how the service writes. Locally (the store's own lock) by default; through Redis when
 * the server replicates (src/replication/), where a write answers once its own segment has it.
 */
import { deleteIf, setIf, type Condition } from "./conditions.ts";
import type { StoreSlot } from "./store-slot.ts";

export interface KvWriter {
  /** Set `key` when `condition` holds; the new revision, or PRECONDITION_FAILED. */
  set(key: string, value: string, condition: Condition): number | Promise<number>;
  /** Delete `key` when `condition` holds; false when there was nothing to delete (see deleteIf). */
  delete(key: string, condition: Condition): boolean | Promise<boolean>;
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

/** Writes to the slot's store directly. */
export function localWriter(slot: StoreSlot): KvWriter {
  return {
    set: (key, value, condition) => setIf(slot.require(), key, value, condition),
    delete: (key, condition) => deleteIf(slot.require(), key, condition),
  };
}
