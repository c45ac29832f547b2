/**
 * Expiry over HTTP: how an entry's expiry is shown (Unix seconds, the milliseconds as a fraction).
 */

/** Milliseconds since the epoch as the API shows them: Unix seconds, with up to 3 decimals. */
export function unixSeconds(ms: number): number {
  return ms / 1000;
}
