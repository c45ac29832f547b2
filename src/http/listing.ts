/**
 * Paged listing (GET /keys, and /status with limit or cursor): entries in slot order, from a cursor
 * that names the slot to go on from. An entry keeps its slot while it exists, so a client paging
 * through while others write sees every entry that was there throughout exactly once; entries set
 * or deleted meanwhile may or may not appear.
 */
import type { KvEntry, KvPage, KvStore } from "../store.ts";
import { ApiError } from "./errors.ts";
import type { KeysQuery, KeysResponse, StatusQuery, StatusResponse } from "./models.ts";

export const DEFAULT_PAGE_LIMIT = 100;

type StatusEntry = StatusResponse["entries"][number];

/** A cursor is opaque to clients: the slot, in base64url. */
export function encodeCursor(slot: number): string {
  return Buffer.from(`slot:${slot}`).toString("base64url");
}

/** The slot a cursor names (0 without one); BAD_REQUEST for one this server did not give. */
export function decodeCursor(cursor: string | undefined, maxEntries: number): number {
  if (cursor === undefined) return 0;
  const match = /^slot:(\d{1,8})$/.exec(Buffer.from(cursor, "base64url").toString("latin1"));
  const slot = match ? Number(match[1]) : -1;
  if (slot < 0 || slot > maxEntries || encodeCursor(slot) !== cursor) {
    throw new ApiError("BAD_REQUEST", "invalid cursor: pass a next_cursor as it came");
  }
  return slot;
}

/** The entry as the API shows it. */
export function statusEntry({ key, value, timestamp, revision }: KvEntry): StatusEntry {
  return { key, value, timestamp, revision };
}

function nextCursor(page: KvPage<unknown>): string | null {
  return page.next === undefined ? null : encodeCursor(page.next);
}

export function keysPage(store: KvStore, query: KeysQuery): KeysResponse {
  const from = decodeCursor(query.cursor, store.maxEntries);
  const limit = query.limit ?? DEFAULT_PAGE_LIMIT;
  if (query.values === "1") {
    const page = store.entriesFrom(from, limit, query.prefix);
    return { entries: page.items.map(statusEntry), next_cursor: nextCursor(page) };
  }
  const page = store.keysFrom(from, limit, query.prefix);
  return { keys: page.items, next_cursor: nextCursor(page) };
}

/** One page of /status: the whole store's version and counts, and a page of its entries. */
export function statusPage(store: KvStore, query: StatusQuery): StatusResponse {
  const page = store.entriesFrom(decodeCursor(query.cursor, store.maxEntries), query.limit ?? DEFAULT_PAGE_LIMIT);
  return {
    version: page.version,
    entry_count: page.entry_count,
    max_entries: store.maxEntries,
    entries: page.items.map(statusEntry),
    next_cursor: nextCursor(page),
  };
}
