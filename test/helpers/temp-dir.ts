/** A directory of its own for a test, removed with everything in it when disposed. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export class TempDir implements Disposable {
  readonly path = mkdtempSync(join(tmpdir(), "shmkv-test-"));

  [Symbol.dispose](): void {
    rmSync(this.path, { recursive: true, force: true });
  }
}
