/** The one mapping from failures to HTTP statuses and {detail, code} bodies. */
import { describe, expect, it } from "bun:test";
import { KvError } from "../../src/errors.ts";
import { ApiError, toHttpFailure } from "../../src/http/errors.ts";

describe("toHttpFailure", () => {
  it.each([
    ["NOT_FOUND", 404],
    ["KEY_TOO_LONG", 413],
    ["VALUE_TOO_LONG", 413],
    ["TABLE_FULL", 507],
    ["INVALID_ARGUMENT", 400],
    ["CLOSED", 503],
  ] as const)("maps the store's %s to %d with its message", (code, status) => {
    expect(toHttpFailure("UNKNOWN", new KvError(code, "what happened"))).toEqual({
      status,
      body: { detail: "what happened", code },
      internal: false,
    });
  });

  it("maps the HTTP layer's own errors", () => {
    expect(toHttpFailure("UNKNOWN", new ApiError("STORE_UNAVAILABLE", "why"))).toEqual({
      status: 503,
      body: { detail: "why", code: "STORE_UNAVAILABLE" },
      internal: false,
    });
  });

  it("asks for a bearer token with a 401", () => {
    expect(toHttpFailure("UNKNOWN", new ApiError("UNAUTHORIZED", "no token"))).toEqual({
      status: 401,
      body: { detail: "no token", code: "UNAUTHORIZED" },
      internal: false,
      headers: { "www-authenticate": "Bearer" },
    });
  });

  it("maps a body that is not JSON to 415", () => {
    expect(toHttpFailure("UNKNOWN", new ApiError("UNSUPPORTED_MEDIA_TYPE", "not JSON"))).toEqual({
      status: 415,
      body: { detail: "not JSON", code: "UNSUPPORTED_MEDIA_TYPE" },
      internal: false,
    });
  });

  it.each([
    ["an unexpected exception", new TypeError("x is undefined")],
    ["a store error with no HTTP meaning", new KvError("CORRUPT", "broken invariant")],
    ["a system error from the store", new KvError("EIO", "input/output error")],
  ])("answers 500 without the cause for %s, and flags it to be logged", (_, error) => {
    expect(toHttpFailure("UNKNOWN", error)).toEqual({
      status: 500,
      body: { detail: "internal server error", code: "INTERNAL" },
      internal: true,
    });
  });
});
