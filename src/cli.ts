/**
 * shmkv's command line: `shmkv COMMAND [options] [arguments]`. Exit status 0; 1 when the key or the
 * store is not found or the operation failed; 2 for a usage error. Also the entry point of the
 * single binary (`make compile`), which carries the C library inside it.
 */
import embeddedLibrary from "../build/libshared_memory_kv.so" with { type: "file" };
import { COMMANDS, EXIT, type Command, type Io } from "./cli/commands.ts";
import { CONDITION_OPTIONS } from "./cli/conditions.ts";
import { EmbeddedLibraryError, useEmbeddedLibrary } from "./cli/embedded-lib.ts";
import { WATCH_OPTIONS } from "./cli/watch.ts";
import { ConfigError, CREATE_OPTIONS, DEFAULT_STORE_NAME, parseFlags, TRUST_OPTION, type Env } from "./config.ts";
import { runServer } from "./server.ts";
import { runReplicator } from "./replication/run.ts";

const COMMON_OPTIONS = { name: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean" }, ...TRUST_OPTION } as const;

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
  --help               help; with a command, that command's
  set also takes --max-entries N, --key-max BYTES, --value-max BYTES, --memory SIZE and --mode OCTAL (or
  KV_MAX_ENTRIES, KV_KEY_MAX, KV_VALUE_MAX, KV_MEMORY, KV_SHM_MODE), used when it creates the store.

Exit status: 0; 1 when the key or the store is not found, or the operation failed; 2 for a usage error.`;

const consoleIo: Io = { out: (text) => console.log(text), err: (text) => console.error(text) };

export async function main(argv: string[], env: Env, io: Io = consoleIo): Promise<number> {
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
    if (command) return await run(name, command, rest, env, io);
    return await withLibrary(rest, env, name === "serve" ? runServer : runReplicator);
  } catch (error) {
    if (error instanceof ConfigError) {
      io.err(`shmkv: ${error.message}\n(shmkv ${name} --help tells how to use it)`);
      return EXIT.USAGE;
    }
    if (error instanceof EmbeddedLibraryError) {
      io.err(`shmkv: ${error.message}`);
      return EXIT.FAILED;
    }
    throw error;
  }
}

/** `serve` and `replicate`: long-running, each parses its own options. */
async function withLibrary(argv: string[], env: Env, start: (argv: string[], env: Env) => Promise<number>): Promise<number> {
  if (!argv.includes("--help")) useEmbeddedLibrary(embeddedLibrary, env);
  return start(argv, env);
}

function run(name: string, command: Command, argv: string[], env: Env, io: Io): number | Promise<number> {
  const options = command.creates ? { ...COMMON_OPTIONS, ...CREATE_OPTIONS } : COMMON_OPTIONS;
  const { values: flags, positionals: args } = parseFlags(argv, { ...options, ...CONDITION_OPTIONS, ...WATCH_OPTIONS }, true);
  const taken = (flag: string) => command.conditions?.some((condition) => condition === flag);
  const notTaken = Object.keys(CONDITION_OPTIONS).find((flag) => flag in flags && !taken(flag));
  if (notTaken) throw new ConfigError(`${name} takes no --${notTaken}`);
  const notWatching = command === COMMANDS.watch ? undefined : Object.keys(WATCH_OPTIONS).find((flag) => flag in flags);
  if (notWatching) throw new ConfigError(`${name} takes no --${notWatching}`);
  const usage = `Usage: shmkv ${name} ${command.args.join(" ")} [--name NAME] [--json]`.replace("  ", " ");
  if (flags.help) {
    io.out(`${usage}\n${command.summary}`);
    return EXIT.OK;
  }
  if (args.length !== command.args.length) {
    throw new ConfigError(`${name} takes ${command.args.join(" and ") || "no arguments"}, not ${JSON.stringify(args)}`);
  }
  useEmbeddedLibrary(embeddedLibrary, env);
  return command.run({ args, flags, env, io });
}

if (import.meta.main) process.exit(await main(Bun.argv.slice(2), process.env));
