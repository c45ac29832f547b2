/** KvService: what each route does, in terms of the store. Knows nothing of HTTP requests. */
import { KvError } from "../errors.ts";
import { deleteIf, setIf, type Condition } from "./conditions.ts";
import { ApiError } from "./errors.ts";
import { keysPage, statusEntry, statusPage } from "./listing.ts";
import type { StoreFigures } from "./metrics.ts";
import type {
  GetResponse,
  HealthResponse,
  KeysQuery,
  KeysResponse,
  StatusQuery,
  StatusResponse,
  SuccessResponse,
} from "./models.ts";
import type { StoreSlot } from "./store-slot.ts";

/** A body, and the revision of the entry it is about (its ETag). */
export interface Revisioned<T> {
  body: T;
  revision: number;
}

export class KvService {
  constructor(private readonly slot: StoreSlot) {}

  get(key: string): Revisioned<GetResponse> {
    const store = this.slot.require();
    const entry = unlessTooLong(() => store.getEntry(key));
    if (entry === undefined) throw notFound(key);
    return { body: { key, value: entry.value }, revision: entry.revision };
  }

  /** Set `key`, when `condition` holds (PRECONDITION_FAILED otherwise). */
  set(key: string, value: string, condition?: Condition): Revisioned<SuccessResponse> {
    const revision = setIf(this.slot.require(), key, value, condition);
    return { body: { success: true, message: `Key '${key}' set successfully` }, revision };
  }

  /** Delete `key`, when `condition` holds (PRECONDITION_FAILED otherwise). */
  delete(key: string, condition?: Condition): SuccessResponse {
    const store = this.slot.require();
    if (!unlessTooLong(() => deleteIf(store, key, condition))) throw notFound(key);
    return { success: true, message: `Key '${key}' deleted successfully` };
  }

  /** The whole store, as the seed answered; one page of its entries with a limit or a cursor. */
  status(query: StatusQuery = {}): StatusResponse {
    const store = this.slot.require();
    if (query.limit !== undefined || query.cursor !== undefined) return statusPage(store, query);
    const { version, entry_count, max_entries, entries } = store.status();
    return { version, entry_count, max_entries, entries: entries.map(statusEntry) };
  }

  keys(query: KeysQuery): KeysResponse {
    return keysPage(this.slot.require(), query);
  }

  /** The store's figures for /metrics; undefined while it is not available. */
  figures(): StoreFigures | undefined {
    let store;
    try {
      store = this.slot.require();
    } catch (error) {
      if (error instanceof ApiError) return undefined;
      throw error;
    }
    return { ...store.stats(), read_retries: store.readRetries };
  }

  health(): HealthResponse {
    const store = this.slot.require();
    const { reattached } = this.slot;
    return { status: "ok", name: store.name, entry_count: store.count, max_entries: store.maxEntries, reattached };
  }
}

/**
 * What `read` gives, or undefined when the store refuses the key as too long: such a key cannot be
 * in it, which is "not found", not a bad request. (The store measures the key's UTF-8 bytes itself.)
 */
function unlessTooLong<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch (error) {
    if (error instanceof KvError && error.code === "KEY_TOO_LONG") return undefined;
    throw error;
  }
}

function notFound(key: string): ApiError {
  return new ApiError("NOT_FOUND", `Key '${key}' not found`);
}
