/**
 * A binary from `bun build --compile` carries the C library inside itself, where dlopen cannot reach
 * it: copy it into a private folder under TMPDIR (reused while its content is the same) and tell the
 * binding to load that copy.
 */
import { randomUUID } from "node:crypto";
import { lstatSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setEmbeddedLibraryPath } from "../ffi.ts";

export class EmbeddedLibraryError extends Error {
  override readonly name = "EmbeddedLibraryError";
}

/** Files embedded in a compiled binary live under this virtual root. */
const EMBEDDED_ROOT = "/$bunfs/";

/** When `embedded` is inside this binary and KV_LIB_PATH is unset, extract it and use the copy. */
export function useEmbeddedLibrary(embedded: string, env: Record<string, string | undefined>): void {
  if (env.KV_LIB_PATH || !embedded.startsWith(EMBEDDED_ROOT)) return;
  const dir = tmpdir();
  try {
    setEmbeddedLibraryPath(extract(embedded, dir));
  } catch (error) {
    throw new EmbeddedLibraryError(
      `cannot extract the embedded C library into TMPDIR (${dir}): ${(error as Error).message}. ` +
        "Set TMPDIR to a writable folder, or KV_LIB_PATH to a copy of libshared_memory_kv.so.",
    );
  }
}

function extract(embedded: string, dir: string): string {
  const bytes = readFileSync(embedded);
  const folder = privateFolder(join(dir, `shmkv-${process.getuid?.() ?? "user"}`));
  const target = join(folder, `libshared_memory_kv-${Bun.hash(bytes).toString(16)}.so`);
  if (sameContent(target, bytes)) return target;
  const partial = `${target}.${randomUUID()}.tmp`;
  writeFileSync(partial, bytes, { mode: 0o700 });
  renameSync(partial, target); // atomic: a concurrent run sees the old file or the whole new one
  return target;
}

/** `path` as a folder only its owner (this user) can enter, made when missing (TMPDIR must exist). */
function privateFolder(path: string): string {
  try {
    mkdirSync(path, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
  const stat = lstatSync(path);
  const mine = process.getuid === undefined || stat.uid === process.getuid();
  if (!stat.isDirectory() || !mine || (stat.mode & 0o077) !== 0) {
    throw new Error(`${path} is not a folder that only this user can use`);
  }
  return path;
}

function sameContent(path: string, bytes: Buffer): boolean {
  try {
    return readFileSync(path).equals(bytes);
  } catch {
    return false;
  }
}
