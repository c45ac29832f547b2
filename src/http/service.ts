/** KvService: what each route does, in terms of the store. Knows nothing of HTTP requests. */
import { ApiError } from "./errors.ts";
import type { GetResponse, HealthResponse, StatusResponse, SuccessResponse } from "./models.ts";
import type { StoreSlot } from "./store-slot.ts";

export class KvService {
  constructor(private readonly slot: StoreSlot) {}

  get(key: string): GetResponse {
    const store = this.slot.require();
    // A key longer than the store's limit cannot be in it: that is "not found", not a bad request.
    const value = fits(key, store.keyMax) ? store.get(key) : undefined;
    if (value === undefined) throw notFound(key);
    return { key, value };
  }

  set(key: string, value: string): SuccessResponse {
    this.slot.require().set(key, value);
    return { success: true, message: `Key '${key}' set successfully` };
  }

  delete(key: string): SuccessResponse {
    const store = this.slot.require();
    if (!fits(key, store.keyMax) || !store.delete(key)) throw notFound(key);
    return { success: true, message: `Key '${key}' deleted successfully` };
  }

  status(): StatusResponse {
    const { version, entry_count, max_entries, entries } = this.slot.require().status();
    return {
      version,
      entry_count,
      max_entries,
      entries: entries.map(({ key, value, timestamp }) => ({ key, value, timestamp })),
    };
  }

  health(): HealthResponse {
    const store = this.slot.require();
    return { status: "ok", name: store.name, entry_count: store.count, max_entries: store.maxEntries };
  }
}

/** Whether `key` is short enough to be in a store whose keys hold at most `keyMax` UTF-8 bytes. */
function fits(key: string, keyMax: number): boolean {
  return Buffer.byteLength(key, "utf8") <= keyMax;
}

function notFound(key: string): ApiError {
  return new ApiError("NOT_FOUND", `Key '${key}' not found`);
}
