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

/**
 * Wait until the 16-ms tick entries record their last access in (Unix ms >> 4) has moved on: an
 * access after it is recorded as later than any before the call.
 */
export async function nextAccessTick(): Promise<void> {
  const tick = () => Math.floor(Date.now() / 16);
  const now = tick();
  await waitFor(() => tick() > now, { what: "the next 16 ms tick" });
}
