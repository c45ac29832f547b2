/**
 * `shmkv dump` and `shmkv restore`: a store as JSON lines and back, byte for byte (docs/backup.md).
 *
 * A dump is the store as of one version, taken without the lock: a lock-free scan of every slot
 * (each entry validated by its counters, as every read of the binding is), at version v1 when it
 * began; then the changes v1+1..v2 from the change ring, replayed over it. Each key scanned is as
 * of some version from v1 to v2, and its last change up to v2, if any, is in the ring: the result is
 * the store at v2 exactly. When the ring no longer holds them all (more than 256 writes during the
 * scan), the dump scans again, for up to DUMP_PATIENCE_MS. No lock is held but the binding's one-cell fallback, when writers
 * overtake a read of a slot 64 times.
 */
import { KvError } from "../errors.ts";
import { LIMITS } from "../limits.ts";
import type { KvRawEntry, KvStore } from "../store.ts";
import { json } from "./printable.ts";

export const DUMP_FORMAT = "shmkv-dump";
export const DUMP_VERSION = 1;
/** How long a dump goes on scanning while the ring cannot bridge any scan, before it gives up (STORE_BUSY). */
export const DUMP_PATIENCE_MS = 10_000;

/** The first line of a dump. */
export interface DumpHeader {
  format: typeof DUMP_FORMAT;
  version: typeof DUMP_VERSION;
  /** The store dumped, and its geometry: what restore creates a missing store with. */
  store: string;
  store_version: number;
  entry_count: number;
  max_entries: number;
  key_max: number;
  value_max: number;
  /** Present when the store was made with memory_bytes (its heap's bytes). */
  memory_bytes?: number;
  /** Present when the store evicts lru (what restore creates a missing store with). */
  evict?: "lru";
}

/** An entry of a dump, with the line it is on. */
export interface DumpEntry extends KvRawEntry {
  line: number;
}

export interface Dump {
  header: DumpHeader;
  /** In revision order. */
  entries: DumpEntry[];
}

/** A dump that cannot be restored: what is wrong, and where. */
export class DumpError extends Error {
  override readonly name = "DumpError";
}

/** Every entry of `store` as of one version, in revision order. */
export function snapshot(store: KvStore): { version: number; entries: KvRawEntry[] } {
  const deadline = performance.now() + DUMP_PATIENCE_MS;
  for (let attempt = 1; ; attempt++) {
    const read = scanAndChanges(store, deadline);
    if (read === undefined) continue;
    const { scan, version, changes, expired } = read;
    if (expired && performance.now() > deadline) {
      throw new KvError("STORE_BUSY", `cannot dump ${store.name}: more than 256 writes came during each of ${attempt} scans; try again`);
    }
    if (expired) continue;
    const byKey = new Map(scan.items.map((entry) => [keyId(entry.key), entry]));
    for (const { op, key, value = new Uint8Array(0), revision, timestamp, expiresAt } of changes) {
      if (op === "set") byKey.set(keyId(key), expiresAt === undefined ? { key, value, revision, timestamp } : { key, value, revision, timestamp, expiresAt });
      else byKey.delete(keyId(key));
    }
    // A set replayed from the ring may have expired since: it is absent by now, as a read would find.
    const now = Date.now();
    const entries = [...byKey.values()].filter((entry) => !expiredAt(entry, now));
    return { version, entries: entries.sort((a, b) => a.revision - b.revision) };
  }
}

/**
 * One scan and the changes since it began; undefined when a read of it was overtaken by writers
 * every time (STORE_BUSY) and there is time to try again: a dump is one process's, which may wait.
 */
function scanAndChanges(store: KvStore, deadline: number) {
  try {
    const scan = store.rawEntriesFrom(0, Number.MAX_SAFE_INTEGER);
    return { scan, ...store.changeBytesSince(scan.version) };
  } catch (error) {
    if (error instanceof KvError && error.code === "STORE_BUSY" && performance.now() < deadline) return undefined;
    throw error;
  }
}

/** Whether `entry` has expired by Unix millisecond `now`. */
function expiredAt(entry: KvRawEntry, now: number): boolean {
  return entry.expiresAt !== undefined && now >= entry.expiresAt;
}

/** A key's bytes as a string that tells every key apart, for a Map. */
function keyId(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.length).toString("latin1");
}

/** The dump of `store` as text: a header line, then one line per entry, each ending with "\n". */
export function dumpText(store: KvStore): { text: string; header: DumpHeader } {
  const { version, entries } = snapshot(store);
  const header: DumpHeader = {
    format: DUMP_FORMAT,
    version: DUMP_VERSION,
    store: store.name,
    store_version: version,
    entry_count: entries.length,
    max_entries: store.maxEntries,
    key_max: store.keyMax,
    value_max: store.valueMax,
    ...(store.memoryOption ? { memory_bytes: store.memoryOption } : {}),
    ...(store.evict === "lru" ? { evict: "lru" as const } : {}),
  };
  const lines = [json(header)];
  for (const { key, value, revision, timestamp, expiresAt } of entries) {
    const expiry = expiresAt === undefined ? {} : { expires_at: expiresAt / 1000 };
    lines.push(json({ ...textField("key", key), ...textField("value", value), revision, timestamp, ...expiry }));
  }
  return { text: `${lines.join("\n")}\n`, header };
}

// fatal: bytes that are not UTF-8 are told apart; ignoreBOM: a leading U+FEFF is data, kept.
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** `{name: text}` when the bytes are UTF-8, else `{name: base64, name_encoding: "base64"}`. */
function textField(name: "key" | "value", bytes: Uint8Array): Record<string, string> {
  try {
    return { [name]: strictUtf8.decode(bytes) };
  } catch {
    return { [name]: Buffer.from(bytes).toString("base64"), [`${name}_encoding`]: "base64" };
  }
}

const ENTRY_FIELDS = new Set(["key", "key_encoding", "value", "value_encoding", "revision", "timestamp", "expires_at"]);
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Parse a whole dump, or throw a DumpError naming the first bad line. */
export function parseDump(bytes: Uint8Array): Dump {
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    throw new DumpError("the file is not UTF-8 text, which a dump is");
  }
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  if (lines.length === 0) throw new DumpError("the file is empty: a dump starts with its header line");
  const header = parseHeader(lines[0]!);
  const entries: DumpEntry[] = [];
  const keyLines = new Map<string, number>();
  const revisionLines = new Map<number, number>();
  lines.slice(1).forEach((text, i) => {
    const line = i + 2;
    const entry = parseEntry(text, line, header);
    const id = keyId(entry.key);
    const again = keyLines.get(id) ?? revisionLines.get(entry.revision);
    if (again !== undefined) throw new DumpError(`line ${line}: the same key or revision as line ${again}`);
    keyLines.set(id, line);
    revisionLines.set(entry.revision, line);
    entries.push(entry);
  });
  if (entries.length !== header.entry_count) {
    throw new DumpError(`line ${lines.length}: the dump ends after ${entries.length} entries, its header says ${header.entry_count} (a truncated file?)`);
  }
  return { header, entries: entries.sort((a, b) => a.revision - b.revision) };
}

function parseObject(text: string, line: number): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new DumpError(`line ${line}: not JSON (${(error as Error).message})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new DumpError(`line ${line}: not a JSON object`);
  return value as Record<string, unknown>;
}

function wholeNumber(value: unknown, min: number, max: number): value is number {
  return Number.isSafeInteger(value) && (value as number) >= min && (value as number) <= max;
}

function parseHeader(text: string): DumpHeader {
  const header = parseObject(text, 1);
  if (header.format !== DUMP_FORMAT || header.version !== DUMP_VERSION) {
    throw new DumpError(`line 1: not a shmkv dump of version ${DUMP_VERSION} (its header must have "format":"${DUMP_FORMAT}","version":${DUMP_VERSION})`);
  }
  const checks: [keyof DumpHeader, number, number][] = [
    ["store_version", 0, Number.MAX_SAFE_INTEGER],
    ["entry_count", 0, LIMITS.maxEntries],
    ["max_entries", 1, LIMITS.maxEntries],
    ["key_max", 1, LIMITS.keyMax],
    ["value_max", 1, header.memory_bytes === undefined ? LIMITS.valueMax : LIMITS.valueMaxMemory],
  ];
  if (header.memory_bytes !== undefined) checks.push(["memory_bytes", LIMITS.memoryMin, LIMITS.memory]);
  const bad = checks.find(([field, min, max]) => !wholeNumber(header[field], min, max));
  if (bad) throw new DumpError(`line 1: ${bad[0]} must be a whole number from ${bad[1]} to ${bad[2]}`);
  if (typeof header.store !== "string") throw new DumpError("line 1: store must be the name of the store dumped");
  if (header.evict !== undefined && header.evict !== "lru") throw new DumpError(`line 1: evict must be "lru" when present`);
  return header as unknown as DumpHeader;
}

function parseEntry(text: string, line: number, header: DumpHeader): DumpEntry {
  const entry = parseObject(text, line);
  const unknown = Object.keys(entry).find((field) => !ENTRY_FIELDS.has(field));
  if (unknown !== undefined) throw new DumpError(`line ${line}: unknown field ${JSON.stringify(unknown)}`);
  const key = bytesField(entry, "key", line);
  const value = bytesField(entry, "value", line);
  if (key.length === 0 || key.includes(0)) throw new DumpError(`line ${line}: a key must be non-empty and hold no NUL byte`);
  if (!wholeNumber(entry.revision, 1, header.store_version)) {
    throw new DumpError(`line ${line}: revision must be a whole number from 1 to the dump's store_version, ${header.store_version}`);
  }
  if (!wholeNumber(entry.timestamp, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)) {
    throw new DumpError(`line ${line}: timestamp must be a whole number (Unix seconds)`);
  }
  const parsed: DumpEntry = { key, value, revision: entry.revision, timestamp: entry.timestamp, line };
  if (entry.expires_at !== undefined) parsed.expiresAt = expiresAtField(entry.expires_at, line);
  return parsed;
}

/** An entry's expires_at (Unix seconds, to the millisecond) as Unix milliseconds. */
function expiresAtField(seconds: unknown, line: number): number {
  const ms = typeof seconds === "number" ? Math.round(seconds * 1000) : Number.NaN;
  if (!wholeNumber(ms, 1, Number.MAX_SAFE_INTEGER)) {
    throw new DumpError(`line ${line}: expires_at must be a positive number (Unix seconds, to the millisecond) when present`);
  }
  return ms;
}

function bytesField(entry: Record<string, unknown>, name: "key" | "value", line: number): Uint8Array {
  const text = entry[name];
  const encoding = entry[`${name}_encoding`];
  if (typeof text !== "string") throw new DumpError(`line ${line}: ${name} must be a string`);
  if (encoding === undefined) return Buffer.from(text, "utf8");
  if (encoding !== "base64") throw new DumpError(`line ${line}: ${name}_encoding must be "base64" when present`);
  if (!BASE64.test(text)) throw new DumpError(`line ${line}: ${name} is not base64`);
  return new Uint8Array(Buffer.from(text, "base64"));
}

/** What a restore did. */
export interface Restored {
  written: number;
  deleted: number;
  /** Entries of the dump left out because they had expired. */
  expired: number;
  /** True when every entry kept the revision and timestamp of the dump. */
  revisionsKept: boolean;
  /** The store's version before the entries were written (after --replace's deletes). */
  versionBefore: number;
  version: number;
}

/** A restore that stopped part-way: what it had done, and why it stopped. */
export class PartialRestoreError extends Error {
  override readonly name = "PartialRestoreError";
}

/**
 * Write `dump` into `store` (emptied first with `replace`). Everything that can be checked is checked
 * before the first write: sizes against the store's geometry, room for every key, a replica's store.
 * Revisions, timestamps and expiries are the dump's when the store's version is below every revision
 * of the dump (a new store, say), written with kv_apply; otherwise the entries are plain new writes,
 * each with the time it has left to live. An entry whose expiry has passed when its turn comes is
 * left out (counted in `expired`).
 */
export function restore(store: KvStore, dump: Dump, replace: boolean): Restored {
  if (store.readOnly) throw new KvError("READ_ONLY", `${store.name} is a replica (read-only): restore into its primary instead`);
  checkFits(store, dump, replace);
  let deleted = 0;
  if (replace) {
    for (const { key } of store.rawEntriesFrom(0, Number.MAX_SAFE_INTEGER).items) if (store.delete(key)) deleted++;
  }
  const versionBefore = store.version;
  const first = dump.entries[0]?.revision ?? dump.header.store_version + 1;
  const keep = versionBefore < first;
  let written = 0;
  let expired = 0;
  try {
    for (const { key, value, revision, timestamp, expiresAt } of dump.entries) {
      const ttl = expiresAt === undefined ? undefined : expiresAt - Date.now();
      if (ttl !== undefined && ttl <= 0) {
        expired++;
        continue;
      }
      if (!keep) store.set(key, value, { ttl });
      else if (!store.apply("set", key, value, revision, timestamp, expiresAt)) {
        throw new KvError("CONFLICT", `another process wrote to ${store.name} meanwhile (it is at version ${store.version})`);
      }
      written++;
    }
    if (keep && dump.header.store_version > store.version) {
      store.apply("version", "", "", dump.header.store_version, Math.floor(Date.now() / 1000));
    }
  } catch (error) {
    const at = dump.entries[written + expired];
    const done = `${written} of ${dump.entries.length} entries written${replace ? `, after ${deleted} deleted` : ""}`;
    throw new PartialRestoreError(`restore stopped at line ${at?.line ?? "(end)"} with ${done}: ${(error as Error).message}`);
  }
  return { written, deleted, expired, revisionsKept: keep, versionBefore, version: store.version };
}

/** Throw, writing nothing, when an entry is too big for the store or the keys will not all fit (those expired already left out). */
function checkFits(store: KvStore, dump: Dump, replace: boolean): void {
  const now = Date.now();
  const entries = dump.entries.filter((entry) => !expiredAt(entry, now));
  for (const { key, value, line } of entries) {
    if (key.length > store.keyMax) throw new DumpError(`line ${line}: the key is ${key.length} bytes, over the store's ${store.keyMax} (--key-max when restore creates it)`);
    if (value.length > store.valueMax) throw new DumpError(`line ${line}: the value is ${value.length} bytes, over the store's ${store.valueMax} (--value-max when restore creates it)`);
  }
  const keys = new Set(entries.map(({ key }) => keyId(key)));
  if (!replace) for (const { key } of store.rawEntriesFrom(0, Number.MAX_SAFE_INTEGER).items) keys.add(keyId(key));
  if (keys.size > store.maxEntries) {
    throw new DumpError(`the store would need ${keys.size} entries and holds at most ${store.maxEntries} (--max-entries when restore creates it${replace ? "" : ", or --replace"})`);
  }
}
