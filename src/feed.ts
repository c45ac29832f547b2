/**
 * ChangeFeed: follow a store's changes as they happen, whichever process makes them. One timer per
 * feed reads the version word (two atomic loads); only when it moved does the feed read the change
 * ring, once, and hand the changes to every subscriber. Idle subscribers cost nothing but their
 * place in a map. `watch` is the same as an async iterator, sharing one feed per store.
 */
import { KvError } from "./errors.ts";
import { KvStore, type KvChange } from "./store.ts";

export type FeedEvent =
  | { type: "change"; change: KvChange }
  /**
   * The subscriber fell behind the ring (256 changes), or the store was replaced: reread the store,
   * then go on from `version`.
   */
  | { type: "resync"; version: number };

export type FeedListener = (event: FeedEvent) => void;

/** How often the version word is read while anyone is subscribed. */
export const DEFAULT_POLL_MS = 5;

/** Undelivered events a `watch` iterator holds; past that, they give way to one resync. */
export const BACKLOG_LIMIT = 1024;

/** The store a feed reads: a fixed one, or whichever a source (such as the server's slot) holds now. */
export type StoreSource = KvStore | (() => KvStore | undefined);

export class ChangeFeed {
  readonly #source: () => KvStore | undefined;
  /** A fixed store's feed ends when it closes; a source's waits for the source to hold a store again. */
  readonly #fixed: boolean;
  readonly #pollMs: number;
  /** Each subscriber, with what to call when the feed ends. */
  readonly #listeners = new Map<FeedListener, (() => void) | undefined>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #store: KvStore | undefined;
  #last = 0;

  constructor(source: StoreSource, pollMs = DEFAULT_POLL_MS) {
    this.#fixed = source instanceof KvStore;
    this.#source = source instanceof KvStore ? () => (source.closed ? undefined : source) : source;
    this.#pollMs = pollMs;
  }

  get subscribers(): number {
    return this.#listeners.size;
  }

  /**
   * Call `listener` for every change after revision `since` (what is still in the ring at once,
   * then each new one); a `since` beyond the store's version (another segment's) gets a resync.
   * `onEnd` is called if the feed ends: its fixed store was closed. Returns the function that
   * unsubscribes. Throws CLOSED when there is no open store to follow.
   */
  subscribe(since: number, listener: FeedListener, onEnd?: () => void): () => void {
    if (!this.#attach()) throw new KvError("CLOSED", "there is no open store to follow");
    this.#timer ??= setInterval(() => this.poll(), this.#pollMs);
    // Catch up with the segment first: `since` is compared with its version now, not as the last
    // poll saw it (which can be a poll behind a version the subscriber has already read).
    this.poll();
    this.#listeners.set(listener, onEnd);
    if (since > this.#last) listener({ type: "resync", version: this.#last });
    else if (since < this.#last) this.#deliver(since, this.#last, [listener]);
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) this.stop();
    };
  }

  /** Read the version and deliver what is new. The timer calls it; tests may too. */
  poll(): void {
    const store = this.#attach();
    if (!store) return this.#fixed ? this.#end() : undefined;
    const version = versionOf(store);
    if (version === undefined || version === this.#last) return;
    const from = this.#last;
    this.#last = version;
    this.#deliver(from, version, [...this.#listeners.keys()]);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#store = undefined;
  }

  /** The store to read now. When it is not the one read so far, every subscriber is told to resync. */
  #attach(): KvStore | undefined {
    const store = this.#source();
    if (!store || store === this.#store) return store;
    const replaced = this.#store !== undefined;
    this.#store = store;
    this.#last = store.version;
    if (replaced) this.#broadcast([{ type: "resync", version: this.#last }], [...this.#listeners.keys()]);
    return store;
  }

  #deliver(from: number, to: number, listeners: FeedListener[]): void {
    const { changes, expired } = this.#store!.changesSince(from);
    const events: FeedEvent[] = changes.filter((c) => c.revision <= to).map((change) => ({ type: "change", change }));
    if (expired) events.push({ type: "resync", version: to });
    this.#broadcast(events, listeners);
  }

  /** Hand each event to each listener, but not to one that unsubscribed on an earlier event. */
  #broadcast(events: FeedEvent[], listeners: FeedListener[]): void {
    for (const event of events) for (const listener of listeners) if (this.#listeners.has(listener)) listener(event);
  }

  #end(): void {
    const ends = [...this.#listeners.values()];
    this.#listeners.clear();
    this.stop();
    for (const onEnd of ends) onEnd?.();
  }
}

/** The store's version; undefined when writers keep overtaking the read (the next poll tries again). */
function versionOf(store: KvStore): number | undefined {
  try {
    return store.version;
  } catch (error) {
    if (error instanceof KvError && error.code === "STORE_BUSY") return undefined;
    throw error;
  }
}

/** Whether a subscriber that asked for keys starting with `prefix` gets `event` (a resync always). */
export function concerns(event: FeedEvent, prefix: string): boolean {
  return event.type === "resync" || event.change.key.startsWith(prefix);
}

export interface WatchOptions {
  /** Start after this revision (default: the store's version now, i.e. only what happens next). */
  since?: number;
  /** Only keys that start with this. */
  prefix?: string;
  /** Aborting it ends the iteration. */
  signal?: AbortSignal;
}

const feeds = new WeakMap<KvStore, ChangeFeed>();

/** The one feed of `store` that every `watch` of it shares (one timer, however many iterators). */
export function feedOf(store: KvStore): ChangeFeed {
  let feed = feeds.get(store);
  if (!feed) feeds.set(store, (feed = new ChangeFeed(store)));
  return feed;
}

/**
 * The changes to `store`, by any process, as they happen: `for await (const event of watch(store))`.
 * Ends when `signal` aborts, the loop breaks, or the store is closed. A consumer that leaves more
 * than BACKLOG_LIMIT events unread gets one resync in their place.
 */
export function watch(store: KvStore, options: WatchOptions = {}): AsyncGenerator<FeedEvent, void, undefined> {
  return follow(feedOf(store), options.since ?? store.version, options.prefix ?? "", options.signal);
}

async function* follow(feed: ChangeFeed, since: number, prefix: string, signal: AbortSignal | undefined) {
  const queue: FeedEvent[] = [];
  let ended = false;
  let wake: (() => void) | undefined;
  const notify = () => wake?.();
  const unsubscribe = feed.subscribe(
    since,
    (event) => {
      if (!concerns(event, prefix)) return;
      queue.push(event);
      if (queue.length > BACKLOG_LIMIT) queue.splice(0, queue.length, { type: "resync", version: versionAfter(event) });
      notify();
    },
    () => {
      ended = true;
      notify();
    },
  );
  signal?.addEventListener("abort", notify);
  try {
    while (!signal?.aborted) {
      const event = queue.shift();
      if (event) yield event;
      else if (ended) return;
      else await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    unsubscribe();
    signal?.removeEventListener("abort", notify);
  }
}

/** The store's version once `event` has happened. */
function versionAfter(event: FeedEvent): number {
  return event.type === "change" ? event.change.revision : event.version;
}
