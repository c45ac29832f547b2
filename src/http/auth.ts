/**
 * Access with a token (KV_API_TOKEN): every path but the public ones needs `Authorization: Bearer
 * <token>`. Deny by default: a path is public only when listed here, so a new route is covered without
 * doing anything. A presented token is compared as a SHA-256 digest with timingSafeEqual, so the time
 * taken says nothing of how much of a guess is right, nor of the token's length.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { DOCS_PATHS } from "./docs.ts";
import { ApiError } from "./errors.ts";

/**
 * What anyone may ask for: what the server is, whether it is up, the API's documentation, and the
 * live page (it holds no data: it asks for the token and sends it with each of its requests).
 */
export const PUBLIC_PATHS: ReadonlySet<string> = new Set(["/", "/health", "/ui", ...DOCS_PATHS]);

const sha256 = (text: string) => createHash("sha256").update(text).digest();

/** A gate of createApp's request hook: a request for a path that is not public, without the token, gets 401. */
export function requireToken(token: string | undefined) {
  const expected = token === undefined ? undefined : sha256(token);
  return (request: Request): void => {
    if (!expected || PUBLIC_PATHS.has(routedPath(request.url))) return;
    const presented = bearerToken(request.headers.get("authorization"));
    if (presented === undefined) {
      throw new ApiError("UNAUTHORIZED", "this route needs the API token: send Authorization: Bearer <token>");
    }
    if (!timingSafeEqual(sha256(presented), expected)) throw new ApiError("UNAUTHORIZED", "the API token is not valid");
  };
}

/** The warning to log at start-up when the server listens beyond this machine with no token. */
export function exposureWarning(host: string, token: string | undefined): string | undefined {
  if (token !== undefined || isLoopback(host)) return undefined;
  return (
    `warning: listening on ${host}, which other machines may reach, with no KV_API_TOKEN: anyone who can ` +
    "connect can read and write the store (set KV_API_TOKEN, or listen on 127.0.0.1)"
  );
}

/** Whether a listening address is reachable from this machine only. */
export function isLoopback(host: string): boolean {
  const address = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  return address === "localhost" || address === "::1" || /^(::ffff:)?127(\.\d{1,3}){3}$/.test(address);
}

/**
 * Where the router starts looking for the path's "/": after "http://", for the host may be one
 * letter (createApp turns off Elysia's standardHostname, which skips 11 characters).
 */
export const PATH_SEARCH_FROM = "http://".length;

/**
 * The path as Elysia's router reads it (from the first "/" after "http://" and the host, to the
 * query), so that what is public here is exactly what the router serves as public.
 */
export function routedPath(url: string): string {
  const start = url.indexOf("/", PATH_SEARCH_FROM);
  const query = url.indexOf("?", start + 1);
  return query < 0 ? url.substring(start) : url.substring(start, query);
}

function bearerToken(header: string | null): string | undefined {
  return header ? /^Bearer +(\S+) *$/i.exec(header)?.[1] : undefined;
}
