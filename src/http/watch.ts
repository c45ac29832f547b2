/**
 * WatchHub: the Server-Sent Events streams of GET /watch. Every stream subscribes to one ChangeFeed
 * that follows the server's store slot (one timer, however many watchers; a resync when the slot's
 * store is replaced); one more timer sends every stream its heartbeat. Nothing here knows of HTTP
 * requests: the route hands over the revision to start after and the prefix.
 */
import { ChangeFeed, concerns, type FeedEvent } from "../feed.ts";
import type { KvChange } from "../store.ts";
import { ApiError } from "./errors.ts";
import { unixSeconds } from "./expiry.ts";
import type { WatchChange, WatchResync } from "./models.ts";
import type { StoreSlot } from "./store-slot.ts";

export interface WatchHubOptions {
  /** Milliseconds between heartbeat comments on every stream (default 15 000). */
  heartbeatMs?: number;
  /** Milliseconds between reads of the version word (default: the feed's, 5). */
  pollMs?: number;
  /** Events a stream may hold unsent before its client is cut off, to resume with Last-Event-ID (default 1024). */
  maxQueued?: number;
}

interface Stream {
  controller: ReadableStreamDefaultController<Uint8Array>;
  prefix: string;
  unsubscribe: () => void;
}

const encoder = new TextEncoder();
/** First on every stream: how soon EventSource reconnects, and the headers go out at once. */
const PREAMBLE = encoder.encode("retry: 1000\n\n");
const HEARTBEAT = encoder.encode(": heartbeat\n\n");
const EVENT_STREAM = "text/event-stream";
const WATCH_PATH = "/watch";
const HEADERS = { "content-type": EVENT_STREAM, "cache-control": "no-cache", "x-accel-buffering": "no" };

/**
 * Bun.serve's `routes` for GET /watch, in front of its `fetch` (which serves the rest with the same
 * `handle`): the answer is handed over as is, but an event stream gets the server's idle timeout
 * lifted, for a quiet stream (heartbeats aside) is not an idle connection. The timeout is lifted
 * once the response exists: lifted before, Bun puts it back. Bun's router picks the path, so no
 * other request pays for a look at its URL here.
 */
export function watchRoute(handle: (request: Request) => Response | Promise<Response>) {
  const keepingOpen = (request: Request, server: Bun.Server<undefined>) =>
    Promise.resolve(handle(request)).then((response) => {
      if (response.headers.get("content-type") === EVENT_STREAM) server.timeout(request, 0);
      return response;
    });
  return { [WATCH_PATH]: { GET: keepingOpen } };
}

/** One event in the text/event-stream format: a change with its revision as id, or a resync. */
export function sseEvent(event: FeedEvent): string {
  if (event.type === "resync") {
    const data: WatchResync = { version: event.version };
    return `event: resync\ndata: ${JSON.stringify(data)}\n\n`;
  }
  const { revision, op } = event.change;
  return `id: ${revision}\nevent: ${op}\ndata: ${JSON.stringify(watchChange(event.change))}\n\n`;
}

/**
 * The data of a set or delete event: a set's value, and expires_at when it expires; a delete's
 * reason when the store made it itself (the entry expired, or was evicted).
 */
export function watchChange({ key, value, revision, timestamp, expiresAt, reason }: KvChange): WatchChange {
  const data: WatchChange = value === undefined ? { key, revision, timestamp } : { key, value, revision, timestamp };
  if (expiresAt !== undefined) data.expires_at = unixSeconds(expiresAt);
  if (reason !== undefined) data.reason = reason;
  return data;
}

const encoded = new WeakMap<FeedEvent, Uint8Array>();

/** The event's bytes, encoded once however many streams send it (the feed hands all the same object). */
function bytesOf(event: FeedEvent): Uint8Array {
  let bytes = encoded.get(event);
  if (!bytes) encoded.set(event, (bytes = encoder.encode(sseEvent(event))));
  return bytes;
}

export class WatchHub {
  readonly #slot: StoreSlot;
  readonly #feed: ChangeFeed;
  readonly #heartbeatMs: number;
  readonly #maxQueued: number;
  readonly #streams = new Set<Stream>();
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  constructor(slot: StoreSlot, options: WatchHubOptions = {}) {
    this.#slot = slot;
    this.#feed = new ChangeFeed(() => slot.current, options.pollMs);
    this.#heartbeatMs = options.heartbeatMs ?? 15_000;
    this.#maxQueued = options.maxQueued ?? 1024;
  }

  /** Streams open now. */
  get watchers(): number {
    return this.#streams.size;
  }

  /** Subscribers of the shared feed: one per open stream. */
  get subscribers(): number {
    return this.#feed.subscribers;
  }

  /**
   * A text/event-stream of the changes after revision `since` (default: from now) to keys that start
   * with `prefix`. Throws STORE_UNAVAILABLE when there is no store, or the server is stopping.
   */
  open(since: number | undefined, prefix: string): Response {
    const store = this.#store(); // 503 without a store, whatever `since` is
    const from = since ?? store.version;
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start: (c) => void (controller = c),
      cancel: () => void this.#release(stream),
    });
    const stream: Stream = { controller, prefix, unsubscribe: () => {} };
    controller.enqueue(PREAMBLE);
    this.#streams.add(stream);
    stream.unsubscribe = this.#feed.subscribe(from, (event) => this.#send(stream, event));
    if (this.#streams.has(stream)) this.#heartbeat ??= setInterval(() => this.#beat(), this.#heartbeatMs);
    else stream.unsubscribe(); // its backlog alone overflowed it
    return new Response(body, { headers: HEADERS });
  }

  /**
   * What open() would answer, without a stream: the answer to HEAD, which has no body. (Elysia's
   * own HEAD of a GET route reads the whole GET body for its length, and a stream never ends.)
   */
  head(): Response {
    this.#store();
    return new Response(null, { headers: HEADERS });
  }

  /** The store to follow; STORE_UNAVAILABLE while there is none, or once the server is stopping. */
  #store() {
    if (this.#closed) throw new ApiError("STORE_UNAVAILABLE", "the server is shutting down");
    return this.#slot.require();
  }

  /** End every stream (their clients see the end) and refuse new ones: the server is stopping. */
  close(): void {
    this.#closed = true;
    for (const stream of this.#streams) this.#end(stream);
  }

  #send(stream: Stream, event: FeedEvent): void {
    if (!concerns(event, stream.prefix)) return;
    stream.controller.enqueue(bytesOf(event));
    if ((stream.controller.desiredSize ?? 0) < -this.#maxQueued) this.#end(stream);
  }

  #beat(): void {
    for (const stream of this.#streams) stream.controller.enqueue(HEARTBEAT);
  }

  #end(stream: Stream): void {
    if (this.#release(stream)) stream.controller.close();
  }

  /** Forget the stream; false when it was gone already. */
  #release(stream: Stream): boolean {
    if (!this.#streams.delete(stream)) return false;
    stream.unsubscribe();
    if (this.#streams.size === 0) {
      clearInterval(this.#heartbeat);
      this.#heartbeat = undefined;
    }
    return true;
  }
}
