/** The replication settings of `serve` and `replicate`: flags beat variables, bad values are refused. */
import { describe, expect, it } from "bun:test";
import { ConfigError, serverConfig, SERVER_HELP } from "../../src/config.ts";

function replicate(argv: string[], env: Record<string, string> = {}) {
  const config = serverConfig(argv, env);
  if (config === "help") throw new Error("unexpected help");
  return config.replicate;
}

function refusal(argv: string[], env: Record<string, string> = {}): string {
  try {
    serverConfig(argv, env);
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  return "accepted";
}

describe("replication settings", () => {
  it("are off without --replicate or KV_REPLICATE", () => {
    expect(replicate([])).toBeUndefined();
  });

  it("name the namespace after the segment by default, and keep 100,000 changes in the stream", () => {
    expect(replicate(["--replicate", "redis://10.0.0.5:6379/2", "--name", "/orders"])).toEqual({
      url: "redis://10.0.0.5:6379/2",
      namespace: "orders",
      maxlen: 100_000,
    });
  });

  it("come from the environment, the flags winning", () => {
    const env = { KV_REPLICATE: "rediss://:secret@cache:6380", KV_NAMESPACE: "from-env", KV_REPLICATE_MAXLEN: "500" };
    expect({ env: replicate([], env), flags: replicate(["--namespace", "from-flag", "--replicate-maxlen", "9"], env) }).toEqual({
      env: { url: "rediss://:secret@cache:6380", namespace: "from-env", maxlen: 500 },
      flags: { url: "rediss://:secret@cache:6380", namespace: "from-flag", maxlen: 9 },
    });
  });

  it("refuse a URL that is not redis:// without showing it, a namespace with braces, and --namespace alone", () => {
    const url = refusal(["--replicate", "http://user:hunter2@host"]);
    expect({
      url: url.includes("redis://") && !url.includes("hunter2"),
      braces: refusal(["--replicate", "redis://h:1", "--namespace", "a{b}"]),
      alone: refusal(["--namespace", "x"]),
      maxlen: refusal(["--replicate", "redis://h:1", "--replicate-maxlen", "0"]),
    }).toEqual({
      url: true,
      braces: expect.stringContaining("KV_NAMESPACE (--namespace) must be"),
      alone: "--namespace and --replicate-maxlen go with --replicate (KV_REPLICATE)",
      maxlen: expect.stringContaining("KV_REPLICATE_MAXLEN (--replicate-maxlen) must be an integer from 1"),
    });
  });

  it("are listed in serve's help", () => {
    expect(SERVER_HELP).toContain("--replicate URL      KV_REPLICATE");
    expect(SERVER_HELP).toContain("--namespace NS       KV_NAMESPACE");
  });
});
