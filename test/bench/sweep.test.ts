/**
 * bench/sweep.ts times the server's sweep over a store with one entry in a hundred expired. Its
 * count of ticks is the lap it reports: at 1,000 entries, four passes of 256 slots, one a tick.
 */
import { describe, expect, it } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";

describe("bench/sweep.ts", () => {
  it("reclaims every expired entry of its store, in the ticks a lap takes, and unlinks the store", async () => {
    const p = Bun.spawn([process.execPath, "bench/sweep.ts", "1000"], { cwd: join(import.meta.dir, "../.."), stdout: "pipe" });
    const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
    const { tick_ms_p50, tick_ms_max, ...counts } = JSON.parse(out);
    expect({ code, counts, timed: tick_ms_p50 > 0 && tick_ms_max >= tick_ms_p50 }).toEqual({
      code: 0,
      counts: { entries: 1000, reclaimed: 10, ticks: 4 },
      timed: true,
    });
    expect(existsSync(`/dev/shm/shmkv-bench-sweep-${p.pid}`)).toBe(false);
  });
});
