/** The one module that loads the C library: its symbol table and where it is found. */
import { dlopen, FFIType, type Pointer } from "bun:ffi";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { KvError } from "./errors.ts";

const { ptr, i32, u32, u64, i64, void: none, cstring } = FFIType;
const usize = u64; // size_t on the 64-bit Linux hosts we support

const symbols = {
  kv_open: { args: [ptr, i32, ptr, ptr], returns: i32 },
  kv_close: { args: [ptr], returns: none },
  kv_unlink: { args: [ptr], returns: i32 },
  kv_resize: { args: [ptr, ptr], returns: i32 },
  kv_set_if_ttl: { args: [ptr, ptr, usize, ptr, usize, u64, u64, ptr], returns: i32 },
  kv_get_meta: { args: [ptr, ptr, usize, ptr, usize, ptr], returns: i32 },
  kv_incr_ttl: { args: [ptr, ptr, usize, i64, u64, ptr, ptr], returns: i32 },
  kv_delete_if: { args: [ptr, ptr, usize, u64, ptr], returns: i32 },
  kv_set_readonly: { args: [ptr, i32], returns: i32 },
  kv_readonly: { args: [ptr], returns: i32 },
  kv_apply: { args: [ptr, i32, ptr, usize, ptr, usize, u64, i64, u64], returns: i32 },
  kv_expire: { args: [ptr, u32], returns: i32 },
  kv_check: { args: [ptr], returns: i32 },
  kv_check_detail: { args: [ptr], returns: cstring },
  kv_set_lock_timeout: { args: [ptr, i32], returns: none },
  kv_repair: { args: [ptr], returns: i32 },
  kv_lock_held_ms: { args: [ptr], returns: FFIType.u64_fast },
  kv_copy_cell: { args: [ptr, u32, ptr], returns: u32 },
  kv_touch: { args: [ptr, u32], returns: none },
  kv_read_cell: { args: [ptr, u32, ptr], returns: i32 },
  kv_strerror: { args: [i32], returns: cstring },
  kv_base: { args: [ptr], returns: ptr },
  kv_map_size: { args: [ptr], returns: usize },
  kv_max_entries: { args: [ptr], returns: u32 },
  kv_key_max: { args: [ptr], returns: u32 },
  kv_value_max: { args: [ptr], returns: u32 },
  kv_memory_bytes: { args: [ptr], returns: FFIType.u64_fast },
  kv_memory_used: { args: [ptr], returns: FFIType.u64_fast },
  kv_hash: { args: [ptr, usize], returns: u32 },
} as const;

export type KvLib = ReturnType<typeof dlopen<typeof symbols>>["symbols"];
export type { Pointer };

export const LIBRARY_FILE = "libshared_memory_kv.so";
const buildDir = join(import.meta.dir, "..", "build");
let embeddedPath: string | undefined;
let lib: KvLib | undefined;

/** A compiled binary registers the copy of the library it carries (see src/cli.ts). */
export function setEmbeddedLibraryPath(path: string): void {
  embeddedPath = path;
}

/** Where the library is loaded from: $KV_LIB_PATH, else the embedded copy, else build/. */
export function libraryPath(): string {
  return process.env.KV_LIB_PATH || embeddedPath || join(buildDir, LIBRARY_FILE);
}

/** The library's symbols, loaded on first use. */
export function kvLib(): KvLib {
  if (lib) return lib;
  const path = libraryPath();
  if (!existsSync(path)) {
    throw new KvError(
      "LIBRARY_MISSING",
      `shmkv: the C library is missing at ${path}: run \`make libso\` (or set KV_LIB_PATH)`,
    );
  }
  try {
    lib = dlopen(path, symbols).symbols;
  } catch (e) {
    throw new KvError("LIBRARY_MISSING", `shmkv: cannot load ${path}: ${(e as Error).message}`);
  }
  return lib;
}
