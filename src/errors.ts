import { constants } from "node:os";

/** Stable error codes: the library's own, the binding's, or the errno name of a system failure. */
export type KvErrorCode =
  | "NOT_FOUND"
  | "KEY_TOO_LONG"
  | "VALUE_TOO_LONG"
  | "TABLE_FULL"
  | "INVALID_ARGUMENT"
  | "INCOMPATIBLE"
  | "BUFFER_TOO_SMALL"
  | "NOT_READY"
  | "CORRUPT"
  | "CONFLICT"
  | "EXPIRED"
  | "STORE_BUSY"
  | "UNTRUSTED"
  | "READ_ONLY"
  | "NOT_A_NUMBER"
  | "CLOSED"
  | "LIBRARY_MISSING"
  | `E${string}`;

/**
 * The C library's return codes (csrc/shared_memory_kv.h), by the code the binding reports.
 * test/header.test.ts checks that this lists every code the header defines, and no other.
 */
export const RC = {
  NOT_FOUND: -31000,
  KEY_TOO_LONG: -30999,
  VALUE_TOO_LONG: -30998,
  TABLE_FULL: -30997,
  INVALID_ARGUMENT: -30996,
  INCOMPATIBLE: -30995,
  BUFFER_TOO_SMALL: -30994,
  NOT_READY: -30993,
  CORRUPT: -30992,
  CONFLICT: -30991,
  EXPIRED: -30990,
  STORE_BUSY: -30989,
  UNTRUSTED: -30987,
  READ_ONLY: -30988,
  NOT_A_NUMBER: -30986,
} as const;

const codeByRc = new Map<number, KvErrorCode>(
  Object.entries(RC).map(([code, rc]) => [rc, code as KvErrorCode]),
);
const errnoName = new Map<number, string>(
  Object.entries(constants.errno).map(([name, n]) => [n, name]),
);

/** What C return code `rc` is called: "TABLE_FULL", "EACCES", ... */
export function codeOf(rc: number): KvErrorCode {
  return codeByRc.get(rc) ?? `E${(errnoName.get(-rc) ?? `RRNO${-rc}`).slice(1)}`;
}

/** Every failure of the binding. `code` is stable and meant for programs; `message` for people. */
export class KvError extends Error {
  override readonly name = "KvError";

  constructor(
    readonly code: KvErrorCode,
    message: string,
    /** The C return code behind the error, or 0 when the binding raised it itself. */
    readonly rc = 0,
  ) {
    super(message);
  }
}

/** A conditional write (setIf, deleteIf) found the entry at another revision; nothing was written. */
export class KvConflictError extends KvError {
  constructor(
    message: string,
    /** The entry's revision when the write was tried: 0 when it was absent. */
    readonly revision: number,
  ) {
    super("CONFLICT", message, RC.CONFLICT);
  }
}
