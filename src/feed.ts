/**
 * ChangeFeed: follow a store's changes as they happen, whichever process makes them. One timer per
 * feed reads the version word (two atomic loads); only when it moved does the feed read the change
 * ring, once, and hand the changes to every subscriber. Idle subscribers cost nothing but their
 * place in a set.
 */
import type { KvChange, KvStore } from "./store.ts";

export type FeedEvent =
  | { type: "change"; change: KvChange }
  /** The subscriber fell behind the ring (256 changes): reread the store, then go on from `version`. */
  | { type: "resync"; version: number };

export type FeedListener = (event: FeedEvent) => void;

/** How often the version word is read while anyone is subscribed. */
export const DEFAULT_POLL_MS = 5;

export class ChangeFeed {
  readonly #store: KvStore;
  readonly #pollMs: number;
  readonly #listeners = new Set<FeedListener>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #last = 0;

  constructor(store: KvStore, pollMs = DEFAULT_POLL_MS) {
    this.#store = store;
    this.#pollMs = pollMs;
  }

  get subscribers(): number {
    return this.#listeners.size;
  }

  /**
   * Call `listener` for every change after revision `since` (what is still in the ring at once,
   * then each new one). Returns the function that unsubscribes.
   */
  subscribe(since: number, listener: FeedListener): () => void {
    if (!this.#timer) {
      this.#last = this.#store.version;
      this.#timer = setInterval(() => this.poll(), this.#pollMs);
    }
    if (since < this.#last) this.#deliver(since, this.#last, [listener]);
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) this.stop();
    };
  }

  /** Read the version and deliver what is new. The timer calls it; tests may too. */
  poll(): void {
    if (this.#store.closed) return this.stop();
    const version = this.#store.version;
    if (version === this.#last) return;
    const from = this.#last;
    this.#last = version;
    this.#deliver(from, version, [...this.#listeners]);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #deliver(from: number, to: number, listeners: FeedListener[]): void {
    const { changes, expired } = this.#store.changesSince(from);
    const events: FeedEvent[] = changes.filter((c) => c.revision <= to).map((change) => ({ type: "change", change }));
    if (expired) events.push({ type: "resync", version: to });
    for (const listener of listeners) for (const event of events) listener(event);
  }
}
