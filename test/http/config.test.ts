/** The server's settings: defaults, environment, flags over environment, and a clear error for each bad value. */
import { describe, expect, it } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, serverConfig } from "../../src/config.ts";

function configError(argv: string[], env: Record<string, string>): string {
  try {
    serverConfig(argv, env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error("no ConfigError");
}

describe("serverConfig", () => {
  it("defaults to the seed's port, the loopback address and the seed's store", () => {
    expect(serverConfig([], {})).toEqual({
      host: "127.0.0.1",
      port: 8000,
      name: "/shared_memory_kv",
      create: { maxEntries: undefined, keyMax: undefined, valueMax: undefined, mode: undefined },
      maxBodyBytes: 65536,
      logRequests: true,
      token: undefined,
      idleTimeoutSeconds: 10,
      trustSegmentOwner: false,
      allowedHosts: undefined,
    });
  });

  it("reads every setting from the environment", () => {
    const env = {
      HOST: "0.0.0.0",
      PORT: "0",
      KV_SHM_NAME: "/other",
      KV_MAX_ENTRIES: "100",
      KV_KEY_MAX: "32",
      KV_VALUE_MAX: "1024",
      KV_SHM_MODE: "0660",
      KV_EVICT: "lru",
      KV_MAX_BODY: "4096",
      KV_LOG_REQUESTS: "0",
      KV_API_TOKEN: "s3cr3t-t0ken",
      KV_IDLE_TIMEOUT: "30",
      KV_TRUST_SEGMENT_OWNER: "1",
      KV_ALLOWED_HOSTS: "kv, Example.org.,10.0.0.5",
    };
    expect(serverConfig([], env)).toEqual({
      host: "0.0.0.0",
      port: 0,
      name: "/other",
      create: { maxEntries: 100, keyMax: 32, valueMax: 1024, mode: 0o660, evict: "lru" },
      maxBodyBytes: 4096,
      logRequests: false,
      token: "s3cr3t-t0ken",
      idleTimeoutSeconds: 30,
      trustSegmentOwner: true,
      allowedHosts: ["kv", "Example.org.", "10.0.0.5"],
    });
  });

  it("lets each flag beat its variable", () => {
    const argv = ["--host", "::1", "--port", "9000", "--name", "/flag", "--max-entries", "5", "--key-max", "8"];
    const folder = mkdtempSync(join(tmpdir(), "shmkv-config-"));
    const tokenFile = join(folder, "token");
    writeFileSync(tokenFile, "from-the-file\n");
    const more = ["--value-max", "16", "--mode", "640", "--evict", "none", "--max-body", "100", "--quiet"];
    const access = ["--token-file", tokenFile, "--idle-timeout", "5", "--trust-segment-owner", "--allowed-hosts", "*"];
    const env = {
      HOST: "0.0.0.0",
      PORT: "1",
      KV_SHM_NAME: "/env",
      KV_MAX_ENTRIES: "50",
      KV_EVICT: "lru",
      KV_LOG_REQUESTS: "1",
      KV_API_TOKEN: "env",
      KV_ALLOWED_HOSTS: "kv",
    };
    expect(serverConfig([...argv, ...more, ...access], env)).toEqual({
      host: "::1",
      port: 9000,
      name: "/flag",
      create: { maxEntries: 5, keyMax: 8, valueMax: 16, mode: 0o640, evict: "none" },
      maxBodyBytes: 100,
      logRequests: false,
      token: "from-the-file",
      idleTimeoutSeconds: 5,
      trustSegmentOwner: true,
      allowedHosts: ["*"],
    });
    rmSync(folder, { recursive: true });
  });

  it("reads --memory and KV_MEMORY in bytes or with a K, M or G suffix, the flag first", () => {
    const memory = (argv: string[], env: Record<string, string>) => {
      const config = serverConfig(argv, env);
      return config === "help" ? undefined : config.create.memoryBytes;
    };
    expect([
      memory([], { KV_MEMORY: "4096" }),
      memory([], { KV_MEMORY: "64K" }),
      memory([], { KV_MEMORY: "64m" }),
      memory([], { KV_MEMORY: "2G" }),
      memory(["--memory", "1M"], { KV_MEMORY: "2G" }),
      memory([], {}),
    ]).toEqual([4096, 65536, 67108864, 2147483648, 1048576, undefined]);
  });

  it("allows values up to 64 MiB only with --memory", () => {
    const config = serverConfig(["--memory", "1G", "--value-max", "67108864"], {});
    expect(config === "help" ? undefined : config.create).toEqual({ valueMax: 67108864, memoryBytes: 2 ** 30 });
    expect(configError(["--value-max", "67108864"], {})).toMatch(/KV_VALUE_MAX .*1 to 1048576/);
    expect(configError(["--memory", "1G", "--value-max", "67108865"], {})).toMatch(/KV_VALUE_MAX .*1 to 67108864/);
  });

  it("treats an empty variable as unset", () => {
    expect(serverConfig([], { PORT: "", KV_SHM_NAME: "" })).toMatchObject({ port: 8000, name: "/shared_memory_kv" });
  });

  it("answers help", () => {
    expect(serverConfig(["--help"], { PORT: "bad" })).toBe("help");
  });

  it.each([
    ["PORT", "http", /PORT .*0 to 65535.*"http"/],
    ["PORT", "65536", /PORT/],
    ["PORT", "-1", /PORT/],
    ["PORT", "80.5", /PORT/],
    ["HOST", " ", /HOST must not be empty/],
    ["KV_SHM_NAME", "no-slash", /KV_SHM_NAME .*"no-slash"/],
    ["KV_SHM_NAME", "/a/b", /KV_SHM_NAME/],
    ["KV_SHM_NAME", "/", /KV_SHM_NAME/],
    ["KV_SHM_NAME", `/${"n".repeat(255)}`, /KV_SHM_NAME/],
    ["KV_SHM_NAME", "/two\nlines", /KV_SHM_NAME .*no control character.*"\/two\\nlines"/],
    ["KV_SHM_NAME", "/\x1b[2Jcleared", /KV_SHM_NAME .*no control character/],
    ["KV_SHM_NAME", "/del\x7f", /KV_SHM_NAME/],
    ["KV_SHM_MODE", "0666", /KV_SHM_MODE .*0666 lets every user write the segment.*--trust-segment-owner/],
    ["KV_SHM_MODE", "0602", /KV_SHM_MODE .*0602/],
    ["KV_TRUST_SEGMENT_OWNER", "perhaps", /KV_TRUST_SEGMENT_OWNER must be 1 or 0/],
    ["KV_ALLOWED_HOSTS", "kv:8000", /KV_ALLOWED_HOSTS .*without a port.*"kv:8000"/],
    ["KV_ALLOWED_HOSTS", "a b", /KV_ALLOWED_HOSTS/],
    ["KV_ALLOWED_HOSTS", "kv,*", /KV_ALLOWED_HOSTS/],
    ["KV_ALLOWED_HOSTS", " , ", /KV_ALLOWED_HOSTS/],
    ["KV_MAX_ENTRIES", "0", /KV_MAX_ENTRIES .*1 to 16777216/],
    ["KV_MAX_ENTRIES", "lots", /KV_MAX_ENTRIES/],
    ["KV_KEY_MAX", "4097", /KV_KEY_MAX .*1 to 4096/],
    ["KV_VALUE_MAX", "1048577", /KV_VALUE_MAX .*1 to 1048576/],
    ["KV_MEMORY", "4095", /KV_MEMORY \(--memory\) must be a size from 4096 bytes to 32G.*"4095"/],
    ["KV_MEMORY", "33G", /KV_MEMORY/],
    ["KV_MEMORY", "1T", /KV_MEMORY/],
    ["KV_MEMORY", "64 MB", /KV_MEMORY/],
    ["KV_MEMORY", "lots", /KV_MEMORY/],
    ["KV_SHM_MODE", "0800", /KV_SHM_MODE .*octal/],
    ["KV_SHM_MODE", "0", /KV_SHM_MODE/],
    ["KV_SHM_MODE", "rw-rw----", /KV_SHM_MODE/],
    ["KV_MAX_BODY", "0", /KV_MAX_BODY/],
    ["KV_LOG_REQUESTS", "maybe", /KV_LOG_REQUESTS must be 1 or 0/],
    ["KV_IDLE_TIMEOUT", "0", /KV_IDLE_TIMEOUT .*1 to 255/],
    ["KV_IDLE_TIMEOUT", "256", /KV_IDLE_TIMEOUT/],
    ["KV_EVICT", "LRU", /^KV_EVICT \(--evict\) must be none or lru, not "LRU"$/],
    ["KV_EVICT", "fifo", /KV_EVICT/],
  ])("refuses %s=%p with a message naming the setting", (variable, value, message) => {
    expect(configError([], { [variable]: value })).toMatch(message);
  });

  it("refuses eviction (lru) on a replica, from the flag or the variable; none goes", () => {
    const refusal = /^KV_EVICT \(--evict\) lru cannot go with --replicate \(KV_REPLICATE\): Redis holds the namespace/;
    expect(configError(["--replicate", "redis://127.0.0.1:6379", "--evict", "lru"], {})).toMatch(refusal);
    expect(configError([], { KV_REPLICATE: "redis://127.0.0.1:6379", KV_EVICT: "lru" })).toMatch(refusal);
    const none = serverConfig(["--replicate", "redis://127.0.0.1:6379", "--evict", "none"], {});
    expect(none !== "help" && [none.create.evict, none.replicate?.namespace]).toEqual(["none", "shared_memory_kv"]);
  });

  it("takes a mode that lets others write only with --trust-segment-owner", () => {
    const trusted = [
      serverConfig(["--trust-segment-owner"], { KV_SHM_MODE: "0666" }),
      serverConfig([], { KV_SHM_MODE: "0666", KV_TRUST_SEGMENT_OWNER: "1" }),
    ];
    expect(trusted.map((config) => config !== "help" && config.create.mode)).toEqual([0o666, 0o666]);
  });

  it("refuses a token with a space or a control character, without showing it", () => {
    for (const token of ["two words", "tab\there"]) {
      const message = configError([], { KV_API_TOKEN: token });
      expect({ message, shown: message.includes(token) }).toEqual({
        message: "KV_API_TOKEN (--token-file) must be visible ASCII characters, with no spaces (the value is not shown)",
        shown: false,
      });
    }
  });

  it("names a token file it cannot read", () => {
    expect(configError(["--token-file", "/nonexistent/token"], {})).toMatch(/^--token-file: cannot read \/nonexistent\/token: /);
  });

  it("refuses an unknown flag, a flag without its value, and an argument", () => {
    expect(configError(["--bogus"], {})).toMatch(/bogus/);
    expect(configError(["--port"], {})).toMatch(/port/);
    expect(configError(["extra"], {})).toMatch(/extra/);
  });
});
