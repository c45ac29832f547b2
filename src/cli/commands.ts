/** The CLI's store commands: each opens the store, does one thing, prints, and returns an exit status. */
import { randomUUID } from "node:crypto";
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { ConfigError, createOptions, storeName, trustsSegmentOwner, writeServer, type CreateFlags, type Env, type WriteServer } from "../config.ts";
import { KvError } from "../errors.ts";
import { geometryMismatch } from "../geometry.ts";
import { unixSeconds } from "../http/expiry.ts";
import { statusEntry } from "../http/listing.ts";
import { KvStore, type OpenOptions } from "../store.ts";
import { dumpText, DumpError, parseDump, PartialRestoreError, restore, type Dump } from "./backup.ts";
import { expectedRevision, type ConditionFlags } from "./conditions.ts";
import { expiring, json, shown } from "./printable.ts";
import { limitOf, type ListFlags } from "./list.ts";
import { conditionHeaders, keyPath, RemoteError, send } from "./remote.ts";
import { lockTimeoutOf, ttlOf, type LockFlags, type TtlFlags } from "./durations.ts";
import { printChanges, sinceOf, type WatchFlags } from "./watch.ts";

export const EXIT = { OK: 0, FAILED: 1, USAGE: 2 } as const;

export interface Io {
  out(text: string): void;
  err(text: string): void;
}

export interface Invocation {
  args: string[];
  flags: { name?: string; json?: boolean; "trust-segment-owner"?: boolean; replace?: boolean; server?: string; "token-file"?: string } &
    CreateFlags &
    ConditionFlags &
    WatchFlags &
    ListFlags &
    TtlFlags &
    LockFlags;
  env: Env;
  io: Io;
}

export interface Command {
  /** The positional arguments, by name; "[NAME]" for an optional one (only last). */
  args: string[];
  summary: string;
  /** Takes the options that shape a new segment (it creates the store when missing). */
  creates?: boolean;
  /** With `creates`: whose geometry a store it creates has when none is given ("the dump's"). */
  createdLike?: string;
  /** The options of its own it takes (src/cli.ts, COMMAND_OPTIONS). */
  options?: string[];
  /** Takes the geometry options, to give an existing store a new one. */
  resizes?: boolean;
  run(inv: Invocation): number | Promise<number>;
}

/** The options of a write that may go to a server in place of the segment. */
const SERVER_OPTIONS = ["server", "token-file"];

export const COMMANDS: Record<string, Command> = {
  get: {
    args: ["KEY"],
    summary: "print the value of KEY (exit 1 when it is missing)",
    run: (inv) =>
      withStore(inv, (store) => {
        const [key = ""] = inv.args;
        const entry = store.getEntry(key);
        if (entry === undefined) return fail(inv, "NOT_FOUND", `Key '${shown(key)}' not found`);
        const { value, expiresAt } = entry;
        inv.io.out(inv.flags.json ? json(expiresAt === undefined ? { key, value } : { key, value, expires_at: unixSeconds(expiresAt) }) : value);
        return EXIT.OK;
      }),
  },
  set: {
    args: ["KEY", "VALUE"],
    summary:
      "insert or replace KEY (creates the store when missing); expiring after --ttl DURATION; only if KEY is at " +
      "revision N with --if-revision N, only if it is missing with --if-absent (exit 1 otherwise)",
    creates: true,
    options: ["ttl", "if-revision", "if-absent", ...SERVER_OPTIONS],
    run: (inv) => {
      const expected = expectedRevision(inv.flags);
      const ttl = ttlOf(inv.flags);
      const options = ttl === undefined ? undefined : { ttl };
      const [key = "", value = ""] = inv.args;
      const printed = (revision: number | undefined) => {
        const message = `Key '${shown(key)}' set successfully`;
        inv.io.out(inv.flags.json ? json({ success: true, message, revision }) : message);
        return EXIT.OK;
      };
      const server = serverFor(inv);
      if (server) {
        const body = { key, value, ...ttlSeconds(ttl) };
        return remotely(inv, send(server, "POST", "set", { body, headers: conditionHeaders(expected) }), (w) => printed(w.revision));
      }
      return withStore(
        inv,
        offeringServer(inv, (store) => printed(expected === undefined ? store.set(key, value, options) : store.setIf(key, value, expected, options))),
        true,
      );
    },
  },
  delete: {
    args: ["KEY"],
    summary: "remove KEY (exit 1 when it is missing); only if it is at revision N with --if-revision N",
    options: ["if-revision", ...SERVER_OPTIONS],
    run: (inv) => {
      const expected = expectedRevision(inv.flags);
      const [key = ""] = inv.args;
      const printed = () => {
        const message = `Key '${shown(key)}' deleted successfully`;
        inv.io.out(inv.flags.json ? json({ success: true, message }) : message);
        return EXIT.OK;
      };
      const server = serverFor(inv);
      if (server) return remotely(inv, send(server, "DELETE", keyPath("delete", key), { headers: conditionHeaders(expected) }), printed);
      return withStore(inv, offeringServer(inv, (store) => {
        if (!(expected === undefined ? store.delete(key) : store.deleteIf(key, expected))) {
          return fail(inv, "NOT_FOUND", `Key '${shown(key)}' not found`);
        }
        return printed();
      }));
    },
  },
  incr: {
    args: ["KEY", "[BY]"],
    summary:
      "add BY (default 1, may be negative) to the integer KEY holds, atomically, and print the new value " +
      "(a missing KEY counts as 0, and expires after --ttl DURATION when given; creates the store when missing)",
    creates: true,
    options: ["ttl", ...SERVER_OPTIONS],
    run: (inv) => {
      const [key = "", by = "1"] = inv.args;
      if (!/^-?\d{1,19}$/.test(by)) throw new ConfigError(`BY must be an integer, not ${JSON.stringify(by)}`);
      const ttl = ttlOf(inv.flags);
      // Written as digits: a JSON number beyond 2^53 would lose them in JSON.stringify's (and JSON.parse's) hands.
      const printed = (value: string) => {
        inv.io.out(inv.flags.json ? `{"key":${json(key)},"value":${value}}` : value);
        return EXIT.OK;
      };
      const server = serverFor(inv);
      if (server) {
        const body = { key, by, ...ttlSeconds(ttl) };
        return remotely(inv, send(server, "POST", "incr", { body }), (w) => printed(/"value":(-?\d+)/.exec(w.text)?.[1] ?? "?"));
      }
      return withStore(inv, offeringServer(inv, (store) => printed(String(store.incr(key, BigInt(by), { ttl })))), true);
    },
  },
  keys: {
    args: [],
    summary: "print the keys, one a line, in slot order: only those starting with P with --prefix P, at most N with --limit N",
    options: ["prefix", "limit"],
    run: (inv) => {
      const limit = limitOf(inv.flags);
      return withStore(inv, (store) => {
        const { items } = store.keysFrom(0, limit, inv.flags.prefix ?? "");
        if (inv.flags.json) inv.io.out(json(items));
        else for (const key of items) inv.io.out(shown(key));
        return EXIT.OK;
      });
    },
  },
  status: {
    args: [],
    summary: "print the version, the geometry and every entry",
    run: (inv) =>
      withStore(inv, (store) => {
        const status = store.status();
        if (inv.flags.json) {
          // Each entry as /status shows it: expires_at in Unix seconds, as its timestamp.
          inv.io.out(json({ ...status, entries: status.entries.map(statusEntry) }));
          return EXIT.OK;
        }
        inv.io.out(
          `${store.name}: version ${status.version}, ${status.entry_count} of ${status.max_entries} entries, ` +
            `keys up to ${status.key_max} bytes, values up to ${status.value_max} bytes, ` +
            `memory ${status.memory_used} of ${status.memory_bytes} bytes in use, eviction ${status.evict}`,
        );
        for (const { key, value, timestamp, expiresAt } of status.entries) {
          inv.io.out(`${new Date(timestamp * 1000).toISOString()}  ${json(key)} = ${json(value)}${expiring(expiresAt)}`);
        }
        return EXIT.OK;
      }),
  },
  check: {
    args: [],
    summary: "verify every invariant of the store (exit 1 naming the first broken one)",
    run: (inv) =>
      withStore(inv, (store) => {
        store.check();
        inv.io.out(inv.flags.json ? json({ ok: true }) : `${store.name} is consistent`);
        return EXIT.OK;
      }),
  },
  watch: {
    args: [],
    summary: "print each change, by any process, as it happens, until interrupted (--since N, --prefix P)",
    options: ["since", "prefix"],
    run: async (inv) => {
      const since = sinceOf(inv.flags);
      try {
        using store = KvStore.open(storeName(inv.flags, inv.env), {
          checkOwner: !trustsSegmentOwner(inv.flags, inv.env),
          lockTimeoutMs: lockTimeoutOf(inv.flags, inv.env),
        });
        await printChanges(store, { since, prefix: inv.flags.prefix, json: inv.flags.json === true }, inv.io.out);
        return EXIT.OK;
      } catch (error) {
        return failed(inv, error);
      }
    },
  },
  dump: {
    args: ["[FILE]"],
    summary: "write every entry, as one consistent state, as JSON lines to FILE (replaced whole) or stdout",
    run: (inv) =>
      withStore(inv, (store) => {
        const [file] = inv.args;
        const { text, header } = dumpText(store);
        if (file === undefined || file === "-") {
          inv.io.out(text.slice(0, -1)); // out() ends the line
          return EXIT.OK;
        }
        writeWhole(file, text);
        const message = `dumped ${header.entry_count} entries of ${store.name} (version ${header.store_version}) to ${file}`;
        inv.io.out(inv.flags.json ? json({ success: true, message, entries: header.entry_count, version: header.store_version }) : message);
        return EXIT.OK;
      }),
  },
  restore: {
    args: ["FILE"],
    summary:
      "load a dump into the store, creating it when missing (with the dump's geometry unless given); " +
      "--replace empties it first. A bad file changes nothing",
    creates: true,
    createdLike: "the dump's",
    options: ["replace"],
    run: (inv) =>
      guarded(inv, () => {
        const [file = ""] = inv.args;
        const dump = readDump(file);
        return withStore(inv, (store) => {
        const done = restore(store, dump, inv.flags.replace === true);
        const how = done.revisionsKept
          ? "revisions and timestamps as dumped"
          : `new revisions: the store was at version ${done.versionBefore}, not below the dump's first revision`;
        const deleted = inv.flags.replace ? `, after deleting ${done.deleted}` : "";
        const message = `restored ${done.written} entries into ${store.name}${deleted} (version ${done.version}; ${how})`;
        const result = { success: true, message, entries: done.written, deleted: done.deleted, version: done.version, revisions_kept: done.revisionsKept };
        inv.io.out(inv.flags.json ? json(result) : message);
        return EXIT.OK;
      }, dumpGeometry(dump));
      }),
  },
  resize: {
    args: [],
    summary:
      "give the store a new geometry, keeping every entry, revision and the version (--max-entries N, " +
      "--key-max BYTES, --value-max BYTES, --memory SIZE, --mode OCTAL, --evict POLICY; any not given stays); every process using it follows",
    resizes: true,
    run: (inv) =>
      withStore(inv, (store) => {
        const before = geometryOf(store);
        // Flags only: a KV_MAX_ENTRIES left in the environment must not resize a store by surprise.
        const options = createOptions(inv.flags, {}, trustsSegmentOwner(inv.flags, inv.env), store.memoryOption > 0);
        KvStore.resize(store.name, { ...options, lockTimeoutMs: lockTimeoutOf(inv.flags, inv.env) });
        const after = geometryOf(store);
        const policy = before.evict === after.evict ? "" : `; eviction ${before.evict} -> ${after.evict}`;
        const message =
          `${store.name} resized: ${describeGeometry(before)} -> ${describeGeometry(after)}${policy}; ` +
          `${store.count} entries kept, version ${store.version}`;
        inv.io.out(inv.flags.json ? json({ success: true, message, before, after }) : message);
        return EXIT.OK;
      }),
  },
  unlink: {
    args: [],
    summary: "remove the store's name (processes that have it open keep using it)",
    run: (inv) =>
      guarded(inv, () => {
        const name = storeName(inv.flags, inv.env);
        KvStore.unlink(name);
        inv.io.out(inv.flags.json ? json({ success: true, message: `${name} unlinked` }) : `${name} unlinked`);
        return EXIT.OK;
      }),
  },
};

/** --server (KV_SERVER): where to send a write; a creation option with it is a usage error. */
function serverFor(inv: Invocation): WriteServer | undefined {
  const server = writeServer(inv.flags, inv.env);
  const creation = (["max-entries", "key-max", "value-max", "memory", "mode", "evict"] as const).find((flag) => inv.flags[flag] !== undefined);
  if (server && creation) throw new ConfigError(`--${creation} shapes a store the CLI creates: a write sent with --server creates none`);
  if (!server && inv.flags["token-file"] !== undefined) throw new ConfigError("--token-file goes with --server (KV_SERVER)");
  return server;
}

/** A ttl in milliseconds as POST /set's and POST /incr's body field, in seconds; nothing without one. */
function ttlSeconds(ttl: number | undefined): { ttl?: number } {
  return ttl === undefined ? {} : { ttl: ttl / 1000 };
}

/** A local write whose refusal by a replica's segment names the way around it: --server. */
function offeringServer(inv: Invocation, write: (store: KvStore) => number): (store: KvStore) => number {
  return (store) => {
    try {
      return write(store);
    } catch (error) {
      if (!(error instanceof KvError && error.code === "READ_ONLY")) throw error;
      return fail(inv, error.code, `${error.message.replace(/^shmkv: /, "")}; or send it there with --server URL (KV_SERVER)`);
    }
  };
}

/** A write sent to a server: `printed` its answer; the server's refusal as a message and exit 1. */
async function remotely<T>(inv: Invocation, written: Promise<T>, printed: (answer: T) => number): Promise<number> {
  try {
    return printed(await written);
  } catch (error) {
    if (error instanceof RemoteError) return fail(inv, error.code, error.message);
    throw error;
  }
}

/**
 * Open the store named by --name or KV_SHM_NAME, run, close. `creates`: create it when missing, with
 * the geometry of the flags and variables, else of `creates` when it is an object, else the default.
 */
function withStore(inv: Invocation, run: (store: KvStore) => number, creates: boolean | OpenOptions = false): number {
  return guarded(inv, () => {
    const name = storeName(inv.flags, inv.env);
    const trusted = trustsSegmentOwner(inv.flags, inv.env);
    // The geometry flags and variables count only for a store this may create (resize reads its own).
    const given = creates ? createOptions(inv.flags, inv.env, trusted) : undefined;
    const fallback = typeof creates === "object" ? creates : {};
    const create = given
      ? {
          create: true,
          maxEntries: given.maxEntries ?? fallback.maxEntries,
          keyMax: given.keyMax ?? fallback.keyMax,
          valueMax: given.valueMax ?? fallback.valueMax,
          memoryBytes: given.memoryBytes ?? fallback.memoryBytes,
          mode: given.mode,
          evict: given.evict,
        }
      : {};
    using store = KvStore.open(name, { ...create, checkOwner: !trusted, lockTimeoutMs: lockTimeoutOf(inv.flags, inv.env) });
    const mismatch = given && !store.created && geometryMismatch(store, given);
    if (mismatch) inv.io.err(`shmkv: warning: ${mismatch}`);
    return run(store);
  });
}

function errnoCode(error: unknown): `E${string}` {
  const code = (error as NodeJS.ErrnoException).code;
  return code?.startsWith("E") ? (code as `E${string}`) : "EIO";
}

/** The geometry of the store a dump was taken of. */
function dumpGeometry({ header }: Dump): OpenOptions {
  return { maxEntries: header.max_entries, keyMax: header.key_max, valueMax: header.value_max, memoryBytes: header.memory_bytes };
}

/** A dump file ("-": stdin), parsed whole; a DumpError naming the line of a bad one. */
function readDump(file: string): Dump {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file === "-" ? 0 : file);
  } catch (error) {
    throw new KvError(errnoCode(error), `cannot read ${file}: ${(error as Error).message}`);
  }
  try {
    return parseDump(bytes);
  } catch (error) {
    if (error instanceof DumpError) throw new DumpError(`${file}: ${error.message}`);
    throw error;
  }
}

/** Replace `file` with `text` at once (a copy beside it, then a rename): a reader never sees half a dump. */
function writeWhole(file: string, text: string): void {
  const partial = `${file}.${randomUUID()}.partial`;
  try {
    writeFileSync(partial, text, { mode: 0o600 });
    renameSync(partial, file);
  } catch (error) {
    rmSync(partial, { force: true });
    throw new KvError(errnoCode(error), `cannot write ${file}: ${(error as Error).message}`);
  }
}

function geometryOf(store: KvStore) {
  return { max_entries: store.maxEntries, key_max: store.keyMax, value_max: store.valueMax, memory_bytes: store.memoryBytes, evict: store.evict };
}

function describeGeometry(g: ReturnType<typeof geometryOf>): string {
  return `${g.max_entries} entries, keys up to ${g.key_max} bytes, values up to ${g.value_max} bytes, memory ${g.memory_bytes} bytes`;
}

/** Run, turning the store's errors into a message and exit status 1. */
function guarded(inv: Invocation, run: () => number): number {
  try {
    return run();
  } catch (error) {
    return failed(inv, error);
  }
}

/** A store's error as a message and exit status 1; any other error is thrown on. */
function failed(inv: Invocation, error: unknown): number {
  if (error instanceof DumpError) return fail(inv, "INVALID_DUMP", `${error.message}; nothing was restored`);
  if (error instanceof PartialRestoreError) return fail(inv, "PARTIAL_RESTORE", error.message);
  if (!(error instanceof KvError)) throw error;
  if (error.code === "ENOENT") {
    return fail(inv, error.code, `no store named ${storeName(inv.flags, inv.env)} (shmkv set or shmkv serve creates it)`);
  }
  const detail = error.message.replace(/^shmkv: /, "");
  if (error.code !== "STORE_BUSY") return fail(inv, error.code, detail);
  const waited = `waited ${lockTimeoutOf(inv.flags, inv.env)} ms: --lock-timeout (KV_LOCK_TIMEOUT) waits longer`;
  return fail(inv, error.code, `${detail} (${waited})`);
}

function fail(inv: Invocation, code: string, detail: string): number {
  inv.io.err(inv.flags.json ? json({ detail, code }) : `shmkv: ${shown(detail)}`);
  return EXIT.FAILED;
}
