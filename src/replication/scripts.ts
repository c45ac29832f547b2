/**
 * The namespace's data in Redis, and the Lua scripts that read and write it atomically. Every key
 * carries the hash tag {NS}, so a namespace lives on one Redis Cluster shard and a script may touch
 * all of its keys.
 *
 *   {NS}:rev  string  the namespace's revision: its successful writes so far
 *   {NS}:kv   hash    key -> "<revision> <unix seconds> <value>"
 *   {NS}:log  stream  one entry per write, ID "<revision>-0": op ("set"/"del"), k, v, ts (unix
 *                     seconds), ms (Redis's clock, milliseconds, for the lag); trimmed to about MAXLEN
 */
import type { RedisClient } from "bun";

export interface NamespaceKeys {
  rev: string;
  kv: string;
  log: string;
}

export function namespaceKeys(namespace: string): NamespaceKeys {
  const tag = `{${namespace}}`;
  return { rev: `${tag}:rev`, kv: `${tag}:kv`, log: `${tag}:log` };
}

/**
 * One write. KEYS: rev, kv, log. ARGV: op ("set"/"del"), key, value, condition ("" none, "*" the key
 * exists, "0" it is absent, "N" it is at revision N), max entries, MAXLEN. Answers {"OK", revision,
 * unix seconds},
 * {"CONFLICT", revision found (0: absent)}, {"NOTFOUND", 0} (a delete of an absent key) or
 * {"FULL", 0} (a new key and the namespace holds max entries already).
 */
export const WRITE = `
local op, key, value, cond = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local cur = redis.call('HGET', KEYS[2], key)
local found = 0
if cur then found = tonumber(string.match(cur, '^(%d+) ')) end
if cond == '*' then
  if found == 0 then return {'CONFLICT', 0} end
elseif cond ~= '' and found ~= tonumber(cond) then
  return {'CONFLICT', found}
end
if op == 'del' and found == 0 then return {'NOTFOUND', 0} end
if op == 'set' and found == 0 and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[5]) then return {'FULL', 0} end
local now = redis.call('TIME')
local rev = redis.call('INCR', KEYS[1])
if op == 'set' then
  redis.call('HSET', KEYS[2], key, rev .. ' ' .. now[1] .. ' ' .. value)
else
  redis.call('HDEL', KEYS[2], key)
end
local ms = string.format('%d', now[1] * 1000 + math.floor(now[2] / 1000))
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], rev .. '-0', 'op', op, 'k', key, 'v', value, 'ts', now[1], 'ms', ms)
return {'OK', rev, tonumber(now[1])}
`;

/** The whole state at one revision. KEYS: rev, kv. Answers {revision, {key, "rev ts value", ...}}. */
export const SNAPSHOT = `
return {tonumber(redis.call('GET', KEYS[1]) or '0'), redis.call('HGETALL', KEYS[2])}
`;

/**
 * Where the namespace is. KEYS: rev, log. Answers {revision, the oldest revision the stream still
 * holds (0: none)}.
 */
export const POSITION = `
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
local oldest = 0
if first then oldest = tonumber(string.match(first[1], '^(%d+)')) end
return {tonumber(redis.call('GET', KEYS[1]) or '0'), oldest}
`;

/** A script run by its SHA1 (EVALSHA), loaded with EVAL the first time a server lacks it. */
export class Script {
  readonly #sha: string;

  constructor(readonly source: string) {
    this.#sha = new Bun.CryptoHasher("sha1").update(source).digest("hex");
  }

  async run(redis: RedisClient, keys: string[], args: string[]): Promise<unknown> {
    const rest = [String(keys.length), ...keys, ...args];
    try {
      return await redis.send("EVALSHA", [this.#sha, ...rest]);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith("NOSCRIPT")) throw error;
      return redis.send("EVAL", [this.source, ...rest]);
    }
  }
}

/** Connect `redis` when it is not: its first use, or after Redis came back. */
export async function connected(redis: RedisClient): Promise<void> {
  if (!redis.connected) await redis.connect();
}
