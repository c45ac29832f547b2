/** The CLI's compare-and-set flags: `set --if-revision N`, `set --if-absent`, `delete --if-revision N`. */
import { ConfigError } from "../config.ts";

/** Their parseArgs options; a command says which it takes (Command.conditions). */
export const CONDITION_OPTIONS = { "if-revision": { type: "string" }, "if-absent": { type: "boolean" } } as const;

export interface ConditionFlags {
  "if-revision"?: string;
  "if-absent"?: boolean;
}

/** The revision the entry must be at (0: it must be absent), or undefined for no condition. */
export function expectedRevision(flags: ConditionFlags): number | undefined {
  const revision = flags["if-revision"];
  if (revision !== undefined && flags["if-absent"]) throw new ConfigError("give --if-revision or --if-absent, not both");
  if (flags["if-absent"]) return 0;
  if (revision === undefined) return undefined;
  if (!/^\d{1,15}$/.test(revision) || Number(revision) < 1) {
    throw new ConfigError(`--if-revision must be a revision of 1 or more (as set --json or status --json print it), not ${JSON.stringify(revision)}`);
  }
  return Number(revision);
}
