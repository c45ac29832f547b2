/**
 * bench/bun-floor.ts prices three things by pairs of answers that must differ in that one thing only:
 * an ETag header, the same after a look at If-None-Match, and a body read strictly rather than by
 * request.json().
 */
import { describe, expect, it } from "bun:test";
import { floorHandler } from "../../bench/bun-floor.ts";
import { BASE } from "../helpers/http.ts";

async function answer(path: string, body?: string | Uint8Array, headers: Record<string, string> = {}) {
  const init = body === undefined ? { headers } : { method: "POST", headers: { "content-type": "application/json", ...headers }, body };
  const response = await floorHandler(new Request(`${BASE}/${path}`, init));
  return { status: response.status, etag: response.headers.get("etag"), body: await response.text() };
}

describe("floorHandler", () => {
  it("answers GET the same with and without the ETag header, but for the header", async () => {
    const [plain, tagged] = [await answer("get/plain"), await answer("get/etag")];
    expect(tagged).toEqual({ ...plain, etag: expect.stringMatching(/^"\d+"$/) });
    expect(plain.etag).toBeNull();
  });

  it("answers GET with the ETag after a look at If-None-Match as without it, and 304 when it names the tag", async () => {
    const [tagged, conditional] = [await answer("get/etag"), await answer("get/conditional")];
    expect(conditional).toEqual({ ...tagged, etag: expect.stringMatching(/^"\d+"$/) });
    expect(await answer("get/conditional", undefined, { "if-none-match": "*" })).toEqual({ status: 304, etag: expect.stringMatching(/^"\d+"$/), body: "" });
  });

  it("answers a valid body the same either way, and refuses invalid UTF-8 only when strict", async () => {
    const valid = JSON.stringify({ key: "key-1", value: "v" });
    expect(await answer("set/strict", valid)).toEqual(await answer("set/json", valid));
    const invalid = Buffer.concat([Buffer.from('{"key": "k", "value": "'), Buffer.from([0xff]), Buffer.from('"}')]);
    expect([(await answer("set/json", invalid)).status, (await answer("set/strict", invalid)).status]).toEqual([200, 400]);
  });
});
