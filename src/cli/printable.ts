/**
 * What the CLI prints of data (keys, values in listings): never a control character raw, so that a
 * key cannot forge a line or move the terminal's cursor. Escaped as JSON escapes them, DEL included.
 */

/** JSON text, with DEL escaped too (JSON.stringify escapes the other control characters). */
export function json(value: unknown): string {
  return JSON.stringify(value).replaceAll("\x7f", "\\u007f");
}

/** A key as the seed's messages quote it ('...'): its control characters escaped, nothing else. */
export function shown(key: string): string {
  return key.replace(/[\x00-\x1f\x7f]/g, (c) => json(c).slice(1, -1));
}

/** "  (expires <ISO time>)" for an entry that expires at `expiresAt` (ms), "" for one that never does. */
export function expiring(expiresAt: number | undefined): string {
  return expiresAt === undefined ? "" : `  (expires ${new Date(expiresAt).toISOString()})`;
}
