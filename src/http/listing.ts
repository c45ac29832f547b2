/**
 * Listing (GET /keys, GET /status): entries in slot order, from a cursor that names the slot to go
 * on from. An entry keeps its slot while it exists, so a client paging through while others write
 * sees every entry that was there throughout exactly once; entries set or deleted meanwhile may or
 * may not appear. However big the store, no request holds the event loop for long: the slots are
 * read SLICE_SLOTS at a time, with a turn of the event loop between slices, and a whole-store
 * /status too big for one slice is sent as it is read, a slice at a time.
 */
import type { KvEntry, KvPage, KvStore } from "../store.ts";
import { andThen, nextTurn } from "./busy.ts";
import { ApiError } from "./errors.ts";
import { unixSeconds } from "./expiry.ts";
import type { KeysQuery, KeysResponse, StatusQuery, StatusResponse } from "./models.ts";

export const DEFAULT_PAGE_LIMIT = 100;
/** Slots read between two turns of the event loop (`make bench` times whole-store reads by it). */
export const SLICE_SLOTS = 1000;

/** Runs a read of the store now, or later while a writer holds its lock (see busy.ts). */
export type WhenFree = <T>(read: () => T) => T | Promise<T>;

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

/** The entry as the API shows it: expires_at only when it expires. */
export function statusEntry({ key, value, timestamp, revision, expiresAt }: KvEntry): StatusEntry {
  return expiresAt === undefined ? { key, value, timestamp, revision } : { key, value, timestamp, revision, expires_at: unixSeconds(expiresAt) };
}

function nextCursor(page: KvPage<unknown>): string | null {
  return page.next === undefined ? null : encodeCursor(page.next);
}

export function keysPage(store: KvStore, query: KeysQuery, free: WhenFree): KeysResponse | Promise<KeysResponse> {
  const from = decodeCursor(query.cursor, store.maxEntries);
  const limit = query.limit ?? DEFAULT_PAGE_LIMIT;
  const prefix = query.prefix ?? "";
  if (query.values === "1") {
    const pages = gather((at, n) => store.entriesFrom(at, n, prefix, SLICE_SLOTS), from, limit, free);
    return andThen(pages, (page) => ({ entries: page.items.map(statusEntry), next_cursor: nextCursor(page) }));
  }
  const pages = gather((at, n) => store.keysFrom(at, n, prefix, SLICE_SLOTS), from, limit, free);
  return andThen(pages, (page) => ({ keys: page.items, next_cursor: nextCursor(page) }));
}

/** One page of /status: the whole store's version and counts, and a page of its entries. */
export function statusPage(store: KvStore, query: StatusQuery, free: WhenFree): Response | Promise<Response> {
  const from = decodeCursor(query.cursor, store.maxEntries);
  const pages = gather((at, n) => store.entriesFrom(at, n, "", SLICE_SLOTS), from, query.limit ?? DEFAULT_PAGE_LIMIT, free);
  return andThen(pages, (page) => {
    const answer: StatusResponse = {
      version: page.version,
      entry_count: page.entry_count,
      max_entries: store.maxEntries,
      memory_bytes: store.memoryBytes,
      memory_used: store.memoryUsed,
      evict: store.evict,
      entries: page.items.map(statusEntry),
      next_cursor: nextCursor(page),
    };
    return Response.json(answer);
  });
}

/**
 * The whole store, as the seed answered it: at once when it fits one slice, else as a body sent
 * while it is read, a slice at a time. Its version and counts are those when the read began: every
 * write up to that version is in the entries, and writes made during the read may be too.
 */
export function wholeStatus(store: KvStore, free: WhenFree): Response | Promise<Response> {
  return andThen(free(() => store.entriesFrom(0, SLICE_SLOTS, "", SLICE_SLOTS)), (first) => {
    if (first.next === undefined) {
      const whole: StatusResponse = {
        version: first.version,
        entry_count: first.entry_count,
        max_entries: store.maxEntries,
        memory_bytes: store.memoryBytes,
        memory_used: store.memoryUsed,
        evict: store.evict,
        entries: first.items.map(statusEntry),
      };
      return Response.json(whole);
    }
    return new Response(streamOf(statusChunks(store, first, free)), { headers: { "content-type": "application/json;charset=utf-8" } });
  });
}

/** The text of a whole-store /status, a slice of entries at a time, read as the client takes it. */
async function* statusChunks(store: KvStore, first: KvPage<KvEntry>, free: WhenFree): AsyncGenerator<string> {
  yield `{"version":${first.version},"entry_count":${first.entry_count},"max_entries":${store.maxEntries},` +
    `"memory_bytes":${store.memoryBytes},"memory_used":${store.memoryUsed},"evict":"${store.evict}","entries":[`;
  let page = first;
  let separator = "";
  for (;;) {
    if (page.items.length > 0) {
      yield separator + page.items.map((entry) => JSON.stringify(statusEntry(entry))).join(",");
      separator = ",";
    }
    const from = page.next;
    if (from === undefined) break;
    await nextTurn();
    page = await free(() => store.entriesFrom(from, SLICE_SLOTS, "", SLICE_SLOTS));
  }
  yield "]}";
}

const encoder = new TextEncoder();

/** A body that asks `chunks` for the next piece only when the client has taken the last one. */
function streamOf(chunks: AsyncGenerator<string>): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await chunks.next();
      if (done) controller.close();
      else controller.enqueue(encoder.encode(value));
    },
    async cancel() {
      await chunks.return(undefined);
    },
  });
}

/**
 * Up to `limit` items from slot `from` on: the first slice read now, the others each after a turn
 * of the event loop, until the page is full or the slots run out.
 */
function gather<T>(
  read: (from: number, limit: number) => KvPage<T>,
  from: number,
  limit: number,
  free: WhenFree,
): KvPage<T> | Promise<KvPage<T>> {
  return andThen(free(() => read(from, limit)), (first) =>
    first.next === undefined || first.items.length === limit ? first : gatherMore(read, first, limit, free),
  );
}

async function gatherMore<T>(read: (from: number, limit: number) => KvPage<T>, first: KvPage<T>, limit: number, free: WhenFree): Promise<KvPage<T>> {
  const items = [...first.items];
  let next = first.next;
  while (next !== undefined && items.length < limit) {
    await nextTurn();
    const from: number = next;
    const slice = await free(() => read(from, limit - items.length));
    items.push(...slice.items);
    next = slice.next;
  }
  return { ...first, items, next };
}
