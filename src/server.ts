/**
 * The HTTP server's life cycle: open (or create) the store, listen, log, reclaim expired entries a
 * little at a time (src/http/expiry.ts; in Redis with --replicate, src/replication/sweep.ts), and on SIGINT or SIGTERM stop accepting, finish the requests in flight, close the store (never unlink it) and exit 0.
 * `bun run server [options]` (src/server-main.ts, which first checks the packages are installed),
 * `bun src/server.ts [options]` and `shmkv serve [options]` all run `runServer`.
 */
import { ConfigError, DEFAULT_IDLE_TIMEOUT_SECONDS, SERVER_HELP, serverConfig, type Env, type ServerConfig } from "./config.ts";
import { createApp, GET_KEY_ROUTE } from "./http/app.ts";
import { exposureWarning } from "./http/auth.ts";
import { ExpirySweep } from "./http/expiry.ts";
import { hostCheckNotice, withWholeUrl } from "./http/hosts.ts";
import { withRequestLog, type Handler } from "./http/request-log.ts";
import { geometryMismatch } from "./geometry.ts";
import { StoreSlot } from "./http/store-slot.ts";
import { watchRoute } from "./http/watch.ts";
import { KvStore } from "./store.ts";
import { startReplication, type Replication, type ReplicationConfig } from "./replication/index.ts";
import { RedisExpirySweep } from "./replication/sweep.ts";

export interface Logger {
  info(line: string): void;
  error(line: string): void;
}

const stamp = (line: string) => `${new Date().toISOString()} ${line}`;
const consoleLogger: Logger = {
  info: (line) => console.log(stamp(line)),
  error: (line) => console.error(stamp(line)),
};

export interface RunningServer {
  /** Where it listens, e.g. "http://127.0.0.1:8000/" (the port is the real one when 0 was asked). */
  readonly url: string;
  /** Requests being answered now. */
  readonly inFlight: number;
  /** Stop accepting, wait for the requests in flight, then close the store. */
  stop(): Promise<void>;
  /** Like stop, but cut the requests in flight. */
  abort(): Promise<void>;
}

/**
 * Bun's own body limit, off: Bun would refuse a larger body with an empty 413. The app refuses every
 * body over its limit itself, with JSON: unread when it declares its length, as it is read when not.
 */
const NO_BUN_BODY_LIMIT = Number.MAX_SAFE_INTEGER;

function describe(store: KvStore): string {
  return (
    `${store.name}: ${store.maxEntries} entries, keys up to ${store.keyMax} bytes, values up to ${store.valueMax} bytes, ` +
    `memory ${store.memoryBytes} bytes, eviction ${store.evict}`
  );
}

export function startServer(config: ServerConfig, log: Logger = consoleLogger): RunningServer {
  // Lock timeout 0: the event loop never waits for a writer's lock (see src/http/busy.ts).
  const checkOwner = !config.trustSegmentOwner;
  const slot = StoreSlot.opening(() => KvStore.open(config.name, { create: true, ...config.create, checkOwner, lockTimeoutMs: 0 }), {
    onOpen: (store) => {
      log.info(`${store.created ? "created" : "opened"} segment ${describe(store)}`);
      const mismatch = !store.created && geometryMismatch(store, config.create);
      if (mismatch) log.error(`warning: ${mismatch}`);
    },
    onFailure: (reason) => log.error(`cannot open ${config.name}: ${reason} (answering 503; retrying every second)`),
    onReplaced: (reason) => log.error(`${reason}: closing it and opening ${config.name} again`),
  });
  const hosts = { listenHost: config.host, allowedHosts: config.allowedHosts };
  const replication = config.replicate && replicate(config.replicate, config, slot, log);
  const warning = exposureWarning(config.host, config.token);
  if (warning) log.error(warning);
  const notice = hostCheckNotice({ ...hosts, token: config.token });
  if (notice) log.info(notice);
  const app = createApp(slot, {
    maxBodyBytes: config.maxBodyBytes,
    token: config.token,
    hosts,
    onInternalError: (error) => log.error(`internal error: ${error instanceof Error ? error.stack : String(error)}`),
    replication: replication?.writer,
  });
  const served = (handler: Handler): Handler => {
    const logged = config.logRequests ? withRequestLog(handler, log.info) : handler;
    // A request without a whole URL (no Host, or a malformed one) gets one before anything reads it.
    return (request) => logged(withWholeUrl(request));
  };
  const handle = served((request) => app.handle(request));
  // GET /get/{key} is routed by Bun and answered past Elysia (see the app's getKey); HEAD by the app.
  const getKey = served(app.getKey);
  let server: Bun.Server<undefined>;
  try {
    server = Bun.serve({
      hostname: config.host,
      port: config.port,
      development: false,
      // Say so when the port is taken (Bun's production mode would otherwise share it silently).
      reusePort: false,
      maxRequestBodySize: NO_BUN_BODY_LIMIT,
      // Seconds a connection may stay idle, or take over a request's body (Bun closes a connection
      // still sending its headers after about 10 s, whatever this says).
      idleTimeout: config.idleTimeoutSeconds ?? DEFAULT_IDLE_TIMEOUT_SECONDS,
      routes: { ...watchRoute(handle), [GET_KEY_ROUTE]: { GET: getKey, HEAD: handle } },
      fetch: handle,
    });
  } catch (error) {
    void replication?.stop();
    slot.discard(); // a segment this start created goes with it; one it found stays
    throw error;
  }
  const url = server.url.href;
  log.info(`listening on ${url} (API documentation: ${url}swagger)`);
  const sweeping = { onError: (message: string) => log.error(`expiry sweep: ${message}`) };
  // A replica's expired keys end in Redis, whence every host applies their ends.
  const sweep = replication ? new RedisExpirySweep(replication.writer, sweeping) : new ExpirySweep(() => slot.current, sweeping);
  const finish = async (cut: boolean) => {
    sweep.stop();
    app.close();
    await server.stop(cut);
    await replication?.stop();
    slot.close();
  };
  return {
    url,
    get inFlight() {
      return server.pendingRequests;
    },
    stop: () => finish(false),
    abort: () => finish(true),
  };
}

/** Follow config.replicate's namespace into the segment; writes then go through Redis. */
function replicate(replication: ReplicationConfig, config: ServerConfig, slot: StoreSlot, log: Logger): Replication {
  log.info(`replicating namespace ${replication.namespace} through ${redactedUrl(replication.url)}`);
  return startReplication(replication, config.name, config.create, {
    onReload: (reason) => {
      log.info(`replication: ${reason}`);
      slot.recheck(); // serve the new segment before any write waiting for it answers
    },
    onError: (message) => log.error(`replication: ${message} (reads go on locally; writes answer 503 meanwhile)`),
  });
}

/** The URL without its password, for the log. */
function redactedUrl(url: string): string {
  return url.replace(/^(rediss?:\/\/)[^@/]*@/, "$1***@");
}

/** Run until SIGINT or SIGTERM; the exit status: 0, 1 (cannot listen) or 2 (bad configuration). */
export async function runServer(argv: string[], env: Env, log: Logger = consoleLogger): Promise<number> {
  let config: ServerConfig | "help";
  try {
    config = serverConfig(argv, env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`shmkv: ${error.message}\n(--help lists the options)`);
    return 2;
  }
  if (config === "help") {
    console.log(`Serve the store over HTTP.\n\n${SERVER_HELP}`);
    return 0;
  }
  let running: RunningServer;
  try {
    running = startServer(config, log);
  } catch (error) {
    log.error(`cannot listen on ${config.host}:${config.port}: ${(error as Error).message}`);
    return 1;
  }
  const signal = await new Promise<string>((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
  log.info(`${signal}: no new connections; finishing ${running.inFlight} request(s) in flight (${signal} again cuts them)`);
  process.once("SIGINT", () => void running.abort());
  process.once("SIGTERM", () => void running.abort());
  await running.stop();
  log.info("stopped; the store is closed, not unlinked");
  return 0;
}

if (import.meta.main) process.exit(await runServer(Bun.argv.slice(2), process.env));
