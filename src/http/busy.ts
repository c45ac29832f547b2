/**
 * The server never waits for the store's write lock on its event loop: it opens the store with a
 * lock timeout of 0, so a call that would wait throws STORE_BUSY at once (a writer holds the lock,
 * maybe one stopped inside it). `whenFree` runs such a call again after a pause, letting every
 * other request through meanwhile, until it succeeds or the wait has run out; then the client gets
 * 503 STORE_BUSY with Retry-After. Reads seldom meet it: they read around a write in progress.
 */
import { KvError } from "../errors.ts";
import { ApiError } from "./errors.ts";

/** How long a request may wait for a busy store before it answers 503, in milliseconds. */
export const DEFAULT_BUSY_WAIT_MS = 500;
/**
 * The longest pause between two attempts, in milliseconds (the first is 1, then doubling). Short:
 * writers that hold the lock briefly but back to back leave it free only now and then, and each
 * attempt is a try of the lock, so a wait of 500 ms must make many of them (with a 50 ms cap it
 * made about 15, and the soak, C writers hammering the store, once answered a write 503); a
 * stopped writer costs each waiting request one failed try per pause.
 */
const MAX_PAUSE_MS = 5;

/**
 * What `run` gives, now when the store is free, else later (a promise). `heldMs` tells how long the
 * lock has been held, for the 503's detail. Other failures are thrown (or rejected) as they come.
 */
export function whenFree<T>(run: () => T | Promise<T>, waitMs: number, heldMs: () => number): T | Promise<T> {
  try {
    return run();
  } catch (error) {
    if (!isBusy(error)) throw error;
  }
  return retryWhenFree(run, waitMs, heldMs);
}

/** whenFree after its first attempt found the store busy: `run` again after a pause, and so on. */
export async function retryWhenFree<T>(run: () => T | Promise<T>, waitMs: number, heldMs: () => number): Promise<T> {
  const deadline = performance.now() + waitMs;
  for (let pause = 1; ; pause = Math.min(2 * pause, MAX_PAUSE_MS)) {
    await Bun.sleep(Math.max(0, Math.min(pause, deadline - performance.now())));
    try {
      return await run();
    } catch (error) {
      if (!isBusy(error)) throw error;
      if (performance.now() >= deadline) {
        throw new ApiError(
          "STORE_BUSY",
          `the store is busy: another process has held its write lock for ${heldMs()} ms (stopped or hung?); try again later`,
        );
      }
    }
  }
}

/** Whether `error` is a call that would have waited for the lock (STORE_BUSY). */
export function isBusy(error: unknown): boolean {
  return error instanceof KvError && error.code === "STORE_BUSY";
}

/** `f` of a value that may come later: at once for a value, chained for a promise. */
export function andThen<T, U>(value: T | Promise<T>, f: (value: T) => U | Promise<U>): U | Promise<U> {
  return value instanceof Promise ? value.then(f) : f(value);
}

/** Resolves after the event loop has had a turn (its I/O included): what a long read yields to. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
