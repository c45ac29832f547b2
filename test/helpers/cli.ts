/** The CLI run in this process: main() with the environment given (and nothing else of ours). */
import { main } from "../../src/cli.ts";

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
