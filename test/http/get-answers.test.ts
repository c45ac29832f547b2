/** GetAnswers: kept answers of GET /get/{key} are sent only while key, value and revision are the same. */
import { describe, expect, it } from "bun:test";
import { GetAnswers } from "../../src/http/get-answers.ts";

/** What a client sees of an answer. */
async function seen(response: Response) {
  return { status: response.status, headers: Object.fromEntries(response.headers), body: await response.json() };
}

function expected(key: string, value: string, revision: number) {
  return {
    status: 200,
    headers: { "content-type": "application/json;charset=utf-8", etag: `"${revision}"` },
    body: { key, value },
  };
}

describe("GetAnswers", () => {
  it("answers every read in full, the kept answer as often as it is asked", async () => {
    const answers = new GetAnswers();
    const reads = [];
    for (let i = 0; i < 4; i++) reads.push(await seen(answers.answer({ key: "k", value: "v" }, 7)));
    expect(reads).toEqual(Array(4).fill(expected("k", "v", 7)));
  });

  it("keeps an answer at the second read of the same revision, not the first", () => {
    const answers = new GetAnswers();
    answers.answer({ key: "k", value: "v" }, 7);
    const afterOne = answers.size;
    answers.answer({ key: "k", value: "v" }, 7);
    expect([afterOne, answers.size]).toEqual([0, 1]);
  });

  it("answers a new revision or a new value, never the kept answer", async () => {
    const answers = new GetAnswers();
    for (let i = 0; i < 3; i++) await seen(answers.answer({ key: "k", value: "old" }, 7));
    const changed = await seen(answers.answer({ key: "k", value: "new" }, 8));
    // The same revision with another value: a segment created again since, say.
    const replaced = await seen(answers.answer({ key: "k", value: "other" }, 7));
    expect([changed, replaced]).toEqual([expected("k", "new", 8), expected("k", "other", 7)]);
  });

  it("answers each key its own entry when keys share a cell", async () => {
    const answers = new GetAnswers();
    const keys = Array.from({ length: 600 }, (_, i) => `key-${i}`); // more keys than cells
    const read = (i: number) => answers.answer({ key: keys[i]!, value: `value-${i}` }, i + 1);
    for (let i = 0; i < keys.length; i++) read(i), read(i); // each kept at its second read
    const third = await Promise.all(keys.map((_, i) => seen(read(i))));
    expect(third).toEqual(keys.map((key, i) => expected(key, `value-${i}`, i + 1)));
  });

  it("answers each key its own entry when keys sharing a cell have the same revision and value", async () => {
    // Revisions are unique within one segment, not across two (the server reattaches to a new one).
    const answers = new GetAnswers();
    const keys = Array.from({ length: 600 }, (_, i) => `key-${i}`);
    for (const key of keys) answers.answer({ key, value: "v" }, 5), answers.answer({ key, value: "v" }, 5);
    const third = await Promise.all(keys.map((key) => seen(answers.answer({ key, value: "v" }, 5))));
    expect(third).toEqual(keys.map((key) => expected(key, "v", 5)));
  });

  it("keeps one answer per cell: 256 at most", () => {
    const answers = new GetAnswers();
    for (let i = 0; i < 2000; i++) {
      answers.answer({ key: `key-${i}`, value: "v" }, i + 1);
      answers.answer({ key: `key-${i}`, value: "v" }, i + 1);
    }
    expect(answers.size).toBe(256); // 2000 keys leave no cell empty
  });

  it("keeps no answer of a value longer than its limit, and still answers it", async () => {
    const answers = new GetAnswers(4);
    const reads = [];
    for (let i = 0; i < 3; i++) reads.push(await seen(answers.answer({ key: "k", value: "12345" }, 7)));
    expect({ reads, kept: answers.size }).toEqual({ reads: Array(3).fill(expected("k", "12345", 7)), kept: 0 });
  });
});
