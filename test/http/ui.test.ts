/** GET /ui: one self-contained page, through app.handle (the browser test drives it: test/e2e/ui-browser.test.ts). */
import { describe, expect, it } from "bun:test";
import { createApp } from "../../src/http/app.ts";
import { get } from "../helpers/http.ts";
import { TempStore } from "../helpers/shm.ts";

const hash = (text: string) => `'sha256-${new Bun.CryptoHasher("sha256").update(text).digest("base64")}'`;

describe("GET /ui", () => {
  it("serves one page with its script and style inside, the only ones its policy lets run, and nothing from elsewhere", async () => {
    using temp = new TempStore();
    const r = await createApp(temp.store).handle(get("/ui"));
    const html = await r.text();
    const script = /<script>([\s\S]*)<\/script>/.exec(html)?.[1] ?? "";
    const style = /<style>([\s\S]*)<\/style>/.exec(html)?.[1] ?? "";
    expect({
      status: r.status,
      type: r.headers.get("content-type"),
      policy: r.headers.get("content-security-policy"),
      external: html.match(/(?:src|href)="(?!\/)[^"]*"/g),
      follows: script.includes("`/watch?since=${state.version}`"),
    }).toEqual({
      status: 200,
      type: "text/html; charset=utf-8",
      policy: `default-src 'none'; connect-src 'self'; style-src ${hash(style)}; script-src ${hash(script)}`,
      external: null,
      follows: true,
    });
  });
});
