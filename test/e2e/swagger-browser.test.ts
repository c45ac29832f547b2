/**
 * The documentation page works with no internet, and is honest about it: a real browser, cut off
 * from everything but loopback, loads /swagger from a server on port 0 and shows every operation,
 * no control that needs the internet or an account, code samples that carry the server's address,
 * real request examples, and the bearer scheme only when the server has a token. The screenshot is
 * kept in test-artifacts/swagger.png.
 */
import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { startServer, type RunningServer } from "../../src/server.ts";
import { ensureChromium, isLoopback, launchOffline } from "../helpers/chromium.ts";
import { ROOT } from "../helpers/server-process.ts";
import { uniqueName, unlinkQuietly } from "../helpers/shm.ts";
import { waitFor } from "../helpers/wait.ts";

const ARTIFACTS = join(ROOT, "test-artifacts");
const OPERATIONS = [
  "What this server is and its endpoints",
  "Get the value of a key",
  "Insert or replace an entry",
  "Remove an entry",
  "The whole store: version, counts and every entry",
  "Whether the store is open",
];

/** Scalar's controls that need the internet or an account with Scalar. */
const ONLINE_CONTROLS = ["Ask AI", "Generate MCP", "Deploy", "Share"];
const TOKEN = "swagger-browser-test-token";

const name = uniqueName();
let server: RunningServer;
/** The same store served with a token: its page declares the bearer scheme. */
let guarded: RunningServer;
let browser: Browser;

beforeAll(async () => {
  ensureChromium();
  const quiet = { info: () => {}, error: (line: string) => console.error(line) };
  const config = { host: "127.0.0.1", port: 0, name, create: {}, maxBodyBytes: 65536, logRequests: false };
  server = startServer(config, quiet);
  guarded = startServer({ ...config, token: TOKEN }, quiet);
  browser = await launchOffline();
}, 600_000); // installing chromium on a fresh machine takes a minute or two

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  await guarded?.stop();
  unlinkQuietly(name);
});

interface Rendered {
  page: Page;
  /** What the page shows, as a reader sees it (innerText), once every operation is there. */
  text: string;
  /** Every URL the page asked for. */
  requested: string[];
}

const rendered = new Map<string, Promise<Rendered>>();

/** The /swagger page of `at`, rendered once for the tests that read it. */
function renderedPage(at: RunningServer): Promise<Rendered> {
  let done = rendered.get(at.url);
  if (!done) rendered.set(at.url, (done = render(at)));
  return done;
}

async function render(at: RunningServer): Promise<Rendered> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1600 } });
  const requested: string[] = [];
  page.on("request", (request) => requested.push(request.url()));
  await page.goto(`${at.url}swagger`, { waitUntil: "commit" });
  for (const title of OPERATIONS) await page.getByText(title, { exact: true }).first().waitFor({ timeout: 30_000 });
  // The code samples are drawn after the titles, those of the first operations (down to POST /set)
  // as the page opens; the others as the reader scrolls to them.
  const setSample = `curl ${origin(at)}/set`;
  const body = page.locator("body");
  const text = await waitFor(async () => {
    const shown = await body.innerText();
    return shown.includes(setSample) ? shown : undefined;
  }, { timeoutMs: 30_000, what: setSample });
  return { page, text, requested };
}

const origin = (at: RunningServer) => at.url.replace(/\/$/, "");

describe("the /swagger page, offline", () => {
  it("lists every operation, having asked nothing of the internet", async () => {
    const { page, requested } = await renderedPage(server);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "swagger.png"), fullPage: false });
    expect(requested.filter((url) => !isLoopback(url))).toEqual([]);
    expect(requested).toContain(`${server.url}swagger/scalar.js`);
    expect(requested).toContain(`${server.url}swagger/json`);
  });

  it("shows no control that needs the internet or an account (Ask AI, Generate MCP, Deploy, Share)", async () => {
    const { text } = await renderedPage(server);
    expect(ONLINE_CONTROLS.filter((label) => text.includes(label))).toEqual([]);
  });

  it("gives code samples that carry the server's address, and a real example of the set body", async () => {
    const { text } = await renderedPage(server);
    const samples = [`curl ${origin(server)}/`, `curl '${origin(server)}/get/{key}'`, `curl ${origin(server)}/set`];
    expect(samples.filter((sample) => !text.includes(sample))).toEqual([]);
    expect(text).not.toMatch(/curl '?\//);
    expect(text).toContain('"key": "mykey",\n  "value": "myvalue"');
    expect(text).not.toContain("additionalProperty");
  });

  it("declares the bearer scheme only when the server has a token, having asked nothing of the internet", async () => {
    const [open, secured] = await Promise.all([renderedPage(server), renderedPage(guarded)]);
    const bearer = (text: string) => ({ authentication: text.includes("Authentication"), header: text.includes("Authorization: Bearer") });
    expect({ open: bearer(open.text), secured: bearer(secured.text) }).toEqual({
      open: { authentication: false, header: false },
      secured: { authentication: true, header: true },
    });
    expect(secured.requested.filter((url) => !isLoopback(url))).toEqual([]);
    expect(ONLINE_CONTROLS.filter((label) => secured.text.includes(label))).toEqual([]);
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
