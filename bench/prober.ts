/**
 * `bun bench/prober.ts URL`: GET URL over and over, one request at a time, until stdin closes; then
 * print {"requests", "p50", "p99", "max"} (latencies in ns). A process of its own, so that what it
 * measures is the server's answer, not the event loop of the process that reads a long body.
 */
import { percentiles } from "./measure.ts";

const url = process.argv[2]!;
const latencies: number[] = [];
let open = true;
void (async () => {
  for await (const _ of Bun.stdin.stream()) void _;
  open = false;
})();
while (open) {
  const started = Bun.nanoseconds();
  const response = await fetch(url);
  await response.arrayBuffer();
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  latencies.push(Bun.nanoseconds() - started);
}
console.log(JSON.stringify({ requests: latencies.length, ...percentiles(latencies), max: Math.max(0, ...latencies) }));
