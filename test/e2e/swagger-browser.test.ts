/**
 * The documentation page works with no internet: a real browser, cut off from everything but
 * loopback, loads /swagger from a server on port 0 and shows every operation. The screenshot is kept
 * in test-artifacts/swagger.png.
 */
import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Browser } from "playwright-core";
import { startServer, type RunningServer } from "../../src/server.ts";
import { ensureChromium, isLoopback, launchOffline } from "../helpers/chromium.ts";
import { ROOT } from "../helpers/server-process.ts";
import { uniqueName, unlinkQuietly } from "../helpers/shm.ts";

const ARTIFACTS = join(ROOT, "test-artifacts");
const OPERATIONS = [
  "What this server is and its endpoints",
  "Get the value of a key",
  "Insert or replace an entry",
  "Remove an entry",
  "The whole store: version, counts and every entry",
  "Whether the store is open",
];

const name = uniqueName();
let server: RunningServer;
let browser: Browser;

beforeAll(async () => {
  ensureChromium();
  const quiet = { info: () => {}, error: (line: string) => console.error(line) };
  server = startServer({ host: "127.0.0.1", port: 0, name, create: {}, maxBodyBytes: 65536, logRequests: false }, quiet);
  browser = await launchOffline();
}, 600_000); // installing chromium on a fresh machine takes a minute or two

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  unlinkQuietly(name);
});

describe("the /swagger page, offline", () => {
  it("lists every operation, having asked nothing of the internet", async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1600 } });
    const requested: string[] = [];
    page.on("request", (request) => requested.push(request.url()));
    await page.goto(`${server.url}swagger`, { waitUntil: "commit" });
    for (const title of OPERATIONS) await page.getByText(title, { exact: true }).first().waitFor({ timeout: 30_000 });
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "swagger.png"), fullPage: false });
    expect(requested.filter((url) => !isLoopback(url))).toEqual([]);
    expect(requested).toContain(`${server.url}swagger/scalar.js`);
    expect(requested).toContain(`${server.url}swagger/json`);
  });

  it("is reached from /swagger/, /docs and /redoc", async () => {
    const page = await browser.newPage();
    const landed: string[] = [];
    for (const path of ["swagger/", "docs", "redoc"]) {
      await page.goto(`${server.url}${path}`, { waitUntil: "commit" }); // the redirects are followed by then
      landed.push(page.url());
    }
    expect(landed).toEqual([`${server.url}swagger`, `${server.url}swagger`, `${server.url}swagger`]);
  });
});
