/** `shmkv watch`: each change to the store, by any process, as one line, until SIGINT or SIGTERM. */
import { ConfigError } from "../config.ts";
import { watch, type FeedEvent } from "../feed.ts";
import { RING_CELLS } from "../layout.ts";
import type { KvStore } from "../store.ts";
import { watchChange } from "../http/watch.ts";
import { expiring, json as jsonText } from "./printable.ts";

export const WATCH_OPTIONS = { since: { type: "string" }, prefix: { type: "string" } } as const;

export interface WatchFlags {
  since?: string;
  prefix?: string;
}

/** --since N: start after revision N; without it, from now. */
export function sinceOf(flags: WatchFlags): number | undefined {
  if (flags.since === undefined) return undefined;
  const since = /^\d+$/.test(flags.since) ? Number(flags.since) : Number.NaN;
  if (!Number.isSafeInteger(since)) throw new ConfigError(`--since must be a revision (0, 1, 2, ...), not ${JSON.stringify(flags.since)}`);
  return since;
}

/** One line for an event: plain text, or JSON shaped as GET /watch's events ({event, ...data}). */
export function eventLine(event: FeedEvent, json: boolean): string {
  if (event.type === "resync") {
    if (json) return jsonText({ event: "resync", version: event.version });
    return `resync: changes were missed (the store keeps its last ${RING_CELLS}); it is now at version ${event.version}: reread it (shmkv status)`;
  }
  const { op, key, value, revision, timestamp, expiresAt, reason } = event.change;
  if (json) return jsonText({ event: op, ...watchChange(event.change) });
  const what = op === "set" ? `set ${jsonText(key)} = ${jsonText(value)}${expiring(expiresAt)}` : `delete ${jsonText(key)}${reason ? ` (${reason})` : ""}`;
  return `${new Date(timestamp * 1000).toISOString()}  #${revision}  ${what}`;
}

/** Print every change to `store` after `since` (default: now) to keys starting with `prefix`, until SIGINT or SIGTERM. */
export async function printChanges(
  store: KvStore,
  options: { since?: number; prefix?: string; json: boolean },
  out: (line: string) => void,
): Promise<void> {
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    for await (const event of watch(store, { since: options.since, prefix: options.prefix, signal: controller.signal })) {
      out(eventLine(event, options.json));
    }
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
}
