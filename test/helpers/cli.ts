/**
 * The CLI run in this process: main() with the environment given (and nothing else of ours); and a
 * store of its own for each test to run it against.
 */
import { afterEach, beforeEach } from "bun:test";
import { main } from "../../src/cli.ts";
import type { KvStore } from "../../src/store.ts";
import { TempStore } from "./shm.ts";

export interface Run {
  code: number;
  out: string[];
  err: string[];
}

export async function cli(argv: string[], env: Record<string, string> = {}): Promise<Run> {
  const run: Run = { code: -1, out: [], err: [] };
  run.code = await main(argv, env, { out: (t) => run.out.push(t), err: (t) => run.err.push(t) });
  return run;
}

/** The current test's store: its name, the open store, and `env`, which points the CLI at it (KV_SHM_NAME). */
export interface StorePerTest {
  readonly name: string;
  readonly store: KvStore;
  readonly env: Record<string, string>;
}

/**
 * A TempStore (a unique name) made before each test of the calling file or describe, closed and
 * unlinked after it. Read it through the result inside a test only.
 */
export function storePerTest(): StorePerTest {
  let temp: TempStore | undefined;
  beforeEach(() => {
    temp = new TempStore();
  });
  afterEach(() => {
    temp?.[Symbol.dispose]();
    temp = undefined;
  });
  const current = (): TempStore => {
    if (!temp) throw new Error("storePerTest: used outside a test");
    return temp;
  };
  return {
    get name() {
      return current().name;
    },
    get store() {
      return current().store;
    },
    get env() {
      return { KV_SHM_NAME: current().name };
    },
  };
}
