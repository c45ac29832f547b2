/**
 * RedisWriter: the service's writes when the server replicates. Each write runs as one Lua script in
 * Redis (scripts.ts WRITE), which checks its condition, assigns the namespace's next revision and
 * appends the change to the stream; the answer waits until this host's segment holds that revision
 * (applied at once when it is the next one, else by the follower), so the writer reads its own write. A write Redis does not answer is REPLICA_UNAVAILABLE
 * (503, Retry-After): it may or may not have been made, as with any request that timed out. A
 * ttl's expiry is Redis's clock plus the ttl; expire() ends the keys whose expiry passed.
 */
import type { RedisClient } from "bun";
import { KvError, RC } from "../errors.ts";
import { failed, type Condition } from "../http/conditions.ts";
import { ApiError } from "../http/errors.ts";
import type { Incremented, ReplicatedWriter, ReplicationStatus } from "../http/writer.ts";
import type { Follower } from "./follower.ts";
import { connected, DELETE_PREFIX, EXPIRE, INCR, Script, WRITE, writeKeys } from "./scripts.ts";

/** Milliseconds a write waits for its own change to reach this host's segment. */
const APPLY_TIMEOUT_MS = 5000;
/** Milliseconds a write waits for a connection to Redis (a blip passes, an outage answers 503). */
const CONNECT_WAIT_MS = 1000;

/** Hash fields HSCAN looks at per slice of a deletion by prefix (one script run each). */
const DELETE_SLICE = 1000;

const write = new Script(WRITE);
const incr = new Script(INCR);
const deletePrefix = new Script(DELETE_PREFIX);
const expire = new Script(EXPIRE);

/** What the script answered, and (OK) the write's timestamp and expiry (ms; 0: never). */
type Outcome = ["OK" | "CONFLICT" | "NOTFOUND" | "FULL", number, number?, number?];

export class RedisWriter implements ReplicatedWriter {
  constructor(
    private readonly redis: RedisClient,
    private readonly follower: Follower,
    /** The stream's MAXLEN (approximate trimming). */
    private readonly maxlen: number,
  ) {}

  status(): ReplicationStatus {
    return this.follower.status();
  }

  /** Set `key`, to expire `ttlMs` milliseconds from now by Redis's clock (0: never; clears an expiry). */
  async set(key: string, value: string, condition: Condition, ttlMs = 0): Promise<number> {
    this.follower.store.checkWrite(key, value);
    const [outcome, revision, timestamp, expiresAt] = await this.#run("set", key, value, condition, ttlMs);
    if (outcome === "CONFLICT") throw failed(key, revision);
    if (outcome === "FULL") throw new KvError("TABLE_FULL", `cannot set ${JSON.stringify(key)}: the namespace holds as many entries as this store can`, RC.TABLE_FULL);
    await this.#applied("set", key, value, revision, timestamp!, expiresAt);
    return revision;
  }

  async delete(key: string, condition: Condition): Promise<boolean> {
    this.follower.store.checkWrite(key);
    const [outcome, revision, timestamp] = await this.#run("del", key, "", condition);
    if (outcome === "CONFLICT") throw failed(key, revision);
    if (outcome === "NOTFOUND") return false; // (a condition that wanted the key is a CONFLICT)
    await this.#applied("delete", key, "", revision, timestamp!);
    return true;
  }

  /** Add `by`; a counter it creates expires `ttlMs` milliseconds from now (0: never), one it finds keeps its expiry. */
  async incr(key: string, by: bigint, ttlMs = 0): Promise<Incremented> {
    const { keys, store } = this.follower;
    store.checkWrite(key);
    const args = [key, String(by), String(store.maxEntries), String(this.maxlen), String(store.valueMax), String(ttlMs)];
    const [outcome, revision, timestamp, value, expiresAt] = (await this.#script(incr, [...writeKeys(keys), keys.scratch], args)) as [string, number, number?, string?, number?];
    const refused = incrRefusal(outcome, key);
    if (refused) throw refused;
    await this.#applied("set", key, value!, revision, timestamp!, expiresAt);
    return { value: BigInt(value!), revision };
  }

  async deletePrefix(prefix: string): Promise<number> {
    const { keys } = this.follower;
    let deleted = 0;
    let last = 0;
    let cursor = "0";
    do {
      const args = [prefix, cursor, String(DELETE_SLICE), String(this.maxlen)];
      const [next, count, revision] = (await this.#script(deletePrefix, writeKeys(keys), args)) as [string, number, number];
      cursor = next;
      deleted += count;
      last = Math.max(last, revision);
    } while (cursor !== "0");
    // The follower applies each delete from the stream, in order; answer once the last is here.
    if (last > 0) await this.follower.applied(last, APPLY_TIMEOUT_MS);
    return deleted;
  }

  /**
   * Remove up to `max` keys of the namespace whose expiry has passed by Redis's clock, each a change
   * that every host applies; how many. Idempotent: every replicating server may sweep.
   */
  async expire(max: number): Promise<number> {
    const [removed] = (await this.#script(expire, writeKeys(this.follower.keys), [String(max), String(this.maxlen)])) as [number, number];
    return removed;
  }

  /** Once this host's segment holds the write: at once when it is the next change, else when followed. */
  async #applied(op: "set" | "delete", key: string, value: string, revision: number, timestamp: number, expiresAt = 0): Promise<void> {
    if (!this.follower.applyOwn(op, key, value, revision, timestamp, expiresAt)) await this.follower.applied(revision, APPLY_TIMEOUT_MS);
  }

  #run(op: "set" | "del", key: string, value: string, condition: Condition, ttlMs = 0): Promise<Outcome> {
    const { keys, store } = this.follower;
    const args = [op, key, value, conditionArg(condition), String(store.maxEntries), String(this.maxlen), String(ttlMs)];
    return this.#script(write, writeKeys(keys), args) as Promise<Outcome>;
  }

  /** Run `script` in Redis; REPLICA_UNAVAILABLE when Redis does not answer. */
  async #script(script: Script, keys: string[], args: string[]): Promise<unknown> {
    try {
      await connectedWithin(this.redis, CONNECT_WAIT_MS);
      return await script.run(this.redis, keys, args);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new ApiError("REPLICA_UNAVAILABLE", `cannot write through Redis: ${message}`);
    }
  }
}

/** The error for an INCR script's refusal, or undefined for OK. */
function incrRefusal(outcome: string, key: string): KvError | undefined {
  const what = `cannot increment ${JSON.stringify(key)}`;
  if (outcome === "NOTNUM") return new KvError("NOT_A_NUMBER", `${what}: the value is not a decimal integer (within int64)`, RC.NOT_A_NUMBER);
  if (outcome === "RANGE") return new KvError("ERANGE", `${what}: the sum would leave int64`);
  if (outcome === "FULL") return new KvError("TABLE_FULL", `${what}: the namespace holds as many entries as this store can`, RC.TABLE_FULL);
  if (outcome === "VALUELEN") return new KvError("VALUE_TOO_LONG", `${what}: the new value is longer than this store's values`, RC.VALUE_TOO_LONG);
  return undefined;
}

function conditionArg(condition: Condition): string {
  if (condition === undefined) return "";
  return condition === "exists" ? "*" : String(condition);
}

async function connectedWithin(redis: RedisClient, ms: number): Promise<void> {
  if (redis.connected) return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not connected to Redis (waited ${ms} ms)`)), ms);
  });
  try {
    await Promise.race([connected(redis), late]);
  } finally {
    clearTimeout(timer);
  }
}
