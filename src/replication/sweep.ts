/**
 * A replicating server's sweep of expired keys: in place of the local one (src/http/expiry.ts),
 * which leaves a replica's read-only segment alone, it ends in Redis the keys whose expiry passed
 * (the EXPIRE script, RedisWriter.expire); every host then applies each end from the stream. Every
 * replicating server of a namespace sweeps: the script is idempotent, and cheap when nothing is due.
 */
import { ApiError } from "../http/errors.ts";
import type { SweepOptions } from "../http/expiry.ts";
import type { RedisWriter } from "./writer.ts";

/**
 * Every `intervalMs`, end up to `batch` expired keys of the namespace; again at once while a pass
 * ended a whole batch (more are due), up to `maxPasses` a tick. One tick at a time: a tick still
 * waiting for Redis makes the next one a no-op. While Redis cannot be reached a tick does nothing
 * (the follower reports the outage); another failure is told to `onError`, once until it changes.
 */
export class RedisExpirySweep {
  readonly #writer: RedisWriter;
  readonly #batch: number;
  readonly #maxPasses: number;
  readonly #onError: ((message: string) => void) | undefined;
  readonly #timer: ReturnType<typeof setInterval>;
  #running = false;
  #lastError: string | undefined;

  constructor(writer: RedisWriter, options: SweepOptions = {}) {
    this.#writer = writer;
    this.#batch = options.batch ?? 256;
    this.#maxPasses = options.maxPasses ?? 16;
    this.#onError = options.onError;
    this.#timer = setInterval(() => void this.tick(), options.intervalMs ?? 100);
    this.#timer.unref();
  }

  /** One tick's passes: how many keys they ended (0 while another tick runs). */
  async tick(): Promise<number> {
    if (this.#running) return 0;
    this.#running = true;
    let ended = 0;
    try {
      for (let pass = 0; pass < this.#maxPasses; pass++) {
        const now = await this.#writer.expire(this.#batch);
        ended += now;
        if (now < this.#batch) break;
      }
      this.#lastError = undefined;
    } catch (error) {
      if (error instanceof ApiError && error.code === "REPLICA_UNAVAILABLE") return ended;
      const message = error instanceof Error ? error.message : String(error);
      if (message !== this.#lastError) this.#onError?.(message);
      this.#lastError = message;
    } finally {
      this.#running = false;
    }
    return ended;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
