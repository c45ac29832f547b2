/** The CLI's store commands: each opens the store, does one thing, prints, and returns an exit status. */
import { createOptions, storeName, trustsSegmentOwner, type CreateFlags, type Env } from "../config.ts";
import { KvError } from "../errors.ts";
import { KvStore } from "../store.ts";
import { expectedRevision, type ConditionFlags } from "./conditions.ts";
import { json, shown } from "./printable.ts";
import { printChanges, sinceOf, type WatchFlags } from "./watch.ts";

export const EXIT = { OK: 0, FAILED: 1, USAGE: 2 } as const;

export interface Io {
  out(text: string): void;
  err(text: string): void;
}

export interface Invocation {
  args: string[];
  flags: { name?: string; json?: boolean; "trust-segment-owner"?: boolean } & CreateFlags & ConditionFlags & WatchFlags;
  env: Env;
  io: Io;
}

export interface Command {
  /** The positional arguments, by name. */
  args: string[];
  summary: string;
  /** Takes the options that shape a new segment (it creates the store when missing). */
  creates?: boolean;
  /** The compare-and-set flags it takes (src/cli/conditions.ts). */
  conditions?: (keyof ConditionFlags)[];
  run(inv: Invocation): number | Promise<number>;
}

export const COMMANDS: Record<string, Command> = {
  get: {
    args: ["KEY"],
    summary: "print the value of KEY (exit 1 when it is missing)",
    run: (inv) =>
      withStore(inv, (store) => {
        const [key = ""] = inv.args;
        const value = store.get(key);
        if (value === undefined) return fail(inv, "NOT_FOUND", `Key '${shown(key)}' not found`);
        inv.io.out(inv.flags.json ? json({ key, value }) : value);
        return EXIT.OK;
      }),
  },
  set: {
    args: ["KEY", "VALUE"],
    summary:
      "insert or replace KEY (creates the store when missing); only if KEY is at revision N with --if-revision N, " +
      "only if it is missing with --if-absent (exit 1 otherwise)",
    creates: true,
    conditions: ["if-revision", "if-absent"],
    run: (inv) => {
      const expected = expectedRevision(inv.flags);
      return withStore(inv, (store) => {
        const [key = "", value = ""] = inv.args;
        const revision = expected === undefined ? store.set(key, value) : store.setIf(key, value, expected);
        const message = `Key '${shown(key)}' set successfully`;
        inv.io.out(inv.flags.json ? json({ success: true, message, revision }) : message);
        return EXIT.OK;
      }, true);
    },
  },
  delete: {
    args: ["KEY"],
    summary: "remove KEY (exit 1 when it is missing); only if it is at revision N with --if-revision N",
    conditions: ["if-revision"],
    run: (inv) => {
      const expected = expectedRevision(inv.flags);
      return withStore(inv, (store) => {
        const [key = ""] = inv.args;
        if (!(expected === undefined ? store.delete(key) : store.deleteIf(key, expected))) {
          return fail(inv, "NOT_FOUND", `Key '${shown(key)}' not found`);
        }
        const message = `Key '${shown(key)}' deleted successfully`;
        inv.io.out(inv.flags.json ? json({ success: true, message }) : message);
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
          inv.io.out(json(status));
          return EXIT.OK;
        }
        inv.io.out(
          `${store.name}: version ${status.version}, ${status.entry_count} of ${status.max_entries} entries, ` +
            `keys up to ${status.key_max} bytes, values up to ${status.value_max} bytes, ` +
            `memory ${status.memory_used} of ${status.memory_bytes} bytes in use`,
        );
        for (const { key, value, timestamp } of status.entries) {
          inv.io.out(`${new Date(timestamp * 1000).toISOString()}  ${json(key)} = ${json(value)}`);
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
    run: async (inv) => {
      const since = sinceOf(inv.flags);
      try {
        using store = KvStore.open(storeName(inv.flags, inv.env), { checkOwner: !trustsSegmentOwner(inv.flags, inv.env) });
        await printChanges(store, { since, prefix: inv.flags.prefix, json: inv.flags.json === true }, inv.io.out);
        return EXIT.OK;
      } catch (error) {
        return failed(inv, error);
      }
    },
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

/** Open the store named by --name or KV_SHM_NAME (creating it for `creates` commands), run, close. */
function withStore(inv: Invocation, run: (store: KvStore) => number, creates = false): number {
  return guarded(inv, () => {
    const name = storeName(inv.flags, inv.env);
    const trusted = trustsSegmentOwner(inv.flags, inv.env);
    const create = creates ? { create: true, ...createOptions(inv.flags, inv.env, trusted) } : {};
    using store = KvStore.open(name, { ...create, checkOwner: !trusted });
    return run(store);
  });
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
  if (!(error instanceof KvError)) throw error;
  if (error.code === "ENOENT") {
    return fail(inv, error.code, `no store named ${storeName(inv.flags, inv.env)} (shmkv set or shmkv serve creates it)`);
  }
  return fail(inv, error.code, error.message);
}

function fail(inv: Invocation, code: string, detail: string): number {
  inv.io.err(inv.flags.json ? json({ detail, code }) : `shmkv: ${shown(detail)}`);
  return EXIT.FAILED;
}
