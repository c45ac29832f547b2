/**
 * Request bodies: the size limit, enforced before a body is read, and the one way a body is read
 * (JSON, in UTF-8). Every refusal is an ApiError, so a JSON answer.
 */
import { isUtf8 } from "node:buffer";
import type { Static, TSchema } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { ValidationError } from "elysia";
import { ApiError } from "./errors.ts";

/** The deepest a body may nest arrays and objects: the API's bodies are flat objects. */
export const MAX_JSON_DEPTH = 32;

// Validating first (isUtf8) and then decoding leniently is cheaper than a fatal decoder, which
// must check as it decodes; `BENCH_ONLY=http make bench` (POST /set) prices the whole read.
const utf8 = new TextDecoder("utf-8");
const [QUOTE, BACKSLASH, OPEN_ARRAY, CLOSE_ARRAY, OPEN_OBJECT, CLOSE_OBJECT] = [..."\"\\[]{}"].map((c) => c.charCodeAt(0));

function tooLarge(limit: number): ApiError {
  return new ApiError("BODY_TOO_LARGE", `the request body is larger than ${limit} bytes`);
}

/**
 * A gate of createApp's request hook, so for every route: a body that declares a length over
 * `limit` is refused before routing, unread (and its connection closed: see errors.ts).
 */
export function refuseLargeBodies(limit: number) {
  return (request: Request): void => {
    // Bun gives a GET or HEAD request no body, whatever it declares: they pass without a look at
    // their headers, which makes Bun build them (the GET routes never read them). Told by the method,
    // not by request.body: a look at that makes Bun build a stream for the body (see bodyReader).
    const { method } = request;
    if (method === "GET" || method === "HEAD") return;
    const declared = request.headers.get("content-length");
    if (declared !== null && Number(declared) > limit) throw tooLarge(limit);
  };
}

/**
 * A reader of a route's JSON body, held to `schema`. The body must say it is JSON (application/json
 * or a +json type: any other type, or none, is 415, for a browser sends those cross-site without
 * asking first); be at most `limit` bytes, counted as it is read (a chunked body declares no
 * length); be valid UTF-8; nest at most MAX_JSON_DEPTH deep; and parse. Of duplicate keys, the last
 * wins. Each refusal is an ApiError, but a value that does not match `schema`: that is Elysia's
 * ValidationError, a 400 as Elysia's own body check gives.
 *
 * Routes read their body with it in the handler and tell Elysia `parse: "none"`. Elysia's own parse
 * step looks at `request.body` before any parser, and that makes Bun build a ReadableStream for a
 * body it already holds whole (bench/bun-floor.ts prices it). The route's `body` schema is still
 * declared, for its OpenAPI document and Eden's types.
 */
export function bodyReader<T extends TSchema>(schema: T, limit: number): (request: Request) => Promise<Static<T>> {
  const check = TypeCompiler.Compile(schema);
  const checked = (bytes: Uint8Array): Static<T> => {
    const value = parse(bytes);
    if (!check.Check(value)) throw new ValidationError("body", check, value);
    return value;
  };
  // Not async: a body costs one promise (its read) and one callback. As async functions awaiting
  // each other, this took a few promises and microtask turns more on every request.
  return (request) => {
    const type = request.headers.get("content-type");
    if (!isJson(type)) {
      const sent = type === null ? "none" : JSON.stringify(type);
      return Promise.reject(new ApiError("UNSUPPORTED_MEDIA_TYPE", `the body must be JSON, sent with Content-Type: application/json (got ${sent})`));
    }
    // A declared length was held to the limit before routing (refuseLargeBodies), and the body
    // cannot run past it: read it whole. Only a chunked body needs counting as it arrives.
    const bytes = request.headers.get("content-length") !== null ? request.bytes() : readChunked(request, limit);
    return bytes.then(checked);
  };
}

function isJson(type: string | null): boolean {
  if (type === "application/json") return true; // what nearly every client sends
  const essence = type?.split(";", 1)[0]!.trim().toLowerCase() ?? "";
  return essence === "application/json" || (essence.startsWith("application/") && essence.endsWith("+json"));
}

async function readChunked(request: Request, limit: number): Promise<Uint8Array> {
  if (!request.body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of request.body) {
    total += chunk.byteLength;
    if (total > limit) throw tooLarge(limit);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function parse(bytes: Uint8Array): unknown {
  const text = decode(bytes);
  if (nestsDeeper(text, MAX_JSON_DEPTH)) {
    throw new ApiError("BAD_REQUEST", `the body nests arrays and objects more than ${MAX_JSON_DEPTH} deep`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError("BAD_REQUEST", "the body is not valid JSON");
  }
}

function decode(bytes: Uint8Array): string {
  if (!isUtf8(bytes)) throw new ApiError("BAD_REQUEST", "the body is not valid UTF-8");
  return utf8.decode(bytes);
}

/**
 * Whether JSON text nests arrays and objects deeper than `max` (exact for valid JSON; whatever it
 * says of invalid text, JSON.parse refuses it next). Checked before parsing: a deep enough value
 * parses, but then exhausts the stack of whatever walks it.
 */
export function nestsDeeper(text: string, max: number): boolean {
  if (openings(text, max) <= max) return false; // nearly every body: it has too few brackets to nest
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) inString = true;
    else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > max) return true;
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) depth--;
  }
  return false;
}

/**
 * How many "[" and "{" the text holds, strings included, counting each no further than max + 1: a
 * bound on its depth. Found by indexOf (native), it costs a fraction of the exact walk above for a
 * typical body, which then need not be walked at all.
 */
function openings(text: string, max: number): number {
  return occurrences(text, "[", max + 1) + occurrences(text, "{", max + 1);
}

function occurrences(text: string, search: string, limit: number): number {
  let count = 0;
  for (let i = text.indexOf(search); i >= 0 && count < limit; i = text.indexOf(search, i + 1)) count++;
  return count;
}
