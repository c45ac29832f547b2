import { describe, expect, it } from "bun:test";
import { soak } from "./soak/soak.ts";

describe("soak under faults (15 s; `make soak` runs it longer)", () => {
  it("keeps every promise while writers are killed around the server", async () => {
    const report = await soak(15, console.log);
    expect(report.failures).toEqual([]);
    // The run really exercised what it claims to.
    expect(report.readsChecked).toBeGreaterThan(1000);
    expect(report.acknowledged.http).toBeGreaterThan(100);
    expect(report.writersKilled).toBeGreaterThan(10);
    expect(report.diedInLock).toBeGreaterThan(10);
  }, 60_000);
});
