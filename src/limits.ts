/**
 * The facts of csrc/shared_memory_kv.h that the TypeScript side needs, each stated once here
 * (the return codes are in errors.ts). test/header.test.ts parses the header and checks every one.
 */

/** KV_DEFAULT_*: the geometry and mode of a new segment when none is given (the seed's table). */
export const DEFAULTS = { maxEntries: 10, keyMax: 63, valueMax: 255, mode: 0o600 } as const;

/**
 * KV_LIMIT_*: the largest geometry a new segment accepts; a mode has at most the bits 0777. A
 * segment with memoryBytes (memoryMin..memory) takes values up to valueMaxMemory.
 */
export const LIMITS = {
  maxEntries: 2 ** 24,
  keyMax: 4096,
  valueMax: 2 ** 20,
  valueMaxMemory: 2 ** 26,
  memoryMin: 4096,
  memory: 2 ** 35,
  mode: 0o777,
} as const;

/** KV_READ_SPINS: lock-free attempts a read makes while writes overlap it, before it takes the lock. */
export const READ_ATTEMPTS = 64;

/** KV_NAME_MAX: the longest segment name in bytes, its leading "/" included. */
export const NAME_MAX = 255;

/** What no segment name holds (the library refuses them too): NUL and every other control character. */
export const CONTROL_CHARACTER = /[\x00-\x1f\x7f]/;

/** What is wrong with `name` as a segment name ("/" and 1..254 bytes, no other "/", no control character), or undefined. */
export function nameProblem(name: string): string | undefined {
  const rest = name.slice(1);
  const bytes = Buffer.byteLength(rest);
  if (name.startsWith("/") && bytes >= 1 && bytes < NAME_MAX && !rest.includes("/") && !CONTROL_CHARACTER.test(rest)) return undefined;
  return `must be "/" followed by 1 to ${NAME_MAX - 1} bytes with no other "/" and no control character, not ${JSON.stringify(name)}`;
}
