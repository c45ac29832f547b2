/**
 * "Hosts" for replication tests: each its own segment and server (in this process, port 0), all
 * replicating one namespace through the same Redis. A Replica is a host without its server: the
 * follower and the writer alone.
 */
import { RedisClient } from "bun";
import { DEFAULT_REPLICATE_MAXLEN, serverConfig } from "../../src/config.ts";
import { startReplication, type Replication } from "../../src/replication/index.ts";
import type { RedisWriter } from "../../src/replication/writer.ts";
import { startServer, type RunningServer } from "../../src/server.ts";
import { KvStore, type KvOptions } from "../../src/store.ts";
import { uniqueName, unlinkQuietly } from "./shm.ts";
import { SseClient } from "./sse.ts";
import { waitFor } from "./wait.ts";

export class Host implements AsyncDisposable {
  readonly log: string[] = [];
  readonly server: RunningServer;

  constructor(
    redisUrl: string,
    readonly namespace: string,
    readonly name = uniqueName(),
    flags: string[] = [],
  ) {
    const config = serverConfig(
      ["--port", "0", "--name", name, "--max-entries", "500", "--quiet", "--replicate", redisUrl, "--namespace", namespace, ...flags],
      {},
    );
    if (config === "help") throw new Error("unexpected help");
    const line = (text: string) => this.log.push(text);
    this.server = startServer(config, { info: line, error: line });
  }

  get url(): string {
    return this.server.url;
  }

  async set(key: string, value: string, headers: Record<string, string> = {}): Promise<Response> {
    return this.post("set", { key, value }, headers);
  }

  /** POST `body` as JSON to the route `path` ("set", "incr"). */
  async post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
    return fetch(`${this.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
    });
  }

  async health(): Promise<{ replication: { state: string; applied_revision: number; lag_ms: number; last_error: string | null } }> {
    return (await fetch(`${this.url}health`)).json() as never;
  }

  /** Once the segment holds revision `revision`. */
  async applied(revision: number): Promise<void> {
    await waitFor(async () => (await this.health()).replication.applied_revision === revision, {
      what: `${this.name} to apply revision ${revision}`,
    });
  }

  /** The segment itself, read directly: version and every entry (key, value, revision), by key. */
  segment(): { version: number; entries: { key: string; value: string; revision: number }[] } {
    using store = KvStore.open(this.name);
    const { version, entries } = store.status();
    const byKey = entries.map(({ key, value, revision }) => ({ key, value, revision })).sort((a, b) => (a.key < b.key ? -1 : 1));
    return { version, entries: byKey };
  }

  /** Stop the server, leaving its segment as it is (a host going down). */
  async stop(): Promise<void> {
    await this.server.stop();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.server.stop();
    unlinkQuietly(this.name);
  }
}

/**
 * A replica without a server: a follower keeping its own segment, and the writer, driven directly.
 * Nothing sweeps expired keys from Redis here but writes and writer.expire().
 */
export class Replica implements AsyncDisposable {
  readonly log: string[] = [];
  readonly replication: Replication;

  constructor(
    redisUrl: string,
    readonly namespace: string,
    readonly name = uniqueName(),
    create: KvOptions = { maxEntries: 500 },
  ) {
    const line = (text: string) => this.log.push(text);
    this.replication = startReplication({ url: redisUrl, namespace, maxlen: DEFAULT_REPLICATE_MAXLEN }, name, create, { onReload: line, onError: line });
  }

  get writer(): RedisWriter {
    return this.replication.writer;
  }

  /** Once the segment holds revision `revision`. */
  applied(revision: number): Promise<void> {
    return this.replication.follower.applied(revision, 10_000);
  }

  /** The segment, opened for reading as any local process would (close it). */
  open(): KvStore {
    return KvStore.open(this.name);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.replication.stop();
    unlinkQuietly(this.name);
  }
}

/** A /watch stream on each host, each answered; disposing of the list closes them. */
export async function watching(hosts: Host[]): Promise<SseClient[] & Disposable> {
  const watchers = await Promise.all(hosts.map((host) => SseClient.open(host.url, "/watch")));
  const list = Object.assign(watchers, {
    [Symbol.dispose]() {
      for (const w of watchers) w.close();
    },
  });
  try {
    await Promise.all(watchers.map((w) => w.answered()));
  } catch (error) {
    list[Symbol.dispose]();
    throw error;
  }
  return list;
}

/** The namespace's revision in Redis: its successful writes so far. */
export async function redisRevision(url: string, namespace: string): Promise<number> {
  const client = new RedisClient(url);
  try {
    return Number((await client.get(`{${namespace}}:rev`)) ?? 0);
  } finally {
    client.close();
  }
}

/** Once every host's segment holds the namespace's revision in Redis; that revision. */
export async function caughtUp(url: string, namespace: string, hosts: (Host | Replica)[]): Promise<number> {
  const revision = await redisRevision(url, namespace);
  for (const host of hosts) await host.applied(revision);
  return revision;
}

/** A namespace no other test uses. */
export function uniqueNamespace(): string {
  return `ns-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}
