import { describe, expect, it } from "bun:test";
import { join } from "node:path";
import { libraryPath } from "../src/ffi.ts";

/** Open a store in a fresh bun process (the library is loaded once per process). */
function openIn(env: Record<string, string>): string {
  const r = Bun.spawnSync([process.execPath, join(import.meta.dir, "fixtures", "open.ts"), "/shmkv-ffi-never-created"], {
    env: { ...process.env, ...env },
  });
  return r.stdout.toString().trim();
}

describe("loading the C library", () => {
  it("finds it in build/ by default", () => {
    expect(libraryPath()).toBe(process.env.KV_LIB_PATH || join(import.meta.dir, "..", "build", "libshared_memory_kv.so"));
  });

  it("takes KV_LIB_PATH first, and says how to fix a missing library", () => {
    expect(openIn({ KV_LIB_PATH: "/nonexistent/libshared_memory_kv.so" })).toBe(
      "LIBRARY_MISSING: shmkv: the C library is missing at /nonexistent/libshared_memory_kv.so: run `make libso` (or set KV_LIB_PATH)",
    );
  });

  it("reports a file that is not a loadable library", () => {
    expect(openIn({ KV_LIB_PATH: join(import.meta.dir, "fixtures", "open.ts") })).toStartWith(
      `LIBRARY_MISSING: shmkv: cannot load ${join(import.meta.dir, "fixtures", "open.ts")}:`,
    );
  });
});
