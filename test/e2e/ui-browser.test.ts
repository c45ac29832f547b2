/**
 * The live page, /ui, in a real browser cut off from everything but loopback: it shows the store,
 * follows the writes of other processes (a C program among them) without a reload, sets and
 * deletes through its forms, and asks before it deletes from the table. The screenshot is kept in test-artifacts/ui.png.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { startServer, type RunningServer } from "../../src/server.ts";
import { KvStore } from "../../src/store.ts";
import { ensureChromium, isLoopback, launchOffline } from "../helpers/chromium.ts";
import { kvtool } from "../helpers/kvtool.ts";
import { ROOT } from "../helpers/server-process.ts";
import { uniqueName, unlinkQuietly } from "../helpers/shm.ts";
import { waitFor } from "../helpers/wait.ts";

const ARTIFACTS = join(ROOT, "test-artifacts");
const name = uniqueName();
let server: RunningServer;
let browser: Browser;
let store: KvStore; // another handle on the server's segment: writes from "another process"
let page: Page;
let requested: string[];
let navigations: number;

beforeAll(async () => {
  ensureChromium();
  const quiet = { info: () => {}, error: (line: string) => console.error(line) };
  server = startServer({ host: "127.0.0.1", port: 0, name, create: { maxEntries: 512 }, maxBodyBytes: 65536, logRequests: false }, quiet);
  store = KvStore.open(name);
  browser = await launchOffline();
}, 600_000); // installing chromium on a fresh machine takes a minute or two

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  store?.close();
  unlinkQuietly(name);
});

beforeEach(async () => {
  for (const { key } of store.status().entries) store.delete(key);
  page = await browser.newPage({ viewport: { width: 1100, height: 720 } });
  requested = [];
  navigations = 0;
  page.on("request", (request) => void requested.push(request.url()));
  page.on("framenavigated", (frame) => void (frame === page.mainFrame() && navigations++));
});

afterEach(async () => {
  await page.close();
});

/** Open /ui and wait until it follows /watch. */
async function openPage(): Promise<void> {
  await page.goto(`${server.url}ui`);
  await page.locator("#live.on").waitFor();
}

const row = (key: string) => page.locator(`#entries tr[data-key="${key}"]`);
const text = (selector: string) => page.locator(selector).textContent();

describe("the /ui page", () => {
  it("shows a write made by a C program without a reload, with the count, capacity and version", async () => {
    store.set("greeting", "hello, world");
    store.set("config/theme", "dark");
    store.set("user:42", '{"name":"Ada","langs":["C","TypeScript"]}');
    await openPage();
    await row("user:42").waitFor();
    expect(kvtool(name, ["set", "written-in-c", "hello from kvtool"]).exitCode).toBe(0);
    await row("written-in-c").waitFor();
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "ui.png") });
    expect({
      value: await row("written-in-c").locator("td.value").textContent(),
      keys: await page.locator("#entries td.key").allTextContents(),
      count: await text("#count"),
      max: await text("#max"),
      version: await text("#version"),
      navigations,
      offsite: requested.filter((url) => !isLoopback(url)),
    }).toEqual({
      value: "hello from kvtool",
      keys: ["config/theme", "greeting", "user:42", "written-in-c"],
      count: "4",
      max: "512",
      version: String(store.version),
      navigations: 1,
      offsite: [],
    });
  });

  it("sets and deletes through its forms", async () => {
    await openPage();
    await page.fill("#set-key", "from the form");
    await page.fill("#set-value", "<b>not markup</b>");
    await page.click("#set button");
    await row("from the form").waitFor();
    expect(await row("from the form").locator("td.value").textContent()).toBe("<b>not markup</b>");
    await page.fill("#delete-key", "from the form");
    await page.click("#delete button");
    await row("from the form").waitFor({ state: "detached" });
    expect({ stored: store.get("from the form"), message: await text("#message") }).toEqual({
      stored: undefined,
      message: "Key 'from the form' deleted successfully",
    });
  });

  it("asks before deleting from the table, and deletes nothing when the answer is no", async () => {
    store.set("a/kept", "one");
    store.set("gone", "two");
    await openPage();
    await row("gone").waitFor();
    const asked: string[] = [];
    page.on("dialog", (dialog) => {
      asked.push(`${dialog.type()}: ${dialog.message()}`);
      void (dialog.message().includes('"a/kept"') ? dialog.dismiss() : dialog.accept());
    });
    await row("a/kept").locator("button.remove").click();
    await row("gone").locator("button.remove").click();
    await row("gone").waitFor({ state: "detached" });
    expect({ asked, kept: store.get("a/kept"), gone: store.get("gone"), rows: await page.locator("#entries td.key").allTextContents() }).toEqual({
      asked: ['confirm: Delete "a/kept"? This cannot be undone.', 'confirm: Delete "gone"? This cannot be undone.'],
      kept: "one",
      gone: undefined,
      rows: ["a/kept"],
    });
  });

  it("deletes from the table only the value it showed: a write meanwhile makes it a 412", async () => {
    store.set("k", "shown");
    await openPage();
    await row("k").waitFor();
    page.on("dialog", (dialog) => {
      store.set("k", "written while the question was open");
      void dialog.accept();
    });
    await row("k").locator("button.remove").click();
    await page.locator("#message.error").waitFor();
    expect({ stored: store.get("k"), message: await text("#message") }).toEqual({
      stored: "written while the question was open",
      message: `Key 'k' is at revision ${store.version}: the condition does not hold`,
    });
  });

  it("rereads the store when it fell behind the ring of changes", async () => {
    await openPage();
    for (let i = 0; i < 300; i++) store.set(`key-${i}`, `${i}`); // at once: more than the ring (256) holds
    await waitFor(async () => (await text("#count")) === "300", { what: "300 entries on the page" });
    expect({ version: await text("#version"), rows: await page.locator("#entries tr").count(), navigations }).toEqual({
      version: String(store.version),
      rows: 300,
      navigations: 1,
    });
  });
});

describe("the /ui page, on a server that needs a token", () => {
  it("asks for the token, then shows the store and follows it", async () => {
    const guardedName = uniqueName();
    const quiet = { info: () => {}, error: () => {} };
    const guarded = startServer(
      { host: "127.0.0.1", port: 0, name: guardedName, create: {}, maxBodyBytes: 65536, logRequests: false, token: "s3cret" },
      quiet,
    );
    try {
      await page.goto(`${guarded.url}ui`);
      await page.locator("#token-value").waitFor();
      expect(await text("#live")).toBe("token needed");
      await page.fill("#token-value", "s3cret");
      await page.click("#token button");
      await page.locator("#live.on").waitFor();
      expect(kvtool(guardedName, ["set", "k", "behind a token"]).exitCode).toBe(0);
      await row("k").waitFor();
      expect(await row("k").locator("td.value").textContent()).toBe("behind a token");
    } finally {
      await guarded.stop();
      unlinkQuietly(guardedName);
    }
  });
});
