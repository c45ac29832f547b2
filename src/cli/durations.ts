/** `shmkv set --ttl 30s` and `shmkv incr --ttl 30s`: when the entry a write makes expires. */
import { ConfigError, TTL_MAX_SECONDS } from "../config.ts";

export const TTL_OPTIONS = { ttl: { type: "string" } } as const;

export interface TtlFlags {
  ttl?: string;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * --ttl DURATION in milliseconds: a number with a unit, ms, s, m or h ("30s", "1.5h", "250ms"), or
 * a bare number of seconds, counted to the millisecond; from 1 ms to ten years. Undefined without it.
 */
export function ttlOf(flags: TtlFlags): number | undefined {
  if (flags.ttl === undefined) return undefined;
  const match = /^(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)?$/.exec(flags.ttl.trim());
  const ms = match ? Math.round(Number(match[1]) * UNIT_MS[match[2] ?? "s"]!) : 0;
  if (ms < 1 || ms > TTL_MAX_SECONDS * 1000) {
    throw new ConfigError(
      `--ttl must be a duration from 1ms to ten years, a number with a unit of ms, s, m or h (30s, 1.5h) or of seconds (30), not ${JSON.stringify(flags.ttl)}`,
    );
  }
  return ms;
}
