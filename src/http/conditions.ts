/**
 * Revisions over HTTP: an entry's revision is its ETag ("7"); If-Match and If-None-Match make a set
 * or a delete conditional on it (compare-and-set), and a condition that does not hold is a 412.
 */
import { KvConflictError } from "../errors.ts";
import type { KvStore } from "../store.ts";
import { ApiError } from "./errors.ts";
import { unixSeconds } from "./expiry.ts";
import type { Revisioned } from "./service.ts";

/**
 * What a write requires of the entry: a revision (0: that it does not exist), "exists", or nothing
 * (undefined).
 */
export type Condition = number | "exists" | undefined;

export function etag(revision: number): string {
  return `"${revision}"`;
}

/**
 * The init of the Responses of one kind that carry an entry's headers (its revision as ETag, when it
 * expires as X-Expires-At): one object, filled again for each Response. The Fetch standard has a
 * Response copy the headers it is made with, and Bun charges less for that copy than for headers set
 * on the Response's own afterwards (`BENCH_ONLY=http make bench`, GET /get/{key}). Elysia checks no
 * response schema against a Response: the body's type is the check.
 */
function entryInit(init: { status?: number; headers?: Record<string, string> }) {
  const headers = new Headers(init.headers);
  const filled = { ...init, headers };
  return (revision: number, expiresAt: number | undefined): ResponseInit => {
    headers.set("etag", etag(revision));
    if (expiresAt === undefined) headers.delete("x-expires-at");
    else headers.set("x-expires-at", String(unixSeconds(expiresAt)));
    return filled;
  };
}
const jsonInit = entryInit({ headers: { "content-type": "application/json;charset=utf-8" } });
const bytesInit = entryInit({ headers: { "content-type": "application/octet-stream" } });
/** The 304 of a GET whose If-None-Match names the entry's revision: no body, its headers again. */
const notModifiedInit = entryInit({ status: 304 });

/** `body` as JSON, with `revision` as its ETag and, when given, `expiresAt` (ms) as X-Expires-At. */
export function withEtag<T>(body: T, revision: number, expiresAt?: number): Response {
  return Response.json(body, jsonInit(revision, expiresAt));
}

/** JSON text written by the caller, with `revision` as its ETag. */
export function jsonTextWithEtag(text: string, revision: number): Response {
  return new Response(text, jsonInit(revision, undefined));
}

/**
 * Whether a GET's If-None-Match names `revision`: "*", or a list of tags, weak ones (W/"7") compared
 * as strong, as RFC 9110 has a GET compare them.
 */
export function namesRevision(ifNoneMatch: string, revision: number): boolean {
  const wanted = etag(revision);
  return ifNoneMatch.split(",").some((tag) => {
    const t = tag.trim();
    return t === "*" || t === wanted || t === `W/${wanted}`;
  });
}

/**
 * A read's answer: 304 when the client has this revision already (If-None-Match), else `answer`'s.
 * The 304 carries the headers the answer would have, X-Expires-At too.
 */
export function unlessNotModified<T>(
  ifNoneMatch: string | null,
  { body, revision, expiresAt }: Revisioned<T>,
  answer: (body: T, revision: number, expiresAt?: number) => Response,
): Response {
  if (ifNoneMatch !== null && namesRevision(ifNoneMatch, revision)) return new Response(null, notModifiedInit(revision, expiresAt));
  return answer(body, revision, expiresAt);
}

/** A value as its bytes (GET ?raw), with its revision as ETag and when it expires. */
export function bytesWithEtag(bytes: Uint8Array, revision: number, expiresAt?: number): Response {
  return new Response(bytes, bytesInit(revision, expiresAt));
}

const ENTITY_TAG = /^"(\d{1,15})"$/;

/** The condition a request's If-Match or If-None-Match states; BAD_REQUEST for a malformed or unsupported one. */
export function conditionOf(headers: Headers): Condition {
  const ifMatch = headers.get("if-match")?.trim();
  const ifNoneMatch = headers.get("if-none-match")?.trim();
  if (ifMatch !== undefined && ifNoneMatch !== undefined) {
    throw new ApiError("BAD_REQUEST", "send If-Match or If-None-Match, not both");
  }
  if (ifNoneMatch !== undefined) {
    if (ifNoneMatch !== "*") throw new ApiError("BAD_REQUEST", 'If-None-Match on a write must be * (create only)');
    return 0;
  }
  if (ifMatch === undefined) return undefined;
  if (ifMatch === "*") return "exists";
  const revision = Number(ENTITY_TAG.exec(ifMatch)?.[1] ?? 0);
  if (revision < 1) throw new ApiError("BAD_REQUEST", 'If-Match must be * or one revision as its ETag gives it, such as "7"');
  return revision;
}

/**
 * Set `key` when `condition` holds, to expire after `ttlMs` when given; returns the new revision, or
 * throws PRECONDITION_FAILED.
 */
export function setIf(store: KvStore, key: string, value: string, condition: Condition, ttlMs?: number): number {
  const options = ttlMs === undefined ? undefined : { ttl: ttlMs };
  if (condition !== "exists") {
    try {
      return condition === undefined ? store.set(key, value, options) : store.setIf(key, value, condition, options);
    } catch (error) {
      throw error instanceof KvConflictError ? failed(key, error.revision) : error;
    }
  }
  // Compare-and-set on the revision it has; again when another write came in between.
  let revision = store.getEntry(key)?.revision ?? 0;
  for (;;) {
    if (revision === 0) throw failed(key, 0);
    try {
      return store.setIf(key, value, revision, options);
    } catch (error) {
      if (!(error instanceof KvConflictError)) throw error;
      revision = error.revision;
    }
  }
}

/**
 * Delete `key` when `condition` holds. Returns false when there was nothing to delete and nothing
 * was required of it (no condition, or If-None-Match); throws PRECONDITION_FAILED when it fails.
 */
export function deleteIf(store: KvStore, key: string, condition: Condition): boolean {
  try {
    if (condition === undefined) return store.delete(key);
    if (condition === 0) return store.deleteIf(key, 0);
    if (condition === "exists" ? store.delete(key) : store.deleteIf(key, condition)) return true;
    throw failed(key, 0);
  } catch (error) {
    throw error instanceof KvConflictError ? failed(key, error.revision) : error;
  }
}

/** The PRECONDITION_FAILED of a write on `key`, which is at `revision` (0: absent). */
export function failed(key: string, revision: number): ApiError {
  const now = revision === 0 ? "does not exist" : `is at revision ${revision}`;
  return new ApiError("PRECONDITION_FAILED", `Key '${key}' ${now}: the condition does not hold`, { revision });
}
