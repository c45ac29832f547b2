/** `shmkv keys`'s flags: --prefix P (shared with watch) and --limit N. */
import { ConfigError } from "../config.ts";

export const LIST_OPTIONS = { limit: { type: "string" } } as const;

export interface ListFlags {
  limit?: string;
}

/** --limit N: at most N keys (1 or more); without it, every one. */
export function limitOf(flags: ListFlags): number {
  if (flags.limit === undefined) return Number.MAX_SAFE_INTEGER;
  const limit = /^\d{1,15}$/.test(flags.limit) ? Number(flags.limit) : 0;
  if (limit < 1) throw new ConfigError(`--limit must be a whole number of 1 or more, not ${JSON.stringify(flags.limit)}`);
  return limit;
}
