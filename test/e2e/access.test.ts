/**
 * Access, as a server process: its log never holds a token or a value, and a server that may not open
 * the segment says which and how to fix it.
 */
import { afterEach, beforeEach, describe, expect, it } from "bun:test";
import { BUN, ServerProcess } from "../helpers/server-process.ts";
import { foreignOwner, TempStore, uniqueName, unlinkQuietly, WITHOUT_CAPABILITIES } from "../helpers/shm.ts";

let name: string;

beforeEach(() => {
  name = uniqueName();
});

afterEach(() => unlinkQuietly(name));

describe("a server with KV_API_TOKEN", () => {
  it("never logs the token, a wrong token or a value", async () => {
    const token = `token-${crypto.randomUUID()}`;
    const wrong = `wrong-${crypto.randomUUID()}`;
    const value = `value-${crypto.randomUUID()}`;
    await using proc = new ServerProcess([BUN, "src/server.ts"], { env: { PORT: "0", KV_SHM_NAME: name, KV_API_TOKEN: token } });
    const url = await proc.url();
    const auth = { authorization: `Bearer ${token}` };
    const set = { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: JSON.stringify({ key: "k", value }) };
    const statuses = [
      (await fetch(`${url}set`, set)).status,
      (await fetch(`${url}get/k`, { headers: auth })).status,
      (await fetch(`${url}status`, { headers: { authorization: `Bearer ${wrong}` } })).status,
      (await fetch(`${url}status?token=${token}&value=${value}`)).status,
      (await fetch(`${url}status`, { headers: auth })).status,
    ];
    await proc.printed(/GET \/status 200 /);
    expect(await proc.stop()).toBe(0);
    const log = proc.stdout + proc.stderr;
    const leaks = [token, wrong, value].filter((secret) => log.includes(secret));
    expect({ statuses, lines: log.match(/(POST|GET) \/\S* \d{3}/g), leaks }).toEqual({
      statuses: [200, 200, 401, 401, 200],
      lines: ["POST /set 200", "GET /get/k 200", "GET /status 401", "GET /status 401", "GET /status 200"],
      leaks: [],
    });
  });
});

describe("a server that may not open the segment", () => {
  it("answers 503, naming the segment and the fix", async () => {
    // Root skips the mode check: the segment goes to another owner (mode 0600), and the server runs
    // without the capabilities that let root open it anyway.
    using temp = new TempStore();
    foreignOwner(temp.name);
    const cmd = [...WITHOUT_CAPABILITIES, BUN, "src/server.ts"];
    await using proc = new ServerProcess(cmd, { env: { PORT: "0", KV_SHM_NAME: temp.name } });
    const health = await fetch(`${await proc.url()}health`);
    const segment = `/dev/shm${temp.name}`;
    expect({ status: health.status, body: await health.json() }).toEqual({
      status: 503,
      body: {
        detail:
          `the store is not available: permission denied opening ${segment}: run as its owner, or have its owner ` +
          `widen its mode (e.g. chmod 0660 ${segment} and share its group)`,
        code: "STORE_UNAVAILABLE",
      },
    });
    expect(proc.stderr).toContain(`cannot open ${temp.name}: permission denied opening ${segment}`);
  });
});
