/**
 * A replica's segment reached by something other than its follower: a server without --replicate,
 * and the CLI. Both refuse writes, say why, and read as usual.
 */
import { describe, expect, it } from "bun:test";
import { main } from "../../src/cli.ts";
import { createApp } from "../../src/http/app.ts";
import { answer, del, deleteKeys, expectError, get, postIncr, postSet } from "../helpers/http.ts";
import { TempStore } from "../helpers/shm.ts";

describe("a read-only replica segment", () => {
  it("makes a server without --replicate answer writes with 403 READ_ONLY, and reads with 200", async () => {
    using temp = new TempStore();
    temp.store.set("k", "v");
    temp.store.setReadOnly(true);
    const app = createApp(temp.store);
    await expectError(app.handle(postSet({ key: "k", value: "w" })), 403, "READ_ONLY", /read-only replica: write through its server/);
    await expectError(app.handle(del("/delete/k")), 403, "READ_ONLY", /read-only replica/);
    await expectError(app.handle(postIncr({ key: "n" })), 403, "READ_ONLY", /read-only replica/);
    await expectError(app.handle(deleteKeys("prefix=k")), 403, "READ_ONLY", /read-only replica/);
    expect(temp.store.version).toBe(1);
    expect(await answer(app.handle(get("/get/k")))).toEqual({ status: 200, body: { key: "k", value: "v" } });
  });

  it("makes the CLI's set and delete fail with exit 1 and the reason, and get still read", async () => {
    using temp = new TempStore();
    temp.store.set("k", "v");
    temp.store.setReadOnly(true);
    const err: string[] = [];
    const out: string[] = [];
    const io = { out: (t: string) => out.push(t), err: (t: string) => err.push(t) };
    const env = { KV_SHM_NAME: temp.name };
    const codes = [
      await main(["set", "k", "w"], env, io),
      await main(["delete", "k"], env, io),
      await main(["incr", "n"], env, io),
      await main(["get", "k"], env, io),
    ];
    expect({ codes, out, err: err.map((line) => line.includes("write through its server")) }).toEqual({
      codes: [1, 1, 1, 0],
      out: ["v"],
      err: [true, true, true],
    });
  });
});
