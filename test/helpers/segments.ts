/** Segments a store cannot open, for testing how the server copes. */
import { writeFileSync } from "node:fs";
import { uniqueName, unlinkQuietly } from "./shm.ts";

/** A segment under a unique name that holds garbage: opening it fails with INCOMPATIBLE. */
export class GarbageSegment implements Disposable {
  readonly name = uniqueName();

  constructor() {
    writeFileSync(`/dev/shm${this.name}`, "not a shmkv store ".repeat(64));
  }

  /** Remove it (idempotent), e.g. so that a retrying opener can create a real store there. */
  remove(): void {
    unlinkQuietly(this.name);
  }

  [Symbol.dispose](): void {
    this.remove();
  }
}
