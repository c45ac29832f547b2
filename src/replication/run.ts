/**
 * `shmkv replicate`: keep the local segment a replica of a namespace in Redis, with no HTTP server,
 * for hosts whose processes only read it (from C, Bun or the CLI). Runs until SIGINT or SIGTERM.
 */
import { ConfigError, CREATE_OPTIONS, createOptions, parseFlags, REPLICATE_OPTIONS, replicationConfig, storeName, TRUST_OPTION, trustsSegmentOwner, type Env } from "../config.ts";
import { startReplication } from "./index.ts";

export const REPLICATE_HELP = `Usage: shmkv replicate --replicate redis://HOST:PORT[/DB] [options]
Keep the segment a read-only replica of a namespace in Redis, without serving HTTP (docs/replication.md).

Options (each overrides its environment variable):
  --replicate URL      KV_REPLICATE   the Redis to follow (required)
  --namespace NS       KV_NAMESPACE   the namespace (default: the segment name without its /)
  --name NAME          KV_SHM_NAME    the segment; --max-entries, --key-max, --value-max and --mode
                                      (KV_MAX_ENTRIES, ...) shape it when it is created
  --trust-segment-owner  KV_TRUST_SEGMENT_OWNER=1  allow a --mode that lets others write the segment
  --help               this text`;

// No --replicate-maxlen: the servers that write trim the stream.
const { replicate, namespace } = REPLICATE_OPTIONS;
const OPTIONS = { ...CREATE_OPTIONS, ...TRUST_OPTION, replicate, namespace, help: { type: "boolean" } } as const;

/** The exit status: 0 after a signal, 2 for bad configuration. */
export async function runReplicator(argv: string[], env: Env, log = (line: string) => console.log(`${new Date().toISOString()} ${line}`)): Promise<number> {
  const flags = parseFlags(argv, OPTIONS, false).values;
  if (flags.help) {
    console.log(REPLICATE_HELP);
    return 0;
  }
  const name = storeName(flags, env);
  const config = replicationConfig(flags, env, name);
  if (!config) throw new ConfigError("replicate needs --replicate redis://HOST:PORT[/DB] (or KV_REPLICATE)");
  const replication = startReplication(config, name, createOptions(flags, env, trustsSegmentOwner(flags, env)), {
    onReload: (reason) => log(`replication: ${reason}`),
    onError: (message) => log(`replication: ${message} (retrying)`),
  });
  log(`replicating namespace ${config.namespace} into ${name}`);
  const signal = await new Promise<string>((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
  await replication.stop();
  log(`${signal}: stopped; the segment is closed, not unlinked`);
  return 0;
}
