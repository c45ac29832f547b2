/** Failures of the HTTP layer, and the one mapping from any failure to an HTTP status and body. */
import { ValidationError } from "elysia";
import { KvError, type KvErrorCode } from "../errors.ts";
import type { ErrorResponse } from "./models.ts";

/** Codes the HTTP layer raises itself, next to the store's own KvErrorCodes. */
export type ApiErrorCode =
  | "BAD_REQUEST"
  | "BODY_TOO_LARGE"
  | "METHOD_NOT_ALLOWED"
  | "MISDIRECTED_REQUEST"
  | "NOT_UTF8"
  | "PRECONDITION_FAILED"
  | "REPLICA_UNAVAILABLE"
  | "STORE_UNAVAILABLE"
  | "UNAUTHORIZED"
  | "UNSUPPORTED_MEDIA_TYPE";

/** A failure the service or a hook raises on purpose; never seen by clients as anything but JSON. */
export class ApiError extends Error {
  override readonly name = "ApiError";

  constructor(
    readonly code: ApiErrorCode | KvErrorCode,
    message: string,
    /** More fields for the body, after detail and code (a 412's current revision). */
    readonly fields?: Record<string, number>,
    /** Headers of this answer, in place of those of its code (a 405's Allow). */
    readonly headers?: Record<string, string>,
  ) {
    super(message);
  }
}

/** The status of each code a request can meet (failures to open the store become STORE_UNAVAILABLE). */
const statusByCode: Partial<Record<ApiErrorCode | KvErrorCode, number>> = {
  INVALID_ARGUMENT: 400,
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  READ_ONLY: 403, // a replica's segment, served without --replicate
  NOT_FOUND: 404,
  NOT_A_NUMBER: 409, // POST /incr of a value that is no integer
  ERANGE: 409, // POST /incr whose sum would leave int64
  METHOD_NOT_ALLOWED: 405,
  NOT_UTF8: 406, // the JSON answer cannot carry the value: ?raw can
  PRECONDITION_FAILED: 412,
  MISDIRECTED_REQUEST: 421,
  BODY_TOO_LARGE: 413,
  KEY_TOO_LONG: 413,
  VALUE_TOO_LONG: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  TABLE_FULL: 507,
  STORE_UNAVAILABLE: 503,
  STORE_BUSY: 503,
  REPLICA_UNAVAILABLE: 503,
  CLOSED: 503, // a request that raced the server's shutdown
};

/**
 * Headers that go with some codes: how to authenticate; after a body refused unread, that the
 * connection closes (else Bun would read the rest of the body before the next request); and when to
 * try a busy store again.
 */
const headersByCode: Partial<Record<ApiErrorCode | KvErrorCode, Record<string, string>>> = {
  UNAUTHORIZED: { "www-authenticate": "Bearer" },
  BODY_TOO_LARGE: { connection: "close" },
  STORE_BUSY: { "retry-after": "1" },
  REPLICA_UNAVAILABLE: { "retry-after": "1" },
};

interface HttpFailure {
  status: number;
  body: ErrorResponse & Record<string, unknown>;
  /** True for a 500: the cause is not told to the client, so the caller should log it. */
  internal: boolean;
  headers?: Record<string, string>;
}

/**
 * What the client is told about `error`, given Elysia's `code` for it. Store errors keep their code;
 * Elysia's own failures (schema violations, unknown routes) become 400 and 404; anything else is a
 * 500.
 */
export function toHttpFailure(code: string | number, error: unknown): HttpFailure {
  if (error instanceof ApiError || error instanceof KvError) {
    const status = statusByCode[error.code];
    const { fields, headers } = error instanceof ApiError ? error : {};
    if (status) {
      const body = { detail: error.message, code: error.code, ...fields };
      return { status, body, internal: false, headers: headers ?? headersByCode[error.code] };
    }
  }
  if (error instanceof ValidationError && error.type !== "response") {
    return { status: 400, body: { detail: describeValidation(error), code: "BAD_REQUEST" }, internal: false };
  }
  if (code === "NOT_FOUND") {
    return { status: 404, body: { detail: "no such route", code: "ROUTE_NOT_FOUND" }, internal: false };
  }
  return { status: 500, body: { detail: "internal server error", code: "INTERNAL" }, internal: true };
}

/**
 * Thrown by a handler that must answer at once (Elysia checks its answer against the route's schema
 * without awaiting it) when its answer comes later: onError, which Elysia awaits, sends it.
 */
export class AnswerLater extends Error {
  override readonly name = "AnswerLater";

  constructor(readonly answer: Promise<Response>) {
    super("answered later");
  }
}

/** `answer` now, or, when it is a promise, an AnswerLater thrown for onError to await. */
export function atOnce(answer: Response | Promise<Response>): Response {
  if (answer instanceof Promise) throw new AnswerLater(answer);
  return answer;
}

/** toHttpFailure as a Response, for an answer that fails outside Elysia's onError; a 500 is told to `onInternal`. */
export function failureResponse(error: unknown, onInternal: (error: unknown) => void): Response {
  const failure = toHttpFailure("UNKNOWN", error);
  if (failure.internal) onInternal(error);
  return Response.json(failure.body, { status: failure.status, headers: failure.headers });
}

/** The failure of a key in the path that does not decode. */
export const KEY_NOT_DECODED = "the key in the URL is not valid percent-encoded UTF-8";

function describeValidation(error: ValidationError): string {
  // The router always yields a non-empty key; the only way it fails is a key that does not decode.
  if (error.type === "params") return KEY_NOT_DECODED;
  if (typeof error.customError === "string") return error.customError; // a schema's own `error` message
  // A schema without one (every model has one where a client can go wrong): still a sentence.
  const where = error.valueError?.path.replace(/^\//, "").replaceAll("/", ".");
  return `the request's ${error.type}${where ? ` field ${where}` : ""} is not valid`;
}
