/** A server (or any command that prints "listening on URL") run as a child process. */
import { waitFor, type WaitOptions } from "./wait.ts";

import { dirname, join } from "node:path";

export const ROOT = new URL("../..", import.meta.url).pathname;
export const BUN = process.execPath;
/**
 * PATH with a `bun` on it, as for a user who has bun installed: `bun run` scripts call `bun`. The
 * pinned one from `make deps` (whose binary is named bun.exe) or the one running this test.
 */
export const PATH_WITH_BUN = [join(ROOT, ".tools/node_modules/.bin"), dirname(BUN), process.env.PATH].join(":");

export class ServerProcess implements AsyncDisposable {
  readonly proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
  #stdout = "";
  #stderr = "";
  readonly #drained: Promise<void>;

  constructor(cmd: string[], options: { env?: Record<string, string | undefined>; cwd?: string } = {}) {
    this.proc = Bun.spawn(cmd, {
      cwd: options.cwd ?? ROOT,
      env: { ...process.env, PATH: PATH_WITH_BUN, ...options.env },
      detached: true, // its own process group: disposal can end `bun run` and the server it started
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    this.#drained = Promise.all([
      this.#collect(this.proc.stdout, (t) => (this.#stdout += t)),
      this.#collect(this.proc.stderr, (t) => (this.#stderr += t)),
    ]).then(() => undefined);
  }

  get stdout(): string {
    return this.#stdout;
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** The URL from its "listening on URL" line, once printed. */
  async url(): Promise<string> {
    return waitFor(
      () => {
        if (this.proc.exitCode !== null) throw new Error(`exited ${this.proc.exitCode} before listening:\n${this.#stdout}${this.#stderr}`);
        return /listening on (http:\/\/\S+)/.exec(this.#stdout)?.[1];
      },
      { what: "the server to listen" },
    );
  }

  /** Wait until its output holds `pattern`. */
  async printed(pattern: RegExp, options: WaitOptions = {}): Promise<void> {
    await waitFor(() => pattern.test(this.#stdout + this.#stderr), { what: `output matching ${pattern}`, ...options });
  }

  /** Send `signal`, and resolve with the exit code once it exited and its output is read. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number> {
    this.proc.kill(signal);
    return this.exited();
  }

  async exited(): Promise<number> {
    const code = await this.proc.exited;
    await this.#drained;
    return code;
  }

  /** Kill its whole process group (a wrapper such as `bun run` and what it started). */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      process.kill(-this.proc.pid, "SIGKILL");
    } catch {
      // the group is gone already
    }
    await this.exited();
  }

  async #collect(stream: ReadableStream<Uint8Array>, add: (text: string) => void): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) add(decoder.decode(chunk, { stream: true }));
  }
}
