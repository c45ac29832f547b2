/**
 * The namespace's data in Redis, and the Lua scripts that read and write it atomically. Every key
 * carries the hash tag {NS}, so a namespace lives on one Redis Cluster shard and a script may touch
 * all of its keys.
 *
 *   {NS}:rev  string  the namespace's revision: its successful writes so far
 *   {NS}:kv   hash    key -> "<revision> <unix seconds> <value>"
 *   {NS}:ttl  zset    the keys that expire, each scored with when (Redis's clock, ms since the epoch)
 *   {NS}:log  stream  one entry per write, ID "<revision>-0": op ("set", "del", or "exp": a delete
 *                     because the key expired), k, v, ts (unix seconds), ms (Redis's clock,
 *                     milliseconds, for the lag), and x (a set's expiry, ms; absent: never);
 *                     trimmed to about MAXLEN
 *   {NS}:incr string  INCR's scratch: written and removed inside the script, never seen outside it
 *
 * An expired key stays in the hash until a write meets it or the EXPIRE sweep comes by; either
 * removes it as a revision of its own ("exp"), so every host applies its end in the same order.
 */
import type { RedisClient } from "bun";

export interface NamespaceKeys {
  rev: string;
  kv: string;
  log: string;
  ttl: string;
  scratch: string;
}

export function namespaceKeys(namespace: string): NamespaceKeys {
  const tag = `{${namespace}}`;
  return { rev: `${tag}:rev`, kv: `${tag}:kv`, log: `${tag}:log`, ttl: `${tag}:ttl`, scratch: `${tag}:incr` };
}

/** The keys every writing script takes first, in this order: KEYS[1] to KEYS[4]. */
export function writeKeys(keys: NamespaceKeys): string[] {
  return [keys.rev, keys.kv, keys.log, keys.ttl];
}

/**
 * What the writing scripts share (KEYS: rev, kv, log, ttl first): Redis's clock, read once, and
 * the functions that change a key, each change a revision and a stream entry of its own.
 */
const COMMON = `
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local stamp = string.format('%d', ms)

-- Remove key and its expiry as a change of its own, op 'del' or 'exp': its revision (0: absent).
local function remove(key, op, maxlen)
  redis.call('ZREM', KEYS[4], key)
  if redis.call('HDEL', KEYS[2], key) == 0 then return 0 end
  local rev = redis.call('INCR', KEYS[1])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, rev .. '-0', 'op', op, 'k', key, 'v', '', 'ts', now[1], 'ms', stamp)
  return rev
end

-- When key expires (ms), 0 for never.
local function expiry(key)
  return tonumber(redis.call('ZSCORE', KEYS[4], key) or '0')
end

-- Remove key if its expiry has passed: a write meets it as absent.
local function drop_expired(key, maxlen)
  local at = expiry(key)
  if at > 0 and at <= ms then remove(key, 'exp', maxlen) end
end

-- Room for a new key among max: the namespace holds fewer, or the key that expired first goes.
local function room(max, maxlen)
  if redis.call('HLEN', KEYS[2]) < max then return true end
  local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', stamp, 'LIMIT', 0, 1)[1]
  return due ~= nil and remove(due, 'exp', maxlen) > 0
end

-- Set key to value, expiring at \`at\` (ms; 0: never), as a change of its own: its revision.
local function put(key, value, at, maxlen)
  local rev = redis.call('INCR', KEYS[1])
  redis.call('HSET', KEYS[2], key, rev .. ' ' .. now[1] .. ' ' .. value)
  local fields = {'op', 'set', 'k', key, 'v', value, 'ts', now[1], 'ms', stamp}
  if at > 0 then
    local x = string.format('%d', at)
    redis.call('ZADD', KEYS[4], x, key)
    table.insert(fields, 'x')
    table.insert(fields, x)
  else
    redis.call('ZREM', KEYS[4], key)
  end
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, rev .. '-0', unpack(fields))
  return rev
end
`;

/**
 * One write. KEYS: rev, kv, log, ttl. ARGV: op ("set"/"del"), key, value, condition ("" none, "*"
 * the key exists, "0" it is absent, "N" it is at revision N), max entries, MAXLEN, ttl (ms; "0":
 * never expires, and a set clears the key's expiry, as Redis's SET). A key whose expiry has passed
 * is removed first (an "exp" change), then the write goes on as if it were absent. Answers {"OK",
 * revision, unix seconds, expiry (ms; 0: never)}, {"CONFLICT", revision found (0: absent)},
 * {"NOTFOUND", 0} (a delete of an absent key) or {"FULL", 0} (a new key and the namespace holds max
 * entries already, none of them expired).
 */
export const WRITE = `${COMMON}
local op, key, value, cond, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[6]
drop_expired(key, maxlen)
local cur = redis.call('HGET', KEYS[2], key)
local found = 0
if cur then found = tonumber(string.match(cur, '^(%d+) ')) end
if cond == '*' then
  if found == 0 then return {'CONFLICT', 0} end
elseif cond ~= '' and found ~= tonumber(cond) then
  return {'CONFLICT', found}
end
if op == 'del' then
  if found == 0 then return {'NOTFOUND', 0} end
  return {'OK', remove(key, 'del', maxlen), tonumber(now[1]), 0}
end
if found == 0 and not room(tonumber(ARGV[5]), maxlen) then return {'FULL', 0} end
local ttl = tonumber(ARGV[7])
local at = 0
if ttl > 0 then at = ms + ttl end
return {'OK', put(key, value, at, maxlen), tonumber(now[1]), at}
`;

/**
 * An increment. KEYS: rev, kv, log, ttl, scratch. ARGV: key, by (decimal), max entries, MAXLEN,
 * value max, ttl (ms; "0": none). Lua's numbers are doubles, so the sum is Redis's own INCRBY on the
 * scratch key: its int64 arithmetic, and its reading of a value (the one kv_incr follows: no "+",
 * spaces, leading zeros). An expired counter is removed first (an "exp" change) and counts from 0;
 * the ttl applies only when the increment creates the counter: an existing one keeps its expiry (as
 * Redis's INCR). Answers {"OK", revision, unix seconds, new value (digits), expiry (ms; 0: never)},
 * {"NOTNUM", 0}, {"RANGE", 0}, {"FULL", 0} or {"VALUELEN", 0} (the digits are longer than the
 * stores' value_max); nothing is written but OK (and the removal of an expired counter).
 */
export const INCR = `${COMMON}
local key, maxlen = ARGV[1], ARGV[4]
drop_expired(key, maxlen)
local cur = redis.call('HGET', KEYS[2], key)
local old = '0'
local at = 0
if cur then
  old = string.match(cur, '^%d+ %-?%d+ (.*)$')
  at = expiry(key)
elseif not room(tonumber(ARGV[3]), maxlen) then
  return {'FULL', 0}
elseif tonumber(ARGV[6]) > 0 then
  at = ms + tonumber(ARGV[6])
end
redis.call('SET', KEYS[5], old)
local sum = redis.pcall('INCRBY', KEYS[5], ARGV[2])
local value = redis.call('GET', KEYS[5])
redis.call('DEL', KEYS[5])
if type(sum) == 'table' and sum.err then
  if string.find(sum.err, 'overflow') then return {'RANGE', 0} end
  return {'NOTNUM', 0}
end
if #value > tonumber(ARGV[5]) then return {'VALUELEN', 0} end
return {'OK', put(key, value, at, maxlen), tonumber(now[1]), value, at}
`;

/**
 * One slice of a deletion by prefix: the keys of one HSCAN step that start with the prefix, each a
 * delete of its own (a revision and a stream entry), all in this one script. KEYS: rev, kv, log,
 * ttl. ARGV: prefix ("" every key), HSCAN cursor, COUNT, MAXLEN. A key found expired goes as an
 * "exp" change, and is not counted. Answers {next cursor ("0": done), deleted, last revision (0:
 * none)}. A key present from the first slice to the last is deleted (HSCAN's guarantee); one set
 * meanwhile may or may not be.
 */
export const DELETE_PREFIX = `${COMMON}
local prefix, maxlen = ARGV[1], ARGV[4]
local scan = redis.call('HSCAN', KEYS[2], ARGV[2], 'COUNT', ARGV[3])
local fields = scan[2]
local deleted, rev = 0, 0
for i = 1, #fields, 2 do
  local key = fields[i]
  if string.sub(key, 1, #prefix) == prefix then
    local at = expiry(key)
    local op = 'del'
    if at > 0 and at <= ms then op = 'exp' end
    local removed = remove(key, op, maxlen)
    if removed > 0 then
      rev = removed
      if op == 'del' then deleted = deleted + 1 end
    end
  end
end
return {scan[1], deleted, rev}
`;

/**
 * The sweep: remove up to max keys whose expiry has passed, each an "exp" change of its own.
 * KEYS: rev, kv, log, ttl. ARGV: max, MAXLEN. Idempotent, so every replicating server may run it.
 * Answers {removed, last revision (0: none)}.
 */
export const EXPIRE = `${COMMON}
local removed, rev = 0, 0
for _, key in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', stamp, 'LIMIT', 0, ARGV[1])) do
  local r = remove(key, 'exp', ARGV[2])
  if r > 0 then
    removed = removed + 1
    rev = r
  end
end
return {removed, rev}
`;

/**
 * The whole state at one revision. KEYS: rev, kv, ttl. Answers {revision, {key, "rev ts value",
 * ...}, {key, expiry (ms), ...}}.
 */
export const SNAPSHOT = `
return {tonumber(redis.call('GET', KEYS[1]) or '0'), redis.call('HGETALL', KEYS[2]), redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')}
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
