/**
 * `bun run server`: the HTTP server's entry point. It checks that the packages are installed before
 * importing the server, which imports them (see dependencies.ts): without `make deps`, one line that
 * names the command to run, exit status 1, rather than a module-resolution trace.
 */
import { missingPackages, missingPackagesMessage } from "./dependencies.ts";

const missing = missingPackages();
if (missing.length > 0) {
  console.error(missingPackagesMessage(missing));
  process.exit(1);
}
const { runServer } = await import("./server.ts");
process.exit(await runServer(Bun.argv.slice(2), process.env));
