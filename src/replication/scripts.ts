/**
 * The namespace's data in Redis, and the Lua scripts that read and write it atomically. Every key
 * carries the hash tag {NS}, so a namespace lives on one Redis Cluster shard and a script may touch
 * all of its keys.
 *
 *   {NS}:rev  string  the namespace's revision: its successful writes so far
 *   {NS}:kv   hash    key -> "<revision> <unix seconds> <value>"
 *   {NS}:log  stream  one entry per write, ID "<revision>-0": op ("set"/"del"), k, v, ts (unix
 *                     seconds), ms (Redis's clock, milliseconds, for the lag); trimmed to about MAXLEN
 *   {NS}:incr string  INCR's scratch: written and removed inside the script, never seen outside it
 */
import type { RedisClient } from "bun";

export interface NamespaceKeys {
  rev: string;
  kv: string;
  log: string;
  scratch: string;
}

export function namespaceKeys(namespace: string): NamespaceKeys {
  const tag = `{${namespace}}`;
  return { rev: `${tag}:rev`, kv: `${tag}:kv`, log: `${tag}:log`, scratch: `${tag}:incr` };
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

/**
 * An increment. KEYS: rev, kv, log, scratch. ARGV: key, by (decimal), max entries, MAXLEN, value max.
 * Lua's numbers are doubles, so the sum is Redis's own INCRBY on the scratch key: its int64
 * arithmetic, and its reading of a value (the one kv_incr follows: no "+", spaces, leading zeros).
 * Answers {"OK", revision, unix seconds, new value (digits)}, {"NOTNUM", 0}, {"RANGE", 0}, {"FULL", 0}
 * or {"VALUELEN", 0} (the digits are longer than the stores' value_max); nothing is written but OK.
 */
export const INCR = `
local key = ARGV[1]
local cur = redis.call('HGET', KEYS[2], key)
local old = '0'
if cur then
  old = string.match(cur, '^%d+ %-?%d+ (.*)$')
elseif redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[3]) then
  return {'FULL', 0}
end
redis.call('SET', KEYS[4], old)
local sum = redis.pcall('INCRBY', KEYS[4], ARGV[2])
local value = redis.call('GET', KEYS[4])
redis.call('DEL', KEYS[4])
if type(sum) == 'table' and sum.err then
  if string.find(sum.err, 'overflow') then return {'RANGE', 0} end
  return {'NOTNUM', 0}
end
if #value > tonumber(ARGV[5]) then return {'VALUELEN', 0} end
local now = redis.call('TIME')
local rev = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], key, rev .. ' ' .. now[1] .. ' ' .. value)
local ms = string.format('%d', now[1] * 1000 + math.floor(now[2] / 1000))
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], rev .. '-0', 'op', 'set', 'k', key, 'v', value, 'ts', now[1], 'ms', ms)
return {'OK', rev, tonumber(now[1]), value}
`;

/**
 * One slice of a deletion by prefix: the keys of one HSCAN step that start with the prefix, each a
 * delete of its own (a revision and a stream entry), all in this one script. KEYS: rev, kv, log.
 * ARGV: prefix ("" every key), HSCAN cursor, COUNT, MAXLEN. Answers {next cursor ("0": done),
 * deleted, last revision (0: none)}. A key present from the first slice to the last is deleted
 * (HSCAN's guarantee); one set meanwhile may or may not be.
 */
export const DELETE_PREFIX = `
local prefix = ARGV[1]
local scan = redis.call('HSCAN', KEYS[2], ARGV[2], 'COUNT', ARGV[3])
local fields = scan[2]
local deleted, rev = 0, 0
local now = redis.call('TIME')
local ms = string.format('%d', now[1] * 1000 + math.floor(now[2] / 1000))
for i = 1, #fields, 2 do
  local key = fields[i]
  if string.sub(key, 1, #prefix) == prefix and redis.call('HDEL', KEYS[2], key) == 1 then
    rev = redis.call('INCR', KEYS[1])
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], rev .. '-0', 'op', 'del', 'k', key, 'v', '', 'ts', now[1], 'ms', ms)
    deleted = deleted + 1
  end
end
return {scan[1], deleted, rev}
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
