/** KvService: what each route does, in terms of the store. Knows nothing of HTTP requests. */
import { isUtf8 } from "node:buffer";
import { KvError } from "../errors.ts";
import { int64Of, type KvBytesEntry, type KvStore } from "../store.ts";
import { andThen, DEFAULT_BUSY_WAIT_MS, isBusy, retryWhenFree, whenFree } from "./busy.ts";
import type { Condition } from "./conditions.ts";
import { ApiError } from "./errors.ts";
import { keysPage, statusPage, wholeStatus, type WhenFree } from "./listing.ts";
import type { StoreFigures } from "./metrics.ts";
import type {
  DeleteKeysQuery,
  DeleteKeysResponse,
  GetResponse,
  HealthResponse,
  KeysQuery,
  KeysResponse,
  StatusQuery,
  SuccessResponse,
} from "./models.ts";
import type { StoreSlot } from "./store-slot.ts";
import { localWriter, type Incremented, type KvWriter, type ReplicatedWriter } from "./writer.ts";

/** A body, and the revision of the entry it is about (its ETag), and when that entry expires. */
export interface Revisioned<T> {
  body: T;
  revision: number;
  /** Milliseconds since the epoch; absent when the entry never expires. */
  expiresAt?: number;
}

export interface ServiceOptions {
  /** Milliseconds a request may wait for a busy store (a writer holding its lock) before 503. */
  busyWaitMs?: number;
  /** Writes go through it when given (src/replication/), else to the store itself. */
  replication?: ReplicatedWriter;
}

/**
 * Every method may answer later (a promise) rather than now: when a writer holds the store's lock,
 * a write (or a read that writers keep overtaking) is tried again after a pause (see busy.ts); a
 * replicated write answers once Redis has it and this host's segment too.
 */
export class KvService {
  readonly #busyWaitMs: number;
  readonly #writer: KvWriter;
  readonly #replication: ReplicatedWriter | undefined;

  constructor(
    private readonly slot: StoreSlot,
    options: ServiceOptions = {},
  ) {
    this.#busyWaitMs = options.busyWaitMs ?? DEFAULT_BUSY_WAIT_MS;
    this.#replication = options.replication;
    this.#writer = options.replication ?? localWriter(slot, (store) => this.#freeFor(store));
  }

  /** The entry as text; NOT_UTF8 when its value is bytes that are not UTF-8 (getBytes reads them). */
  get(key: string): Revisioned<GetResponse> | Promise<Revisioned<GetResponse>> {
    return this.#read(key, textEntry);
  }

  /** The entry's value as the bytes stored, whatever they are. */
  getBytes(key: string): Revisioned<Uint8Array> | Promise<Revisioned<Uint8Array>> {
    return this.#read(key, bytesEntry);
  }

  /** Set `key`, when `condition` holds (PRECONDITION_FAILED otherwise), to expire after `ttl` seconds when given. */
  set(key: string, value: string, condition?: Condition, ttl?: number): Revisioned<SuccessResponse> | Promise<Revisioned<SuccessResponse>> {
    const ttlMs = this.#ttlMs(ttl);
    const revision = this.#whenFree(() => this.#writer.set(key, value, condition, ttlMs));
    return andThen(revision, (r) => ({ body: { success: true as const, message: `Key '${key}' set successfully` }, revision: r }));
  }

  /** Delete `key`, when `condition` holds (PRECONDITION_FAILED otherwise). */
  delete(key: string, condition?: Condition): SuccessResponse | Promise<SuccessResponse> {
    const deleted = this.#whenFree(() => unlessTooLong(() => this.#writer.delete(key, condition)));
    if (!(deleted instanceof Promise)) return deleteAnswer(key, deleted);
    return deleted.then((d) => deleteAnswer(key, d), (error: unknown) => deleteAnswer(key, absentIfTooLong(error)));
  }

  /**
   * Add `by` (a safe integer, or decimal digits) to the integer `key` holds, atomically: the new value
   * and revision. A key the increment creates expires after `ttl` seconds when given.
   */
  incr(key: string, by: string | number = 1, ttl?: number): Incremented | Promise<Incremented> {
    // Digits beyond int64 are INVALID_ARGUMENT (400), as a number beyond 2^53 is (its schema).
    const delta = int64Of(typeof by === "string" ? BigInt(by) : by);
    const ttlMs = this.#ttlMs(ttl);
    return this.#whenFree(() => this.#writer.incr(key, delta, ttlMs));
  }

  /** Delete every key with `query.prefix`, or every key with `query.all`; how many. */
  deleteKeys(query: DeleteKeysQuery): Promise<DeleteKeysResponse> {
    if (query.all !== undefined && query.prefix !== undefined) throw new ApiError("BAD_REQUEST", "send ?prefix=P or ?all=1, not both");
    if (query.all === undefined && !query.prefix) {
      throw new ApiError("BAD_REQUEST", "DELETE /keys needs a non-empty ?prefix=P (or ?all=1 to delete every key)");
    }
    return this.#writer.deletePrefix(query.prefix ?? "").then((deleted) => ({ deleted }));
  }

  /**
   * The whole store, as the seed answered (sent as it is read when it is big); one page of its
   * entries with a limit or a cursor.
   */
  status(query: StatusQuery = {}): Response | Promise<Response> {
    const store = this.slot.require();
    const free = this.#freeFor(store);
    if (query.limit !== undefined || query.cursor !== undefined) return statusPage(store, query, free);
    return wholeStatus(store, free);
  }

  keys(query: KeysQuery): KeysResponse | Promise<KeysResponse> {
    const store = this.slot.require();
    return keysPage(store, query, this.#freeFor(store));
  }

  /** The store's figures for /metrics (header counters only); undefined while it is not available. */
  figures(): StoreFigures | undefined | Promise<StoreFigures | undefined> {
    const store = this.slot.current;
    if (!store) return undefined;
    return this.#withStore(() => ({ ...store.stats(), read_retries: store.readRetries, replication: this.#replication?.status() }));
  }

  /** Whether the store is open, how long its lock has been held (a stopped writer shows here), and replication. */
  health(): HealthResponse | Promise<HealthResponse> {
    return this.#withStore((store) => {
      const health: HealthResponse = {
        status: "ok",
        name: store.name,
        entry_count: store.count,
        max_entries: store.maxEntries,
        memory_bytes: store.memoryBytes,
        memory_used: store.memoryUsed,
        evict: store.evict,
        lock: { held_for_ms: store.lockHeldMs },
        reattached: this.slot.reattached,
      };
      if (this.#replication) health.replication = this.#replication.status();
      return health;
    });
  }

  /** A ttl in seconds (its schema bounds it) as whole milliseconds; undefined for none. */
  #ttlMs(ttl: number | undefined): number | undefined {
    return ttl === undefined ? undefined : Math.round(ttl * 1000);
  }

  /**
   * `read` of `key` in the open store, now, or later while a writer holds its lock. The reads of
   * single keys come this way, with no closure made unless the store is busy: GET /get/{key} is the
   * hot route (`BENCH_ONLY=http make bench`).
   */
  #read<T>(key: string, read: (store: KvStore, key: string) => T): T | Promise<T> {
    const store = this.slot.require();
    try {
      return read(store, key);
    } catch (error) {
      if (!isBusy(error)) throw error;
    }
    return retryWhenFree(() => read(store, key), this.#busyWaitMs, () => store.lockHeldMs);
  }

  /** `run` over the open store, now, or later while a writer holds its lock. */
  #withStore<T>(run: (store: KvStore) => T): T | Promise<T> {
    const store = this.slot.require();
    return this.#freeFor(store)(() => run(store));
  }

  /** `run`, now, or later while a writer holds the lock of the store open now. */
  #whenFree<T>(run: () => T | Promise<T>): T | Promise<T> {
    const store = this.slot.require();
    return whenFree(run, this.#busyWaitMs, () => store.lockHeldMs);
  }

  #freeFor(store: KvStore): WhenFree {
    return (read) => whenFree(read, this.#busyWaitMs, () => store.lockHeldMs);
  }
}

const REPLACEMENT = "\uFFFD";

/** The GET answer of `key`'s entry as text; NOT_UTF8 when its value is bytes that are not UTF-8. */
function textEntry(store: KvStore, key: string): Revisioned<GetResponse> {
  const entry = lookUp(store, key, store.getEntry);
  if (entry === undefined) throw notFound(key);
  // Bytes that do not decode became U+FFFD: only then is the value read again as bytes, to tell
  // such a value from text that holds U+FFFD itself.
  if (entry.value.includes(REPLACEMENT)) return utf8Entry(key, lookUp(store, key, store.getEntryBytes));
  return { body: { key, value: entry.value }, revision: entry.revision, expiresAt: entry.expiresAt };
}

/** The GET ?raw answer of `key`'s entry: its value's bytes. */
function bytesEntry(store: KvStore, key: string): Revisioned<Uint8Array> {
  const entry = lookUp(store, key, store.getEntryBytes);
  if (entry === undefined) throw notFound(key);
  return { body: entry.value, revision: entry.revision, expiresAt: entry.expiresAt };
}

/** The GET answer of an entry read as bytes: its text, or NOT_UTF8. */
function utf8Entry(key: string, entry: KvBytesEntry | undefined): Revisioned<GetResponse> {
  if (entry === undefined) throw notFound(key);
  if (!isUtf8(entry.value)) {
    throw new ApiError(
      "NOT_UTF8",
      `the value of '${key}' is ${entry.value.length} bytes that are not UTF-8 text: GET it with ?raw for the bytes`,
    );
  }
  return { body: { key, value: Buffer.from(entry.value).toString("utf8") }, revision: entry.revision, expiresAt: entry.expiresAt };
}

/** `key`'s entry as `get` (a read method of the store) gives it; undefined also when the key is too long to be in it. */
function lookUp<E>(store: KvStore, key: string, get: (this: KvStore, key: string) => E | undefined): E | undefined {
  try {
    return get.call(store, key);
  } catch (error) {
    return absentIfTooLong(error);
  }
}

function deleteAnswer(key: string, deleted: boolean | undefined): SuccessResponse {
  if (!deleted) throw notFound(key);
  return { success: true, message: `Key '${key}' deleted successfully` };
}

/**
 * What `read` gives, or undefined when the store refuses the key as too long: such a key cannot be
 * in it, which is "not found", not a bad request. (The store measures the key's UTF-8 bytes itself.)
 */
function unlessTooLong<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch (error) {
    return absentIfTooLong(error);
  }
}

/** undefined (absent) for a key too long for the store; any other failure thrown again. */
function absentIfTooLong(error: unknown): undefined {
  if (error instanceof KvError && error.code === "KEY_TOO_LONG") return undefined;
  throw error;
}

function notFound(key: string): ApiError {
  return new ApiError("NOT_FOUND", `Key '${key}' not found`);
}
