/**
 * StoreSlot: the server's store, which may be absent. When the segment cannot be opened (no
 * permission, an incompatible layout, ...), the slot remembers why, so requests can answer 503 with
 * that reason, and keeps trying in the background until it succeeds.
 */
import { KvStore } from "../store.ts";
import { ApiError } from "./errors.ts";

export interface OpeningOptions {
  /** Milliseconds between attempts while the store cannot be opened. Default 1000. */
  retryMs?: number;
  /** Told once the store is open. */
  onOpen?: (store: KvStore) => void;
  /** Told why an attempt failed, when the reason differs from the previous attempt's. */
  onFailure?: (reason: string) => void;
}

export class StoreSlot implements Disposable {
  #store: KvStore | undefined;
  #reason = "the store is not open yet";
  #timer: ReturnType<typeof setInterval> | undefined;

  private constructor() {}

  /** A slot holding a store that is already open. Closing the slot closes it. */
  static of(store: KvStore): StoreSlot {
    const slot = new StoreSlot();
    slot.#store = store;
    return slot;
  }

  /** Try `open` now and, while it fails, again every `retryMs`. */
  static opening(open: () => KvStore, options: OpeningOptions = {}): StoreSlot {
    const slot = new StoreSlot();
    const attempt = (): boolean => {
      try {
        slot.#store = open();
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        if (reason !== slot.#reason) options.onFailure?.(reason);
        slot.#reason = reason;
        return false;
      }
      options.onOpen?.(slot.#store);
      return true;
    };
    if (!attempt()) {
      slot.#timer = setInterval(() => {
        if (attempt()) slot.#stopRetrying();
      }, options.retryMs ?? 1000);
      slot.#timer.unref();
    }
    return slot;
  }

  /** The open store; throws STORE_UNAVAILABLE, with the reason, when there is none. */
  require(): KvStore {
    if (this.#store && !this.#store.closed) return this.#store;
    throw new ApiError("STORE_UNAVAILABLE", `the store is not available: ${this.#reason}`);
  }

  /** Stop retrying and close the store (never unlinks it). Idempotent. */
  close(): void {
    this.#stopRetrying();
    this.#reason = "the server is shutting down";
    this.#store?.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #stopRetrying(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
