/** What a call throws, for tests of the errors the binding raises. */
import { expect } from "bun:test";
import { KvError } from "../../src/errors.ts";

/** The KvError a call throws (fails the test when it throws nothing or something else). */
export function errorOf(fn: () => unknown): KvError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(KvError);
    return e as KvError;
  }
  throw new Error("expected a KvError, nothing was thrown");
}
