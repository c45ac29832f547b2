/**
 * StoreSlot: the server's store, which may be absent. When the segment cannot be opened (no
 * permission, an incompatible layout, ...), the slot remembers why, so requests can answer 503 with
 * that reason, and keeps trying in the background until it succeeds. Once open, it checks that the
 * name still leads to the segment it mapped; when the segment was unlinked or replaced, it opens the
 * name again (the timers run between requests: no request is reading the old mapping when it goes).
 */
import { replacement } from "../segment-identity.ts";
import { KvStore } from "../store.ts";
import { ApiError } from "./errors.ts";

export interface OpeningOptions {
  /** Milliseconds between attempts while the store cannot be opened. Default 1000. */
  retryMs?: number;
  /** Milliseconds between checks that the name still leads to the open segment. Default 500. */
  watchMs?: number;
  /** Told once the store is open (again, after a reattachment). */
  onOpen?: (store: KvStore) => void;
  /** Told why an attempt failed, when the reason differs from the previous attempt's. */
  onFailure?: (reason: string) => void;
  /** Told that the open segment was unlinked or replaced, before the slot opens the name again. */
  onReplaced?: (reason: string) => void;
}

/** The last time the slot let go of a segment that was unlinked or replaced, and why. */
export interface Reattachment {
  /** ISO 8601 time. */
  at: string;
  reason: string;
}

export class StoreSlot implements Disposable {
  #store: KvStore | undefined;
  #reason = "the store is not open yet";
  #timer: ReturnType<typeof setTimeout> | undefined;
  #open: (() => KvStore) | undefined;
  #options: OpeningOptions = {};
  #reattached: Reattachment | undefined;

  private constructor() {}

  /** A slot holding a store that is already open. Closing the slot closes it. */
  static of(store: KvStore): StoreSlot {
    const slot = new StoreSlot();
    slot.#store = store;
    return slot;
  }

  /**
   * Try `open` now and, while it fails, again every `retryMs`. Once open, check every `watchMs` that
   * the name still leads to the segment the store mapped; when not, close the store and open again.
   */
  static opening(open: () => KvStore, options: OpeningOptions = {}): StoreSlot {
    const slot = new StoreSlot();
    slot.#open = open;
    slot.#options = options;
    slot.#attempt();
    return slot;
  }

  /** When and why the slot last let go of an unlinked or replaced segment; undefined if never. */
  get reattached(): Reattachment | undefined {
    return this.#reattached;
  }

  /** The open store, or undefined while there is none. */
  get current(): KvStore | undefined {
    return this.#store && !this.#store.closed ? this.#store : undefined;
  }

  /** The open store; throws STORE_UNAVAILABLE, with the reason, when there is none. */
  require(): KvStore {
    if (this.#store && !this.#store.closed) return this.#store;
    throw new ApiError("STORE_UNAVAILABLE", `the store is not available: ${this.#reason}`);
  }

  /**
   * Check now, not at the next tick, that the name still leads to the open segment, and reattach
   * when not: for a caller that has just replaced the segment (replication's reload).
   */
  recheck(): void {
    if (!this.current) return;
    this.#stopTimer();
    this.#check();
  }

  /** Stop retrying (or watching) and close the store (never unlinks it). Idempotent. */
  close(): void {
    this.#stopTimer();
    this.#reason = "the server is shutting down";
    this.#store?.close();
  }

  /**
   * Close, and unlink the segment when this slot's open created it and the name still leads to it:
   * for a server that could not start, which must leave no segment behind it made (never one it
   * merely opened, nor one that replaced it). Another process that opened the segment in between
   * keeps its mapping.
   */
  discard(): void {
    const store = this.current;
    const ours = store?.created && replacement(store.name, store.identity) === undefined;
    this.close();
    if (ours) KvStore.unlink(store.name);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #stopTimer(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Open the store, then watch it; or, while it cannot be opened, try again later. */
  #attempt(): void {
    try {
      this.#store = this.#open!();
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      if (reason !== this.#reason) this.#options.onFailure?.(reason);
      this.#reason = reason;
      return this.#later(this.#options.retryMs ?? 1000, () => this.#attempt());
    }
    this.#options.onOpen?.(this.#store);
    this.#later(this.#options.watchMs ?? 500, () => this.#check());
  }

  /** Reattach when the name no longer leads to the open segment; else check again later. */
  #check(): void {
    const store = this.#store!;
    const reason = replacement(store.name, store.identity);
    if (!reason) return this.#later(this.#options.watchMs ?? 500, () => this.#check());
    this.#reattached = { at: new Date().toISOString(), reason };
    this.#reason = reason;
    this.#options.onReplaced?.(reason);
    this.#store = undefined;
    store.close();
    this.#attempt();
  }

  #later(ms: number, then: () => void): void {
    this.#timer = setTimeout(then, ms);
    this.#timer.unref();
  }
}
