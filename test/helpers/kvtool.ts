/** Run build/kvtool (the C client of the library) as another process. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { waitFor } from "./wait.ts";

export const BUILD = join(import.meta.dir, "..", "..", "build");

export interface Ran {
  exitCode: number | null;
  signalCode: string | null;
  stdout: string;
  stderr: string;
}

/** kvtool NAME ARGS..., synchronously. `fault`: die by SIGKILL at that fault point (fault build). */
export function kvtool(name: string, args: string[], fault?: number): Ran {
  const binary = join(BUILD, fault ? "kvtool_fault" : "kvtool");
  const env = fault ? { ...process.env, KV_FAULT_POINT: String(fault) } : process.env;
  return ranOf(Bun.spawnSync([binary, name, ...args], { env }));
}

/**
 * kvtool_fault running NAME ARGS..., stopped (SIGSTOP, state T) at fault point `point` with the
 * store's lock held, as a hung writer would be. The caller sends SIGCONT, or SIGKILL when it fails.
 */
export async function stoppedKvtool(name: string, args: string[], point: number): Promise<Bun.Subprocess> {
  const proc = Bun.spawn([join(BUILD, "kvtool_fault"), name, ...args], { env: { ...process.env, KV_FAULT_POINT: `${point}:stop` } });
  try {
    await waitFor(() => readFileSync(`/proc/${proc.pid}/stat`, "utf8").split(") ")[1]?.startsWith("T"), { what: "the writer to stop" });
  } catch (error) {
    proc.kill("SIGKILL");
    throw error;
  }
  return proc;
}

/**
 * Run `body` while kvtool_fault runs NAME ARGS..., stopped at fault point `point` with the store's
 * lock held (stoppedKvtool); then let the writer go on, whatever `body` did, and wait for it. What
 * `body` gave, and the writer's exit status.
 */
export async function whileStopped<T>(name: string, args: string[], point: number, body: () => T | Promise<T>): Promise<{ result: T; exitCode: number }> {
  const writer = await stoppedKvtool(name, args, point);
  let result: T;
  try {
    result = await body();
  } finally {
    writer.kill("SIGCONT");
  }
  return { result, exitCode: await writer.exited };
}

function ranOf(r: Bun.SyncSubprocess<"pipe", "pipe">): Ran {
  return {
    exitCode: r.exitCode,
    signalCode: r.signalCode ? String(r.signalCode) : null,
    stdout: r.stdout.toString(),
    stderr: r.stderr.toString(),
  };
}

/** kvtool NAME setin KEY: a C process sets KEY to `value`, any bytes (sent on its stdin). */
export function kvtoolSetBytes(name: string, key: string, value: Uint8Array): Ran {
  return ranOf(Bun.spawnSync([join(BUILD, "kvtool"), name, "setin", key], { stdin: value }));
}

/** kvtool NAME ARGS... in the background; resolves with its output when it exits. */
export async function kvtoolAsync(name: string, args: string[]): Promise<Ran> {
  const p = Bun.spawn([join(BUILD, "kvtool"), name, ...args], { stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  await p.exited;
  return { exitCode: p.exitCode, signalCode: p.signalCode ? String(p.signalCode) : null, stdout, stderr };
}

/** test/fixtures/SCRIPT ARGS... in a child bun process (the Bun twins of kvtool's commands). */
export async function bunFixture(script: string, args: string[], env: Record<string, string> = {}): Promise<Ran> {
  const p = Bun.spawn([process.execPath, join(import.meta.dir, "..", "fixtures", script), ...args], {
    env: { ...process.env, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  await p.exited;
  return { exitCode: p.exitCode, signalCode: p.signalCode ? String(p.signalCode) : null, stdout, stderr };
}

/** A value in kvtool's checksummed format: BODY "#" hex8(kv_hash(BODY)). */
export function checksummed(body: string, hash: (b: Uint8Array) => number): string {
  return `${body}#${hash(new TextEncoder().encode(body)).toString(16).padStart(8, "0")}`;
}

/** True when value is well-formed in kvtool's checksummed format. */
export function verifyChecksummed(value: string, hash: (b: Uint8Array) => number): boolean {
  const at = value.length - 9;
  return at >= 0 && value[at] === "#" && checksummed(value.slice(0, at), hash) === value;
}
