/**
 * Settings from the environment and the command line (a flag beats its variable; an empty variable
 * counts as unset). Every bad value is a ConfigError naming the setting; the callers exit with 2.
 */
import { readFileSync } from "node:fs";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { isHostName } from "./host-name.ts";
import { DEFAULTS, LIMITS, nameProblem } from "./limits.ts";
import type { KvOptions } from "./store.ts";
import type { ReplicationConfig } from "./replication/index.ts";

export type Env = Record<string, string | undefined>;

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

export const DEFAULT_STORE_NAME = "/shared_memory_kv";
export const DEFAULT_IDLE_TIMEOUT_SECONDS = 10;
/** The largest request body the server reads, in bytes, unless KV_MAX_BODY says otherwise. */
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;
export const DEFAULT_REPLICATE_MAXLEN = 100_000;
/** The longest expiry a write takes (HTTP's ttl, the CLI's --ttl): ten years, in seconds. */
export const TTL_MAX_SECONDS = 10 * 365 * 24 * 3600;

export interface ServerConfig {
  host: string;
  port: number;
  /** The shared-memory segment, "/name". */
  name: string;
  /** Geometry and mode, used only when the segment is created. */
  create: KvOptions;
  maxBodyBytes: number;
  logRequests: boolean;
  /** When set, every route but /, /health, /ui and the docs needs `Authorization: Bearer <token>`. */
  token?: string;
  /** Seconds before an idle connection is closed. Default DEFAULT_IDLE_TIMEOUT_SECONDS. */
  idleTimeoutSeconds?: number;
  /** Open a segment another user owns, or that others may write (default false: refuse it). */
  trustSegmentOwner?: boolean;
  /** KV_ALLOWED_HOSTS: more Host names to answer for (src/http/hosts.ts); ["*"] for any. */
  allowedHosts?: string[];
  /** With --replicate: write through Redis and follow it (docs/replication.md). */
  replicate?: ReplicationConfig;
}

/** The option that accepts a segment of another owner: `serve`'s and every store command's. */
export const TRUST_OPTION = { "trust-segment-owner": { type: "boolean" } } as const;

/** The flags of `serve` (and of `bun run server`), with the variable each one overrides. */
export const SERVER_HELP = `Options (each overrides its environment variable):
  --host HOST          HOST           address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)
  --port PORT          PORT           TCP port (default 8000; 0 picks a free one)
  --name NAME          KV_SHM_NAME    shared-memory segment (default ${DEFAULT_STORE_NAME})
  --max-entries N      KV_MAX_ENTRIES capacity of a new segment (default ${DEFAULTS.maxEntries})
  --key-max BYTES      KV_KEY_MAX     longest key of a new segment (default ${DEFAULTS.keyMax})
  --value-max BYTES    KV_VALUE_MAX   longest value of a new segment (default ${DEFAULTS.valueMax}; up to ${LIMITS.valueMax},
                                      or ${LIMITS.valueMaxMemory} with --memory)
  --memory SIZE        KV_MEMORY      bytes for the keys and values of a new segment, e.g. 64M (K, M, G:
                                      powers of 1024); default: room for every entry at its largest
  --mode OCTAL         KV_SHM_MODE    file mode of a new segment, e.g. 0660 (default 0${DEFAULTS.mode.toString(8)})
  --evict POLICY       KV_EVICT       what a new segment does when full: none (refuse: 507; the default) or
                                      lru (evict the least recently used entries to make room)
  --max-body BYTES     KV_MAX_BODY    largest request body (default ${DEFAULT_MAX_BODY_BYTES})
  --quiet              KV_LOG_REQUESTS=0  no log line per request
  --token-file FILE    KV_API_TOKEN   the API token (the flag names a file that holds it): every route
                                      but /, /health, /ui and the docs then needs Authorization: Bearer <token>
  --idle-timeout SECS  KV_IDLE_TIMEOUT  seconds before an idle connection is closed (default ${DEFAULT_IDLE_TIMEOUT_SECONDS})
  --allowed-hosts LIST KV_ALLOWED_HOSTS  more Host names to answer for, comma-separated (* for any). Without
                                      a token only localhost, 127.0.0.0/8, [::1] and HOST are answered
                                      (against DNS rebinding); with a token any, unless this is set
  --trust-segment-owner  KV_TRUST_SEGMENT_OWNER=1  open the segment even when another user owns it
                                      or others may write it (refused by default: see docs/security.md)
  --replicate URL      KV_REPLICATE   replicate through Redis, redis://HOST:PORT[/DB] (docs/replication.md)
  --namespace NS       KV_NAMESPACE   the Redis namespace to replicate (default: the segment name without its /)
  --replicate-maxlen N KV_REPLICATE_MAXLEN  changes the Redis stream keeps, about (default ${DEFAULT_REPLICATE_MAXLEN})
  --help               this text`;

/** Options that say how to create a segment: shared by `serve` and the CLI's `set`. */
export const CREATE_OPTIONS = {
  name: { type: "string" },
  "max-entries": { type: "string" },
  "key-max": { type: "string" },
  "value-max": { type: "string" },
  memory: { type: "string" },
  mode: { type: "string" },
  evict: { type: "string" },
} as const;

/** The options of replication: shared by `serve` and `replicate`. */
export const REPLICATE_OPTIONS = {
  replicate: { type: "string" },
  namespace: { type: "string" },
  "replicate-maxlen": { type: "string" },
} as const;

const SERVER_OPTIONS = {
  ...CREATE_OPTIONS,
  ...TRUST_OPTION,
  ...REPLICATE_OPTIONS,
  host: { type: "string" },
  port: { type: "string" },
  "max-body": { type: "string" },
  quiet: { type: "boolean" },
  "token-file": { type: "string" },
  "idle-timeout": { type: "string" },
  "allowed-hosts": { type: "string" },
  help: { type: "boolean" },
} as const;

/** The server's settings, or "help" when --help was given. */
export function serverConfig(argv: string[], env: Env): ServerConfig | "help" {
  const flags = parseFlags(argv, SERVER_OPTIONS, false).values;
  if (flags.help) return "help";
  const host = flags.host ?? setting(env, "HOST") ?? "127.0.0.1";
  if (host.trim() === "") throw new ConfigError("HOST must not be empty");
  const trustSegmentOwner = trustsSegmentOwner(flags, env);
  const name = storeName(flags, env);
  return {
    host,
    port: integer("PORT (--port)", flags.port ?? setting(env, "PORT"), 8000, 0, 65535),
    name,
    create: createOptions(flags, env, trustSegmentOwner),
    maxBodyBytes: integer("KV_MAX_BODY (--max-body)", flags["max-body"] ?? setting(env, "KV_MAX_BODY"), DEFAULT_MAX_BODY_BYTES, 1, 2 ** 30),
    logRequests: !flags.quiet && boolean("KV_LOG_REQUESTS", setting(env, "KV_LOG_REQUESTS"), true),
    token: apiToken(flags["token-file"], env),
    idleTimeoutSeconds: integer(
      "KV_IDLE_TIMEOUT (--idle-timeout)",
      flags["idle-timeout"] ?? setting(env, "KV_IDLE_TIMEOUT"),
      DEFAULT_IDLE_TIMEOUT_SECONDS,
      1,
      255,
    ),
    trustSegmentOwner,
    allowedHosts: allowedHosts(flags["allowed-hosts"] ?? setting(env, "KV_ALLOWED_HOSTS")),
    replicate: replicationConfig(flags, env, name),
  };
}

type ReplicateFlags = { replicate?: string; namespace?: string; "replicate-maxlen"?: string; evict?: string };

/** Replication's settings, or undefined without --replicate (KV_REPLICATE). */
export function replicationConfig(flags: ReplicateFlags, env: Env, name: string): ReplicationConfig | undefined {
  const url = flags.replicate ?? setting(env, "KV_REPLICATE");
  const namespace = flags.namespace ?? setting(env, "KV_NAMESPACE") ?? name.slice(1);
  const maxlenRaw = flags["replicate-maxlen"] ?? setting(env, "KV_REPLICATE_MAXLEN");
  if (url === undefined) {
    if (flags.namespace !== undefined || flags["replicate-maxlen"] !== undefined) {
      throw new ConfigError("--namespace and --replicate-maxlen go with --replicate (KV_REPLICATE)");
    }
    return undefined;
  }
  if (evictPolicy(flags, env) === "lru") {
    throw new ConfigError(
      "KV_EVICT (--evict) lru cannot go with --replicate (KV_REPLICATE): Redis holds the namespace, and a replica may not drop what it holds",
    );
  }
  if (!/^rediss?:\/\/[^\s]+$/.test(url)) {
    throw new ConfigError("KV_REPLICATE (--replicate) must be a redis:// or rediss:// URL, such as redis://127.0.0.1:6379/0 (the value is not shown: it may hold a password)");
  }
  if (!/^[\x21-\x7e]{1,200}$/.test(namespace) || /[{}]/.test(namespace)) {
    throw new ConfigError(`KV_NAMESPACE (--namespace) must be 1 to 200 visible ASCII characters without braces, not ${JSON.stringify(namespace)}`);
  }
  return {
    url,
    namespace,
    maxlen: integer("KV_REPLICATE_MAXLEN (--replicate-maxlen)", maxlenRaw, DEFAULT_REPLICATE_MAXLEN, 1, 2 ** 31),
  };
}

/** --trust-segment-owner, else KV_TRUST_SEGMENT_OWNER: open a segment of another owner, or o+w. */
export function trustsSegmentOwner(flags: { "trust-segment-owner"?: boolean }, env: Env): boolean {
  return flags["trust-segment-owner"] === true || boolean("KV_TRUST_SEGMENT_OWNER", setting(env, "KV_TRUST_SEGMENT_OWNER"), false);
}

/** KV_ALLOWED_HOSTS: host names or addresses (no port), comma-separated; or "*". */
function allowedHosts(raw: string | undefined): string[] | undefined {
  if (raw === undefined) return undefined;
  const names = raw.split(",").map((name) => name.trim()).filter((name) => name !== "");
  const bad = names.find((name) => name !== "*" && !isHostName(name));
  if (names.length === 0 || bad !== undefined || (names.includes("*") && names.length > 1)) {
    throw new ConfigError(
      `KV_ALLOWED_HOSTS (--allowed-hosts) must be host names or addresses without a port, comma-separated, or *, not ${JSON.stringify(raw)}`,
    );
  }
  return names;
}

/**
 * The API token: the content of --token-file (a flag on the command line would show the token to
 * every user, in ps), else KV_API_TOKEN. No message ever shows it.
 */
function apiToken(file: string | undefined, env: Env): string | undefined {
  let token = setting(env, "KV_API_TOKEN");
  if (file !== undefined) {
    try {
      token = readFileSync(file, "utf8").trim();
    } catch (error) {
      throw new ConfigError(`--token-file: cannot read ${file}: ${(error as Error).message}`);
    }
  }
  if (token !== undefined && !/^[\x21-\x7e]+$/.test(token)) {
    throw new ConfigError("KV_API_TOKEN (--token-file) must be visible ASCII characters, with no spaces (the value is not shown)");
  }
  return token;
}

/** Where the CLI sends its writes instead of the segment: --server URL, else KV_SERVER; and the token. */
export interface WriteServer {
  url: URL;
  token: string | undefined;
}

/** --server, else KV_SERVER: an http(s) URL of a shmkv server; undefined when neither is given. */
export function writeServer(flags: { server?: string; "token-file"?: string }, env: Env): WriteServer | undefined {
  const raw = flags.server ?? setting(env, "KV_SERVER");
  if (raw === undefined) return undefined;
  let url: URL | undefined;
  try {
    url = new URL(raw.endsWith("/") ? raw : `${raw}/`);
  } catch {
    url = undefined;
  }
  if (!url || !/^https?:$/.test(url.protocol) || url.search || url.hash) {
    throw new ConfigError(`KV_SERVER (--server) must be the http:// or https:// address of a shmkv server, such as http://127.0.0.1:8000, not ${JSON.stringify(raw)}`);
  }
  return { url, token: apiToken(flags["token-file"], env) };
}

/** parseArgs, with its errors (unknown option, missing value, extra argument) as ConfigErrors. */
export function parseFlags<const O extends NonNullable<ParseArgsConfig["options"]>>(
  argv: string[],
  options: O,
  allowPositionals: boolean,
) {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true });
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
}

/** --name, else KV_SHM_NAME, else the default; checked by the header's rule (src/limits.ts). */
export function storeName(flags: { name?: string }, env: Env): string {
  const name = flags.name ?? setting(env, "KV_SHM_NAME") ?? DEFAULT_STORE_NAME;
  const problem = nameProblem(name);
  if (problem) throw new ConfigError(`KV_SHM_NAME (--name) ${problem}`);
  return name;
}

export type CreateFlags = { "max-entries"?: string; "key-max"?: string; "value-max"?: string; memory?: string; mode?: string; evict?: string };

/**
 * The geometry and mode of a segment to create, from flags and environment; unset = default. A
 * mode that lets others write the segment is refused unless its owner is trusted anyway (`trusted`):
 * the next open would refuse the segment. Values may be as long as a heap allows when --memory is
 * given, or when `keepsHeap` (a resize of a store that has one, which it keeps without --memory).
 */
export function createOptions(flags: CreateFlags, env: Env, trusted: boolean, keepsHeap = false): KvOptions {
  const mode = fileMode(flags.mode ?? setting(env, "KV_SHM_MODE"));
  if (mode !== undefined && mode & 0o002 && !trusted) {
    throw new ConfigError(
      `KV_SHM_MODE (--mode) 0${mode.toString(8)} lets every user write the segment, which would then not be trusted: ` +
        "share it with a group (0660), or add --trust-segment-owner (KV_TRUST_SEGMENT_OWNER=1)",
    );
  }
  const optional = (label: string, raw: string | undefined, max: number) =>
    raw === undefined ? undefined : integer(label, raw, 0, 1, max);
  const memoryBytes = memorySize(flags.memory ?? setting(env, "KV_MEMORY"));
  return {
    maxEntries: optional("KV_MAX_ENTRIES (--max-entries)", flags["max-entries"] ?? setting(env, "KV_MAX_ENTRIES"), LIMITS.maxEntries),
    keyMax: optional("KV_KEY_MAX (--key-max)", flags["key-max"] ?? setting(env, "KV_KEY_MAX"), LIMITS.keyMax),
    valueMax: optional(
      "KV_VALUE_MAX (--value-max)",
      flags["value-max"] ?? setting(env, "KV_VALUE_MAX"),
      memoryBytes || keepsHeap ? LIMITS.valueMaxMemory : LIMITS.valueMax,
    ),
    memoryBytes,
    mode,
    evict: evictPolicy(flags, env),
  };
}

/** --evict, else KV_EVICT: none or lru; undefined when neither is given. */
function evictPolicy(flags: { evict?: string }, env: Env): KvOptions["evict"] {
  const raw = flags.evict ?? setting(env, "KV_EVICT");
  if (raw === undefined || raw === "none" || raw === "lru") return raw;
  throw new ConfigError(`KV_EVICT (--evict) must be none or lru, not ${JSON.stringify(raw)}`);
}

const SIZE_UNITS: Record<string, number> = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30 };

/** --memory / KV_MEMORY: bytes, or a number with a K, M or G suffix (powers of 1024). */
function memorySize(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const match = /^(\d+)([kmg]?)$/i.exec(raw.trim());
  const bytes = match ? Number(match[1]) * SIZE_UNITS[match[2]!.toLowerCase()]! : Number.NaN;
  if (!Number.isSafeInteger(bytes) || bytes < LIMITS.memoryMin || bytes > LIMITS.memory) {
    throw new ConfigError(
      `KV_MEMORY (--memory) must be a size from ${LIMITS.memoryMin} bytes to ${LIMITS.memory / 2 ** 30}G, in bytes or with a K, M or G suffix (such as 64M), not ${JSON.stringify(raw)}`,
    );
  }
  return bytes;
}

/** A variable's value; undefined when it is unset or empty. */
export function setting(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value === "" ? undefined : value;
}

function integer(label: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback;
  const value = /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(`${label} must be an integer from ${min} to ${max}, not ${JSON.stringify(raw)}`);
  }
  return value;
}

function fileMode(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const digits = /^(?:0o)?0*([0-7]{1,3})$/i.exec(raw.trim())?.[1];
  const mode = digits ? Number.parseInt(digits, 8) : 0;
  if (mode < 1) {
    throw new ConfigError(`KV_SHM_MODE (--mode) must be an octal file mode from 0001 to 0777, such as 0660, not ${JSON.stringify(raw)}`);
  }
  return mode;
}

function boolean(label: string, raw: string | undefined, fallback: boolean): boolean {
  if (raw === undefined) return fallback;
  const value = raw.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(value)) return true;
  if (["0", "false", "no", "off"].includes(value)) return false;
  throw new ConfigError(`${label} must be 1 or 0 (true/false, yes/no, on/off), not ${JSON.stringify(raw)}`);
}
