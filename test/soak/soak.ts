/**
 * The soak: the server under concurrent HTTP reads and writes, while writer processes in C and in
 * Bun are SIGKILLed at random moments (and C writers made to die inside the lock at a chosen fault
 * point) and restarted. A checker then verifies what the run promises, and prints a summary:
 * no 5xx, no torn value, version = acknowledged writes, kv_check sound, lock recoveries, and the
 * server's RSS at the end within 1.2x its RSS after warm-up.
 *
 *   bun test/soak/soak.ts [--seconds N]     (make soak; SOAK_SECONDS, default 120)
 *
 * How writes are counted when a writer is killed: each writer incarnation owns a key it sets to
 * "KEY-1", "KEY-2", ...; after the kill the number left in the store is exactly how many of its
 * writes were applied (a write cut by the kill is rolled back or kept whole, never half).
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { kvHash } from "../../src/layout.ts";
import { KvStore } from "../../src/store.ts";
import { BUILD, checksummed, verifyChecksummed } from "../helpers/kvtool.ts";
import { BUN, ServerProcess } from "../helpers/server-process.ts";

export interface SoakReport {
  seconds: number;
  statuses: Record<string, number>;
  readsChecked: number;
  torn: string[];
  acknowledged: Record<string, number>;
  version: number;
  check: string;
  lockRecoveries: number;
  writersKilled: number;
  diedInLock: number;
  rss: { warm: number; end: number };
  serverExit: number;
  failures: string[];
}

const HTTP_KEYS = 32;
const CONCURRENCY = 16;
const checked = (body: string) => checksummed(body, kvHash);
const random = (n: number) => Math.floor(Math.random() * n);
const rssKiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(require("node:fs").readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);

class Writer {
  #proc: Bun.Subprocess | undefined;
  #incarnation = 0;
  constructor(readonly kind: "c" | "bun", readonly id: number, readonly name: string) {}

  get key(): string {
    return `${this.kind}${this.id}-${this.#incarnation}`;
  }

  start(): void {
    this.#incarnation++;
    const cmd = this.kind === "c"
      ? [join(BUILD, "kvtool"), this.name, "counter", this.key]
      : [BUN, join(import.meta.dir, "counter.ts"), this.name, this.key];
    this.#proc = Bun.spawn(cmd, { stdout: "ignore", stderr: "inherit" });
  }

  /** SIGKILL it; resolves once it is gone. */
  async kill(): Promise<void> {
    this.#proc?.kill("SIGKILL");
    await this.#proc?.exited;
  }
}

/** Writes applied by a killed incarnation, read from its key; the key is then deleted. */
function settle(store: KvStore, key: string, tally: { own: number }): number {
  const value = store.get(key);
  if (value === undefined) return 0;
  if (!verifyChecksummed(value, kvHash)) throw new Error(`torn counter value ${JSON.stringify(value)}`);
  store.delete(key);
  tally.own++;
  return Number(value.slice(key.length + 1, -9));
}

export async function soak(seconds: number, log: (line: string) => void = () => {}): Promise<SoakReport> {
  const name = `/shmkv-soak-${process.pid}-${random(1e9)}`;
  const server = new ServerProcess([BUN, "src/server.ts", "--port", "0", "--name", name, "--max-entries", "64", "--quiet"]);
  const report: SoakReport = {
    seconds, statuses: {}, readsChecked: 0, torn: [], acknowledged: { http: 0, "C writers": 0, "Bun writers": 0, "fault writers": 0, "the checker": 0 },
    version: 0, check: "", lockRecoveries: 0, writersKilled: 0, diedInLock: 0, rss: { warm: 0, end: 0 }, serverExit: -1, failures: [],
  };
  try {
    const url = await server.url();
    const store = KvStore.open(name);
    const own = { own: 0 };
    const deadline = performance.now() + seconds * 1000;
    const running = () => performance.now() < deadline;
    const verify = (value: string) => {
      report.readsChecked++;
      if (!verifyChecksummed(value, kvHash)) report.torn.push(value);
    };

    const httpWorker = async () => {
      while (running()) {
        const key = `k${random(HTTP_KEYS)}`;
        const dice = random(100);
        const res = dice < 50
          ? await fetch(`${url}get/${key}`)
          : dice < 85
            ? await fetch(`${url}set`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ key, value: checked(`${key}-${random(1e9)}-${"x".repeat(random(100))}`) }) })
            : await fetch(`${url}delete/${key}`, { method: "DELETE" });
        report.statuses[res.status] = (report.statuses[res.status] ?? 0) + 1;
        const body = (await res.json()) as { value?: string };
        if (res.status === 200 && dice < 50) verify(body.value!);
        else if (res.status === 200) report.acknowledged.http!++;
      }
    };

    const writers = [0, 1].flatMap((id) => [new Writer("c", id, name), new Writer("bun", id, name)]);
    writers.forEach((w) => w.start());
    const killer = async () => {
      while (running()) {
        await Bun.sleep(50 + random(250)); // pacing the faults, not waiting for anything
        const w = writers[random(writers.length)]!;
        const key = w.key;
        await w.kill();
        report.writersKilled++;
        report.acknowledged[w.kind === "c" ? "C writers" : "Bun writers"]! += settle(store, key, own);
        w.start();
      }
    };
    const faulter = async () => {
      for (let n = 0; running(); n++) {
        await Bun.sleep(100 + random(200));
        const key = `f${n}`;
        const died = Bun.spawnSync([join(BUILD, "kvtool_fault"), name, "set", key, checked(key)], { env: { ...process.env, KV_FAULT_POINT: `${1 + random(8)}` } });
        if (died.signalCode === "SIGKILL") report.diedInLock++;
        report.acknowledged["fault writers"]! += store.get(key) === undefined ? 0 : (store.delete(key), own.own++, 1);
      }
    };
    const reader = async () => {
      while (running()) {
        for (const e of store.status().entries) verify(e.value);
        await Bun.sleep(20);
      }
    };
    const warmup = (async () => {
      await Bun.sleep(Math.min(3000, seconds * 200));
      report.rss.warm = rssKiB(server.proc.pid);
    })();

    await Promise.all([...Array.from({ length: CONCURRENCY }, httpWorker), killer(), faulter(), reader(), warmup]);
    for (const w of writers) {
      const key = w.key;
      await w.kill();
      report.acknowledged[w.kind === "c" ? "C writers" : "Bun writers"]! += settle(store, key, own);
    }
    report.acknowledged["the checker"] = own.own;
    report.rss.end = rssKiB(server.proc.pid);
    report.serverExit = await server.stop("SIGTERM");
    report.version = store.version;
    report.lockRecoveries = store.lockRecoveries;
    try {
      store.check();
      report.check = "sound";
    } catch (e) {
      report.check = (e as Error).message;
    }
    store.close();
  } finally {
    await server[Symbol.asyncDispose]();
    if (require("node:fs").existsSync(`/dev/shm${name}`)) KvStore.unlink(name);
  }
  judge(report);
  log(summary(report));
  return report;
}

function judge(r: SoakReport): void {
  const acked = Object.values(r.acknowledged).reduce((a, b) => a + b, 0);
  const fail = (cond: boolean, what: string) => cond || r.failures.push(what);
  fail(Object.keys(r.statuses).every((s) => Number(s) < 500), "a request got a 5xx");
  fail(r.torn.length === 0, `${r.torn.length} torn value(s)`);
  fail(r.version === acked, `version ${r.version} != ${acked} acknowledged writes`);
  fail(r.check === "sound", `kv_check: ${r.check}`);
  fail(r.rss.end <= 1.2 * r.rss.warm, `server RSS grew from ${r.rss.warm} to ${r.rss.end} KiB (over 1.2x)`);
  fail(r.serverExit === 0, `the server exited ${r.serverExit} on SIGTERM`);
  fail(r.lockRecoveries >= r.diedInLock, `${r.lockRecoveries} lock recoveries for ${r.diedInLock} deaths inside the lock`);
}

export function summary(r: SoakReport): string {
  const requests = Object.values(r.statuses).reduce((a, b) => a + b, 0);
  const acked = Object.values(r.acknowledged).reduce((a, b) => a + b, 0);
  return [
    `soak: ${r.seconds} s`,
    `requests: ${requests} (${Object.entries(r.statuses).map(([s, n]) => `${s}: ${n}`).join(", ")})`,
    `reads checked: ${r.readsChecked}, torn: ${r.torn.length}`,
    `writes acknowledged: ${acked} (${Object.entries(r.acknowledged).map(([k, n]) => `${k} ${n}`).join(", ")})`,
    `version: ${r.version} (${r.version === acked ? "equal" : "DIFFERENT"})`,
    `kv_check: ${r.check}`,
    `lock recoveries: ${r.lockRecoveries} (writers SIGKILLed: ${r.writersKilled}; died inside the lock at a fault point: ${r.diedInLock})`,
    `server RSS: ${(r.rss.warm / 1024).toFixed(1)} MiB after warm-up, ${(r.rss.end / 1024).toFixed(1)} MiB at the end (${(r.rss.end / r.rss.warm).toFixed(2)}x, limit 1.2x)`,
    `server exit on SIGTERM: ${r.serverExit}`,
    r.failures.length ? `FAILED: ${r.failures.join("; ")}` : "all checks hold",
  ].join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { seconds: { type: "string", default: process.env.SOAK_SECONDS ?? "120" } } });
  const report = await soak(Number(values.seconds), console.log);
  process.exit(report.failures.length ? 1 : 0);
}
