/**
 * The command line's durations: `--ttl 30s` (set, incr: when the entry a write makes expires) and
 * `--lock-timeout 10s` (every command: how long to wait for a writer that holds the store's lock).
 */
import { ConfigError, setting, TTL_MAX_SECONDS, type Env } from "../config.ts";

export const TTL_OPTIONS = { ttl: { type: "string" } } as const;
export const LOCK_OPTIONS = { "lock-timeout": { type: "string" } } as const;

/**
 * How long a command waits for the store's write lock by default. A write holds it for microseconds
 * (a resize of a big store, for a second or so): a longer hold is a writer stopped or hung, which
 * would otherwise stall the command for ever.
 */
export const DEFAULT_LOCK_TIMEOUT_MS = 10_000;

export interface TtlFlags {
  ttl?: string;
}

export interface LockFlags {
  "lock-timeout"?: string;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const TEN_YEARS_MS = TTL_MAX_SECONDS * 1000;

/** A number with a unit of ms, s, m or h ("30s", "1.5h", "250ms"), or a bare number of seconds, in ms; NaN when it is none. */
function durationMs(raw: string): number {
  const match = /^(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)?$/.exec(raw.trim());
  return match ? Math.round(Number(match[1]) * UNIT_MS[match[2] ?? "s"]!) : Number.NaN;
}

/** --ttl DURATION in milliseconds, counted to the millisecond; from 1 ms to ten years. Undefined without it. */
export function ttlOf(flags: TtlFlags): number | undefined {
  if (flags.ttl === undefined) return undefined;
  const ms = durationMs(flags.ttl);
  if (!(ms >= 1 && ms <= TEN_YEARS_MS)) {
    throw new ConfigError(
      `--ttl must be a duration from 1ms to ten years, a number with a unit of ms, s, m or h (30s, 1.5h) or of seconds (30), not ${JSON.stringify(flags.ttl)}`,
    );
  }
  return ms;
}

/** --lock-timeout DURATION, else KV_LOCK_TIMEOUT, in milliseconds (0: do not wait); DEFAULT_LOCK_TIMEOUT_MS without either. */
export function lockTimeoutOf(flags: LockFlags, env: Env): number {
  const raw = flags["lock-timeout"] ?? setting(env, "KV_LOCK_TIMEOUT");
  if (raw === undefined) return DEFAULT_LOCK_TIMEOUT_MS;
  const ms = durationMs(raw);
  if (!(ms >= 0 && ms <= TEN_YEARS_MS)) {
    throw new ConfigError(
      `KV_LOCK_TIMEOUT (--lock-timeout) must be a duration of 0 or more, a number with a unit of ms, s, m or h (250ms, 30s) or of seconds (10), not ${JSON.stringify(raw)}`,
    );
  }
  return ms;
}
