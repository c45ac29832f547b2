/**
 * The JSON body reader of src/http/body.ts: its depth bound (a quick count of brackets, then the
 * exact walk), its UTF-8 check, which must refuse what a fatal decoder does, and its schema check.
 */
import { describe, expect, it } from "bun:test";
import { t, ValidationError } from "elysia";
import { bodyReader, MAX_JSON_DEPTH, nestsDeeper } from "../../src/http/body.ts";
import { ApiError } from "../../src/http/errors.ts";

function post(body: string | Uint8Array): Request {
  return new Request("http://localhost/set", { method: "POST", headers: { "content-type": "application/json" }, body });
}

const readAny = bodyReader(t.Unknown(), 1024 * 1024);

/** What reading `body` gives: the value, or the ApiError's code and detail. */
async function outcome(body: string | Uint8Array): Promise<unknown> {
  try {
    return { value: await readAny(post(body)) };
  } catch (error) {
    if (error instanceof ApiError) return { code: error.code, detail: error.message };
    throw error;
  }
}

const nested = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`;

describe("nestsDeeper", () => {
  it("allows exactly the maximum depth and refuses one more, in arrays and objects", () => {
    const objects = (depth: number) => `${'{"a":'.repeat(depth - 1)}{}${"}".repeat(depth - 1)}`;
    expect([nestsDeeper(nested(32), 32), nestsDeeper(nested(33), 32), nestsDeeper(objects(32), 32), nestsDeeper(objects(33), 32)])
      .toEqual([false, true, false, true]);
  });

  it("does not count brackets inside strings, escaped quotes included, however many there are", () => {
    const inString = JSON.stringify({ key: "k", value: `\\" ${"[{".repeat(100)}` });
    expect(nestsDeeper(inString, 32)).toBe(false);
    expect(nestsDeeper(`[${inString}, ${nested(32)}]`, 32)).toBe(true);
  });

  it("counts depth, not brackets: many shallow arrays are fine", () => {
    expect(nestsDeeper(`[${Array(1000).fill("[1]").join(",")}]`, 32)).toBe(false);
  });
});

describe("bodyReader, of any JSON", () => {
  it("parses a body at the depth limit and refuses one beyond it", async () => {
    expect(await outcome(nested(MAX_JSON_DEPTH))).toEqual({ value: JSON.parse(nested(MAX_JSON_DEPTH)) });
    expect(await outcome(nested(MAX_JSON_DEPTH + 1))).toEqual({
      code: "BAD_REQUEST",
      detail: `the body nests arrays and objects more than ${MAX_JSON_DEPTH} deep`,
    });
  });

  it("refuses every malformed UTF-8 sequence a fatal decoder refuses", async () => {
    const invalid = [
      [0xff], // never in UTF-8
      [0xc0, 0xaf], // overlong "/"
      [0xe0, 0x80, 0xaf], // overlong, three bytes
      [0xed, 0xa0, 0x80], // a UTF-16 surrogate
      [0xf4, 0x90, 0x80, 0x80], // beyond U+10FFFF
      [0xe2, 0x82], // truncated
      [0x80], // a lone continuation byte
    ];
    const fatal = new TextDecoder("utf-8", { fatal: true });
    for (const sequence of invalid) {
      const body = Buffer.concat([Buffer.from('{"key": "k", "value": "'), Buffer.from(sequence), Buffer.from('"}')]);
      expect(() => fatal.decode(body)).toThrow();
      expect(await outcome(body)).toEqual({ code: "BAD_REQUEST", detail: "the body is not valid UTF-8" });
    }
  });

  it("keeps every valid character, U+FFFD among them, as it was sent", async () => {
    const value = "\uFFFD é 中 😀 \u0000";
    expect(await outcome(new TextEncoder().encode(JSON.stringify({ key: "k", value })))).toEqual({ value: { key: "k", value } });
  });
});

describe("bodyReader, of a schema", () => {
  const read = bodyReader(t.Object({ key: t.String({ minLength: 1 }) }), 1024);

  it("gives a body that matches the schema as it was sent", async () => {
    const sent = { key: "k", more: [1] };
    expect(await read(post(JSON.stringify(sent)))).toEqual(sent);
  });

  it("refuses one that does not as Elysia's own body check does, naming the field", async () => {
    const error = await read(post(JSON.stringify({ key: "" }))).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect({ type: (error as ValidationError).type, path: (error as ValidationError).valueError?.path }).toEqual({ type: "body", path: "/key" });
  });

  it("refuses what is not JSON with a 400's ApiError, and a body over the limit while it is read", async () => {
    const chunked = new Request("http://localhost/set", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: new Blob([`{"key": "${"k".repeat(2000)}"}`]).stream(),
    });
    const failures = await Promise.all([read(post("{key")), read(chunked)].map((p) => p.catch((e: ApiError) => [e.code, e.message])));
    expect(failures).toEqual([
      ["BAD_REQUEST", "the body is not valid JSON"],
      ["BODY_TOO_LARGE", "the request body is larger than 1024 bytes"],
    ]);
  });
});
