/**
 * A server for the HTTP benchmark, in its own process:
 * `bun bench/serve.ts shmkv|featured|map|listen|floor NAME [ENTRIES]`. The featured app leaves out
 * the features BENCH_WITHOUT names (bench/map-app.ts); listen is the Map app served by Elysia's own
 * listen rather than by Bun.serve; floor is the plain Bun.serve handler of bench/bun-floor.ts.
 * Fills a table of ENTRIES entries (default 10: key-0..key-9), but in floor; listens on a free
 * loopback port, and prints {"url": ...}.
 */
import { KvStore } from "../src/store.ts";
import { startServer } from "../src/server.ts";
import { floorHandler } from "./bun-floor.ts";
import { createFeaturedMapApp, createMapApp, featuresLeftOut } from "./map-app.ts";
import { keyOf, valueOf } from "./measure.ts";

const [impl, name, entriesArg] = process.argv.slice(2);
const entries = Number(entriesArg ?? 10);
const quiet = { info: () => {}, error: (line: string) => console.error(line) };

if (impl === "shmkv") {
  const running = startServer(
    { host: "127.0.0.1", port: 0, name: name!, create: { maxEntries: entries }, maxBodyBytes: 64 * 1024, logRequests: false },
    quiet,
  );
  using store = KvStore.open(name!);
  for (let i = 0; i < entries; i++) store.set(keyOf(i), valueOf(i));
  console.log(JSON.stringify({ url: running.url }));
  process.once("SIGTERM", () => void running.stop().then(() => process.exit(0)));
} else if (impl === "floor") {
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: floorHandler, development: false });
  console.log(JSON.stringify({ url: server.url.href }));
  process.once("SIGTERM", () => void server.stop().then(() => process.exit(0)));
} else {
  const app = impl === "featured" ? createFeaturedMapApp(entries, featuresLeftOut()) : createMapApp(entries);
  for (let i = 0; i < entries; i++) {
    await app.handle(new Request("http://localhost/set", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ key: keyOf(i), value: valueOf(i) }) }));
  }
  if (impl === "listen") {
    app.listen({ hostname: "127.0.0.1", port: 0, development: false });
    console.log(JSON.stringify({ url: app.server!.url.href }));
    process.once("SIGTERM", () => void app.stop().then(() => process.exit(0)));
  } else {
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (r) => app.handle(r), development: false });
    console.log(JSON.stringify({ url: server.url.href }));
    process.once("SIGTERM", () => void server.stop().then(() => process.exit(0)));
  }
}
