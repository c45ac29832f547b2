/**
 * shmkv's command line: `shmkv COMMAND [options] [arguments]`. Exit status 0; 1 when the key or the
 * store is not found or the operation failed; 2 for a usage error. The single binary (`make
 * compile`) runs it from src/shmkv.ts, which carries the C library inside it; run from source, it
 * loads build/ (or KV_LIB_PATH), and says to run `make libso` when the library is missing.
 */
import { COMMANDS, EXIT, type Command, type Io } from "./cli/commands.ts";
import { CONDITION_OPTIONS } from "./cli/conditions.ts";
import { EmbeddedLibraryError, useEmbeddedLibrary } from "./cli/embedded-lib.ts";
import { LIST_OPTIONS } from "./cli/list.ts";
import { DEFAULT_LOCK_TIMEOUT_MS, LOCK_OPTIONS, TTL_OPTIONS } from "./cli/durations.ts";
import { WATCH_OPTIONS } from "./cli/watch.ts";
import { ConfigError, CREATE_OPTIONS, DEFAULT_STORE_NAME, parseFlags, TRUST_OPTION, type Env } from "./config.ts";
import { KvError } from "./errors.ts";
import { DEFAULTS } from "./limits.ts";
import { runServer } from "./server.ts";
import { runReplicator } from "./replication/run.ts";

const COMMON_OPTIONS = { name: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean" }, ...TRUST_OPTION, ...LOCK_OPTIONS } as const;

/** The options only some commands take (each lists its own in Command.options). */
export const COMMAND_OPTIONS = {
  ...CONDITION_OPTIONS,
  ...WATCH_OPTIONS,
  ...LIST_OPTIONS,
  ...TTL_OPTIONS,
  replace: { type: "boolean" },
  server: { type: "string" },
  "token-file": { type: "string" },
} as const;

/** Each option's line in a command's --help. */
const OPTION_HELP: Record<string, string> = {
  "if-revision": "--if-revision N     only while KEY is at revision N (exit 1 otherwise)",
  "if-absent": "--if-absent         only while KEY is missing (exit 1 otherwise)",
  since: "--since N           start after revision N (default: from now)",
  prefix: "--prefix P          only the keys that start with P",
  limit: "--limit N           at most N keys",
  replace: "--replace           delete every entry of the store before loading the dump",
  ttl: "--ttl DURATION      the entry expires after DURATION: 250ms, 30s, 5m, 1.5h (a bare number: seconds)",
  server: "--server URL        send the write to this shmkv server (or KV_SERVER), as a replica's writes must go",
  "token-file": "--token-file FILE   with --server: the server's API token, read from FILE (or KV_API_TOKEN)",
  "max-entries": `--max-entries N     capacity of a store it creates (or KV_MAX_ENTRIES; default ${DEFAULTS.maxEntries})`,
  "key-max": `--key-max BYTES     longest key of a store it creates (or KV_KEY_MAX; default ${DEFAULTS.keyMax})`,
  "value-max": `--value-max BYTES   longest value of a store it creates (or KV_VALUE_MAX; default ${DEFAULTS.valueMax})`,
  memory: "--memory SIZE       bytes for the keys and values of a store it creates, e.g. 64M (or KV_MEMORY;\n" +
    "                      default: room for every entry at its largest)",
  mode: `--mode OCTAL        file mode of a store it creates, e.g. 0660 (or KV_SHM_MODE; default 0${DEFAULTS.mode.toString(8)})`,
  evict: "--evict POLICY      eviction policy of a store it creates, none or lru (or KV_EVICT; default none): when\n" +
    "                      full, none refuses a new entry, lru evicts the least recently used entries",
  name: `--name NAME         the store, "/name" (default: $KV_SHM_NAME, else ${DEFAULT_STORE_NAME})`,
  json: '--json              print results (and errors, as {"detail", "code"}) as JSON',
  "trust-segment-owner": "--trust-segment-owner  open the store even when another user owns it or others may write it\n" +
    "                      (or KV_TRUST_SEGMENT_OWNER=1; see docs/security.md)",
  "lock-timeout": `--lock-timeout DURATION  how long to wait for another process's hold of the store's lock, then
` +
    `                      fail (or KV_LOCK_TIMEOUT; default ${DEFAULT_LOCK_TIMEOUT_MS / 1000}s; 0: do not wait)`,
  help: "--help              this text",
};

/** The options `command` accepts: the common ones, the creation ones when it creates, its own. */
export function optionsOf(command: Command): Record<string, { type: "string" | "boolean" }> {
  const own = Object.entries(COMMAND_OPTIONS).filter(([flag]) => command.options?.includes(flag));
  return { ...(command.creates || command.resizes ? CREATE_OPTIONS : {}), ...Object.fromEntries(own), ...COMMON_OPTIONS };
}

/** `shmkv NAME --help`: its usage, what it does, and every option it takes. */
export function commandHelp(name: string, command: Command): string {
  const usage = ["Usage: shmkv", name, ...command.args, "[options]"].join(" ");
  const options = Object.keys(optionsOf(command)).map((flag) => {
    const line = OPTION_HELP[flag] ?? `--${flag}`;
    const geometry = ["max-entries", "key-max", "value-max", "memory", "mode", "evict"].includes(flag);
    if (geometry && command.resizes) return `  ${line.replace(/ of a store it creates[\s\S]*$/, " to give the store (default: its own)")}`;
    const like = command.createdLike && geometry;
    return `  ${like ? line.replace(/default \d+\)$/, `default: ${command.createdLike})`) : line}`;
  });
  return `${usage}\n${command.summary}\n\nOptions:\n${options.join("\n")}`;
}

const USAGE = `Usage: shmkv COMMAND [options] [arguments]

Commands:
  serve [options]      serve the store over HTTP (shmkv serve --help lists its options)
  replicate [options]  keep the store a replica of a namespace in Redis (shmkv replicate --help)
${Object.entries(COMMANDS)
  .map(([name, command]) => `  ${`${name} ${command.args.join(" ")}`.padEnd(20)} ${command.summary}`)
  .join("\n")}

Options:
  --name NAME          the store, "/name" (default: $KV_SHM_NAME, else ${DEFAULT_STORE_NAME})
  --json               print results (and errors, as {"detail", "code"}) as JSON
  --trust-segment-owner  open the store even when another user owns it or others may write it, which is
                       refused by default (or KV_TRUST_SEGMENT_OWNER=1; see docs/security.md)
  --lock-timeout DURATION  how long to wait for another process's hold of the store's lock, then fail
                       (or KV_LOCK_TIMEOUT; default ${DEFAULT_LOCK_TIMEOUT_MS / 1000}s; 0: do not wait)
  --help               help; with a command, that command's, with every option it takes
  set, incr and restore also take --max-entries N, --key-max BYTES, --value-max BYTES, --memory SIZE,
  --mode OCTAL and --evict none|lru (or KV_MAX_ENTRIES, KV_KEY_MAX, KV_VALUE_MAX, KV_MEMORY, KV_SHM_MODE,
  KV_EVICT), used when they create the store; an existing store keeps its own (a warning says so): resize
  takes the same flags (not the variables) to change it. set and incr take --ttl DURATION (30s, 5m, 250ms).

Exit status: 0; 1 when the key or the store is not found, or the operation failed; 2 for a usage error.`;

const consoleIo: Io = { out: (text) => console.log(text), err: (text) => console.error(text) };

/**
 * Run one command line. `embeddedLibrary`: the path of the C library a compiled binary carries
 * (src/shmkv.ts), extracted and loaded unless KV_LIB_PATH is set.
 */
export async function main(argv: string[], env: Env, io: Io = consoleIo, embeddedLibrary?: string): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    (name === undefined ? io.err : io.out)(USAGE);
    return name === undefined ? EXIT.USAGE : EXIT.OK;
  }
  const command = COMMANDS[name];
  if (name !== "serve" && name !== "replicate" && !command) {
    io.err(`shmkv: unknown command ${JSON.stringify(name)}\n\n${USAGE}`);
    return EXIT.USAGE;
  }
  try {
    if (command) return await run(name, command, rest, env, io, embeddedLibrary);
    return await withLibrary(rest, env, name === "serve" ? runServer : runReplicator, embeddedLibrary);
  } catch (error) {
    if (error instanceof ConfigError) {
      io.err(`shmkv: ${error.message}\n(shmkv ${name} --help tells how to use it)`);
      return EXIT.USAGE;
    }
    if (error instanceof EmbeddedLibraryError || (error instanceof KvError && error.code === "LIBRARY_MISSING")) {
      io.err(error.message.startsWith("shmkv: ") ? error.message : `shmkv: ${error.message}`);
      return EXIT.FAILED;
    }
    throw error;
  }
}

/** `serve` and `replicate`: long-running, each parses its own options. */
async function withLibrary(
  argv: string[],
  env: Env,
  start: (argv: string[], env: Env) => Promise<number>,
  embeddedLibrary: string | undefined,
): Promise<number> {
  if (embeddedLibrary && !argv.includes("--help")) useEmbeddedLibrary(embeddedLibrary, env);
  return start(argv, env);
}

function run(name: string, command: Command, argv: string[], env: Env, io: Io, embeddedLibrary: string | undefined): number | Promise<number> {
  const { values: flags, positionals: args } = parseFlags(negativesAsArguments(argv), { ...COMMON_OPTIONS, ...CREATE_OPTIONS, ...COMMAND_OPTIONS }, true);
  const accepted = optionsOf(command);
  const notTaken = Object.keys(flags).find((flag) => !(flag in accepted));
  if (notTaken) throw new ConfigError(`${name} takes no --${notTaken}`);
  if (flags.help) {
    io.out(commandHelp(name, command));
    return EXIT.OK;
  }
  const required = command.args.filter((arg) => !arg.startsWith("[")).length;
  if (args.length < required || args.length > command.args.length) {
    throw new ConfigError(`${name} takes ${command.args.join(" and ") || "no arguments"}, not ${JSON.stringify(args)}`);
  }
  if (embeddedLibrary) useEmbeddedLibrary(embeddedLibrary, env);
  return command.run({ args, flags, env, io });
}

/** argv with each negative number ("-5") taken as an argument (incr KEY -5), not as an option. */
function negativesAsArguments(argv: string[]): string[] {
  const negative = (arg: string) => /^-\d+$/.test(arg);
  if (argv.includes("--") || !argv.some(negative)) return argv;
  return [...argv.filter((arg) => !negative(arg)), "--", ...argv.filter(negative)];
}

if (import.meta.main) process.exit(await main(Bun.argv.slice(2), process.env));
