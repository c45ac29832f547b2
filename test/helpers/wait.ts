/** Waiting for a condition, never for a fixed time: poll until it holds or a deadline passes. */

export interface WaitOptions {
  /** Give up after this many milliseconds (default 10 000). */
  timeoutMs?: number;
  /** What the failure message says was awaited. */
  what?: string;
}

/** Resolves with the first truthy value `probe` returns; throws when `timeoutMs` passes first. */
export async function waitFor<T>(probe: () => T | Promise<T>, options: WaitOptions = {}): Promise<NonNullable<T>> {
  const deadline = performance.now() + (options.timeoutMs ?? 10_000);
  for (;;) {
    const value = await probe();
    if (value) return value as NonNullable<T>;
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${options.timeoutMs ?? 10_000} ms waiting for ${options.what ?? "a condition"}`);
    }
    await Bun.sleep(10); // a poll interval, not a wait for something to happen
  }
}
