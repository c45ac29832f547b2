/**
 * Replication across hosts through Redis (docs/replication.md): a follower that keeps the local
 * segment a replica of a namespace, and a writer that writes through Redis. `serve --replicate`
 * uses both; `shmkv replicate` runs the follower alone.
 */
import { RedisClient } from "bun";
import type { KvOptions } from "../store.ts";
import { Follower } from "./follower.ts";
import { RedisWriter } from "./writer.ts";

export interface ReplicationConfig {
  /** redis://HOST:PORT[/DB] (rediss:// and a password in the URL work as Bun's client takes them). */
  url: string;
  namespace: string;
  /** About how many changes the stream keeps (XADD MAXLEN ~). */
  maxlen: number;
}

export interface Replication {
  writer: RedisWriter;
  follower: Follower;
  /** Stop following, close the segment and the connections. */
  stop(): Promise<void>;
}

export interface ReplicationEvents {
  onReload?: (reason: string) => void;
  onError?: (message: string) => void;
}

/** A connection that fails at once while Redis is down (no queue) and reconnects by itself. */
function client(url: string): RedisClient {
  return new RedisClient(url, { enableOfflineQueue: false, autoReconnect: true, maxRetries: 0xffff_ffff, connectionTimeout: 2000 });
}

export function startReplication(config: ReplicationConfig, name: string, create: KvOptions, events: ReplicationEvents = {}): Replication {
  const redis = client(config.url);
  const blocking = client(config.url);
  const follower = new Follower({ namespace: config.namespace, name, create, redis, blocking, ...events });
  return {
    writer: new RedisWriter(redis, follower, config.maxlen),
    follower,
    async stop() {
      redis.close(); // first: a follower waiting to connect to a Redis that is gone gives up at once
      await follower.stop();
    },
  };
}
