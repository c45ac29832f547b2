/**
 * A real redis-server (Debian's, installed by `make test` when missing) on a free loopback port, with
 * its own data directory. It can be killed (SIGKILL) and started again on the same port and data,
 * as a Redis that crashed and came back. Disposing it kills it and removes its directory.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "./wait.ts";

export interface RedisOptions {
  /** Log every write to the append-only file, fsynced before the answer (default false: no persistence). */
  appendonly?: boolean;
  /** More `--flag value` pairs for redis-server. */
  args?: string[];
}

/** A loopback port nobody listens on right now. */
function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const { port } = probe;
  probe.stop(true);
  return port;
}

export class RedisServer implements AsyncDisposable {
  readonly dir = mkdtempSync(join(tmpdir(), "shmkv-redis-"));
  port = 0;
  #proc: Bun.Subprocess<"ignore", "pipe", "pipe"> | undefined;
  #output = "";

  private constructor(private readonly options: RedisOptions) {}

  static async start(options: RedisOptions = {}): Promise<RedisServer> {
    const redis = new RedisServer(options);
    // Another process may take the free port before redis-server binds it: then try another.
    for (let attempt = 0; ; attempt++) {
      redis.port = freePort();
      try {
        await redis.restart();
        return redis;
      } catch (error) {
        if (attempt >= 5 || !redis.#output.includes("in use")) throw error;
      }
    }
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Start it (again) on its port and data directory; resolves once it accepts connections. */
  async restart(): Promise<void> {
    const { appendonly = false, args = [] } = this.options;
    this.#output = "";
    const proc = Bun.spawn(
      [
        "redis-server",
        ...["--port", String(this.port), "--bind", "127.0.0.1", "--dir", this.dir, "--save", ""],
        ...["--appendonly", appendonly ? "yes" : "no", "--appendfsync", "always", ...args],
      ],
      { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
    );
    this.#proc = proc;
    // Should the test process end without disposing of it (a crash), it must not outlive it.
    process.once("exit", () => proc.kill("SIGKILL"));
    void this.#collect(proc.stdout);
    void this.#collect(proc.stderr);
    await waitFor(
      () => {
        if (proc.exitCode !== null) throw new Error(`redis-server exited ${proc.exitCode}:\n${this.#output}`);
        return this.#output.includes("Ready to accept connections");
      },
      { what: "redis-server to accept connections" },
    );
  }

  /** Kill it at once (SIGKILL), as a crash would; resolves once it is gone. */
  async kill(): Promise<void> {
    this.#proc?.kill("SIGKILL");
    await this.#proc?.exited;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  async #collect(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) this.#output += decoder.decode(chunk, { stream: true });
  }
}
