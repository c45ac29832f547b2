/**
 * Expiry over HTTP: how an entry's expiry is shown (Unix seconds, the milliseconds as a fraction),
 * and the server's periodic reclaim of expired entries. Readers already find an expired entry
 * absent, and writers reclaim one they meet; the sweep reclaims the rest (their slots, their memory,
 * a delete in the change ring that /watch sends with reason "expired"), in the manner of Redis's
 * active expiry: a little work often, never a long hold of the lock, never a wait for it.
 */
import type { KvStore } from "../store.ts";
import { isBusy } from "./busy.ts";

/** Milliseconds since the epoch as the API shows them: Unix seconds, with up to 3 decimals. */
export function unixSeconds(ms: number): number {
  return ms / 1000;
}

export interface SweepOptions {
  /** Milliseconds between two ticks (default 100). */
  intervalMs?: number;
  /** Slots one pass looks at, under one hold of the lock (default 256). */
  batch?: number;
  /** Ticks in which the sweep looks at every slot of the store at least once (default 100: 10 s). */
  lapTicks?: number;
  /** Passes one tick makes at most, while each reclaims more than a quarter of what it looked at (default 16). */
  maxPasses?: number;
  /** Milliseconds of passes after which a tick ends, whatever is left (default 4). */
  budgetMs?: number;
  /** Told of a failure other than a busy lock, when it differs from the previous one. */
  onError?: (message: string) => void;
}

/**
 * Every `intervalMs`, reclaim the expired entries among the next slots of the store `source` holds
 * now, `batch` slots a pass: enough passes that the sweep goes round the whole store in `lapTicks`
 * ticks (a look at a slot is cheap, and `BENCH_ONLY=expiry make bench` times a tick; a fixed share
 * would take minutes round a store of a million entries, and /watch would hear of expiries that
 * late); more while a pass reclaimed more than a quarter of its slots (expired entries are many:
 * catch up), up to `maxPasses` such passes; and none once the tick has taken `budgetMs`, so that the
 * event loop stays free. The store's handle must not wait for the lock (the server opens it with a
 * lock timeout of 0): a busy lock skips the tick. A read-only store (a replica's) is left alone.
 */
export class ExpirySweep {
  readonly #source: () => KvStore | undefined;
  readonly #batch: number;
  readonly #lapTicks: number;
  readonly #maxPasses: number;
  readonly #budgetMs: number;
  readonly #onError: ((message: string) => void) | undefined;
  readonly #timer: ReturnType<typeof setInterval>;
  #lastError: string | undefined;

  constructor(source: () => KvStore | undefined, options: SweepOptions = {}) {
    this.#source = source;
    this.#batch = options.batch ?? 256;
    this.#lapTicks = options.lapTicks ?? 100;
    this.#maxPasses = options.maxPasses ?? 16;
    this.#budgetMs = options.budgetMs ?? 4;
    this.#onError = options.onError;
    this.#timer = setInterval(() => this.tick(), options.intervalMs ?? 100);
    this.#timer.unref();
  }

  /** One tick's passes (the timer makes them; a test may too): how many entries they reclaimed. */
  tick(): number {
    const store = this.#source();
    if (!store) return 0;
    const began = performance.now();
    let reclaimed = 0;
    let looked = 0;
    let catchingUp = 0;
    // Within the try: a store that has gone (unlinked, damaged) throws from any call, and a throw
    // out of a timer would end the server.
    try {
      if (store.readOnly) return 0;
      const due = Math.ceil(store.maxEntries / this.#lapTicks);
      for (;;) {
        const now = store.expire(this.#batch);
        reclaimed += now;
        looked += this.#batch;
        const many = now * 4 > this.#batch;
        if (many) catchingUp++;
        const more = many ? catchingUp < this.#maxPasses : looked < due;
        if (!more || performance.now() - began >= this.#budgetMs) break;
      }
      this.#lastError = undefined;
    } catch (error) {
      if (isBusy(error)) return reclaimed;
      const message = error instanceof Error ? error.message : String(error);
      if (message !== this.#lastError) this.#onError?.(message);
      this.#lastError = message;
    }
    return reclaimed;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
