/**
 * The server's sweep of expired entries (src/http/expiry.ts ExpirySweep, with its defaults), in its
 * own process: `bun bench/sweep.ts ENTRIES` -> one JSON line. A store of ENTRIES entries, one in a
 * hundred of them expired, swept tick after tick (no timer: as fast as the ticks go) until all those
 * are reclaimed. The ticks it took tell how long a lap of the store takes at the server's 100 ms a
 * tick; each tick's time is what the server's event loop gives the sweep.
 */
import { KvStore } from "../src/store.ts";
import { ExpirySweep } from "../src/http/expiry.ts";
import { keyOf, median } from "./measure.ts";

const entries = Number(process.argv[2]);
const name = `/shmkv-bench-sweep-${process.pid}`;
const expiring = (i: number) => i % 100 === 0;
const store = KvStore.open(name, { create: true, exclusive: true, maxEntries: entries, keyMax: 16, valueMax: 16, lockTimeoutMs: 0 });
try {
  for (let i = 0; i < entries; i++) store.set(keyOf(i), "v", expiring(i) ? { ttl: 1 } : undefined);
  const due = Math.ceil(entries / 100);
  const last = keyOf(entries - 1 - ((entries - 1) % 100));
  while (store.get(last) !== undefined) await Bun.sleep(1); // the last of them has expired
  const sweep = new ExpirySweep(() => store, { intervalMs: 3_600_000 });
  const times: number[] = [];
  let reclaimed = 0;
  while (reclaimed < due) {
    const began = performance.now();
    reclaimed += sweep.tick();
    times.push(performance.now() - began);
  }
  sweep.stop();
  console.log(JSON.stringify({ entries, reclaimed, ticks: times.length, tick_ms_p50: median(times), tick_ms_max: Math.max(...times) }));
} finally {
  store.close();
  KvStore.unlink(name);
}
