/**
 * Follower: keeps a host's segment a replica of one namespace in Redis. It loads the namespace's
 * state, then follows its stream (XREAD BLOCK on a connection of its own), applying each change with
 * Redis's revision (KvStore.apply), in stream order: a set with its expiry, so local readers find
 * the entry absent once it passes, and a key's end in Redis as a delete with reason "expired".
 * The segment is marked read-only for every other writer. A follower that finds its position
 * trimmed from the stream, or Redis behind it, loads the whole state again into a new segment and
 * renames it over the old one, so local readers switch from one complete state to the other.
 */
import type { RedisClient } from "bun";
import { renameSync, statSync } from "node:fs";
import { KvError } from "../errors.ts";
import { ApiError } from "../http/errors.ts";
import type { ReplicationStatus } from "../http/writer.ts";
import { KvStore, type KvOptions } from "../store.ts";
import { connected, namespaceKeys, POSITION, Script, SNAPSHOT, type NamespaceKeys } from "./scripts.ts";

/** Milliseconds an XREAD waits for new entries before asking again. */
const BLOCK_MS = 1000;
/** Stream entries read at once. */
const BATCH = 512;
/** Milliseconds between attempts while Redis cannot be reached. */
const RETRY_MS = 250;

const snapshot = new Script(SNAPSHOT);
const position = new Script(POSITION);

/** What the store applies for each op of the stream: "set", "del", "exp" (the key expired). */
const APPLIED = new Map<string, "set" | "delete" | "expired">([
  ["set", "set"],
  ["del", "delete"],
  ["exp", "expired"],
]);

export interface FollowerOptions {
  namespace: string;
  /** The local segment, "/name", and how to create it when missing. */
  name: string;
  create: KvOptions;
  /** Commands (the state, the position). */
  redis: RedisClient;
  /** A connection of its own, for XREAD BLOCK. */
  blocking: RedisClient;
  /** Told after a reload renamed a new segment over the old one. */
  onReload?: (reason: string) => void;
  /** Told of each failure that differs from the previous one. */
  onError?: (message: string) => void;
}

interface Waiter {
  revision: number;
  resolve: () => void;
}

export class Follower {
  readonly keys: NamespaceKeys;
  #store: KvStore | undefined;
  #state = "starting";
  #applied = 0;
  #lagMs = 0;
  #downSince: number | undefined;
  #lastError: string | null = null;
  #waiters: Waiter[] = [];
  #stopped = false;
  #running: Promise<void>;

  constructor(private readonly options: FollowerOptions) {
    this.keys = namespaceKeys(options.namespace);
    this.#running = this.#run();
  }

  /** The follower's own handle on the segment (for its geometry); REPLICA_UNAVAILABLE until open. */
  get store(): KvStore {
    if (this.#store) return this.#store;
    throw new ApiError("REPLICA_UNAVAILABLE", `the replica is not open yet: ${this.#lastError ?? "starting"}`);
  }

  /**
   * A write of this host, answered by Redis as `revision`: applied at once when it is the very next
   * change, so the writer need not wait for it to come back on the stream (the follower then skips
   * it there). False when other changes come first: the follower applies it in its turn.
   */
  applyOwn(op: "set" | "delete", key: string, value: string, revision: number, timestamp: number, expiresAt = 0): boolean {
    if (this.#state !== "following" || !this.#store || revision !== this.#applied + 1) return false;
    try {
      this.#store.apply(op, key, value, revision, timestamp, expiresAt);
    } catch (error) {
      if (error instanceof KvError && error.code === "STORE_BUSY") return false; // the follower applies it in its turn
      throw error;
    }
    this.#applied = revision;
    this.#lagMs = 0;
    this.#wake();
    return true;
  }

  status(): ReplicationStatus {
    const lag = this.#downSince === undefined ? this.#lagMs : Date.now() - this.#downSince;
    return { state: this.#state, lag_ms: Math.max(0, Math.round(lag)), applied_revision: this.#applied, last_error: this.#lastError };
  }

  /** Resolves once the segment holds revision `revision`; REPLICA_UNAVAILABLE after `timeoutMs`. */
  applied(revision: number, timeoutMs: number): Promise<void> {
    if (this.#applied >= revision) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new ApiError("REPLICA_UNAVAILABLE", `written in Redis at revision ${revision}, not yet applied here (${this.#lastError ?? "replication is behind"})`));
      }, timeoutMs);
      const waiter = { revision, resolve: () => (clearTimeout(timer), resolve()) };
      this.#waiters.push(waiter);
    });
  }

  /**
   * Stop following and close the segment (never unlinks it). Closes the blocking connection; the
   * caller closes the other first.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.options.blocking.close(); // ends a pending XREAD
    await this.#running;
    this.#store?.close();
  }

  async #run(): Promise<void> {
    let positioned = false;
    while (!this.#stopped) {
      try {
        // Lock timeout 0: the server's event loop never waits for a lock (a busy apply is retried).
        this.#store ??= KvStore.open(this.options.name, { create: true, ...this.options.create, lockTimeoutMs: 0 });
        await connected(this.options.redis);
        await connected(this.options.blocking);
        if (!positioned) {
          await this.#position();
          this.#connected(); // Redis answered
        }
        positioned = true;
        await this.#follow();
      } catch (error) {
        if (this.#stopped) break;
        positioned = false;
        this.#fail(error);
        await Bun.sleep(RETRY_MS);
      }
    }
  }

  /** Where to follow from: this segment's revision when the stream still holds what comes after it. */
  async #position(): Promise<void> {
    const store = this.#store!;
    if (!store.readOnly && store.version === 0) store.setReadOnly(true); // new: a replica from revision 0
    const local = store.readOnly ? store.version : -1; // a segment written directly is no replica of Redis
    const [revision, oldest] = (await position.run(this.options.redis, [this.keys.rev, this.keys.log], [])) as [number, number];
    if (local === revision || (local >= 0 && local < revision && oldest > 0 && oldest <= local + 1)) {
      this.#applied = local;
      return;
    }
    const why = local < 0 ? "the segment was not a replica" : local > revision ? `Redis is at revision ${revision}, behind this segment (${local})` : `the stream no longer holds revision ${local + 1}`;
    await this.#load(why);
  }

  /** Read and apply the next changes of the stream (waits up to BLOCK_MS for some). */
  async #follow(): Promise<void> {
    const { log } = this.keys;
    const reply = (await this.options.blocking.send("XREAD", ["BLOCK", String(BLOCK_MS), "COUNT", String(BATCH), "STREAMS", log, `${this.#applied}-0`])) as
      | Record<string, [string, string[]][]>
      | null;
    this.#connected();
    if (!reply) {
      this.#lagMs = 0;
      return;
    }
    for (const [id, fields] of reply[log] ?? []) {
      const revision = Number.parseInt(id, 10);
      if (revision <= this.#applied) continue;
      if (revision !== this.#applied + 1) return this.#load(`the stream no longer holds revision ${this.#applied + 1}`);
      const change = pairsOf(fields);
      const op = APPLIED.get(change.get("op") ?? "") ?? "delete";
      this.#store!.apply(op, change.get("k") ?? "", change.get("v") ?? "", revision, Number(change.get("ts")), Number(change.get("x") ?? 0));
      this.#applied = revision;
      this.#lagMs = Date.now() - Number(change.get("ms"));
    }
    this.#wake();
  }

  /** Load the whole state into a new segment, then put it in place of the old one. */
  async #load(reason: string): Promise<void> {
    this.#state = "loading";
    const [revision, flat, expiries] = (await snapshot.run(this.options.redis, [this.keys.rev, this.keys.kv, this.keys.ttl], [])) as [number, string[], string[]];
    const { name } = this.options;
    const old = this.#store!;
    const spare = `${name}.load-${process.pid}`;
    unlinkQuietly(spare);
    const fresh = KvStore.open(spare, {
      create: true,
      exclusive: true,
      maxEntries: old.maxEntries,
      keyMax: old.keyMax,
      valueMax: old.valueMax,
      memoryBytes: old.memoryOption,
      mode: modeOf(name) ?? this.options.create.mode, // the readers keep their access
    });
    try {
      fresh.setReadOnly(true);
      // An entry that has expired already by this host's clock would be absent here: left out.
      const now = Date.now();
      for (const entry of entriesOf(flat, expiries)) {
        if (entry.expiresAt === 0 || entry.expiresAt > now) fresh.apply("set", entry.key, entry.value, entry.revision, entry.timestamp, entry.expiresAt);
      }
      if (revision > fresh.version) fresh.apply("version", "", "", revision, 0);
      renameSync(`/dev/shm${spare}`, `/dev/shm${name}`);
    } catch (error) {
      unlinkQuietly(spare);
      throw error;
    } finally {
      fresh.close();
    }
    this.#store = KvStore.open(name);
    old.close();
    this.#applied = revision;
    this.#connected();
    this.options.onReload?.(`loaded revision ${revision} of namespace ${this.options.namespace} (${reason})`);
    this.#wake();
  }

  #connected(): void {
    if (this.#state !== "following") {
      this.#state = "following";
      this.#lastError = null;
      this.#downSince = undefined;
    }
  }

  #fail(error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    if (message !== this.#lastError) this.options.onError?.(message);
    this.#lastError = message;
    this.#state = "disconnected";
    this.#downSince ??= Date.now();
  }

  #wake(): void {
    const ready = this.#waiters.filter((w) => w.revision <= this.#applied);
    if (ready.length === 0) return;
    this.#waiters = this.#waiters.filter((w) => w.revision > this.#applied);
    for (const waiter of ready) waiter.resolve();
  }
}

/** A flat name, value, ... list (a stream entry's fields, ZRANGE WITHSCORES) as a map. */
function pairsOf(flat: string[]): Map<string, string> {
  const pairs = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2) pairs.set(flat[i]!, flat[i + 1]!);
  return pairs;
}

interface LoadedEntry {
  key: string;
  value: string;
  revision: number;
  timestamp: number;
  /** Milliseconds since the epoch (Redis's clock); 0: never expires. */
  expiresAt: number;
}

/**
 * HGETALL's flat key, "rev ts value" list as entries, with their expiries from ZRANGE WITHSCORES's
 * flat key, ms list; oldest revision first.
 */
function entriesOf(flat: string[], expiries: string[]): LoadedEntry[] {
  const expiresAt = pairsOf(expiries);
  const entries: LoadedEntry[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const packed = flat[i + 1]!;
    const space = packed.indexOf(" ");
    const second = packed.indexOf(" ", space + 1);
    entries.push({
      key: flat[i]!,
      revision: Number(packed.slice(0, space)),
      timestamp: Number(packed.slice(space + 1, second)),
      value: packed.slice(second + 1),
      expiresAt: Number(expiresAt.get(flat[i]!) ?? 0),
    });
  }
  return entries.sort((a, b) => a.revision - b.revision);
}

/** The permission bits of the segment `name`, or undefined when there is none. */
function modeOf(name: string): number | undefined {
  const mode = statSync(`/dev/shm${name}`, { throwIfNoEntry: false })?.mode;
  return mode === undefined ? undefined : mode & 0o777;
}

function unlinkQuietly(name: string): void {
  try {
    KvStore.unlink(name);
  } catch (error) {
    if (!(error instanceof KvError && error.code === "ENOENT")) throw error;
  }
}
