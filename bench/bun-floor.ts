/**
 * What Bun itself charges for two things our API does on its hot routes, with neither Elysia nor
 * the store: a plain Bun.serve handler answering the same request two ways.
 * - GET: a JSON answer as it is; with an ETag header (issue 6's revision), as src/http/conditions.ts
 *   withEtag gives it; and with both the ETag and a look at If-None-Match first, as GET /get/{key}
 *   answers (unlessNotModified): a look at any request header makes Bun build them all.
 * - POST: a JSON body read as the Map app's Elysia reads it (request.json(), after a look at
 *   request.body, which Elysia takes before it parses any body), and as ours reads it: by our
 *   strict reader (src/http/body.ts bodyReader: UTF-8 checked, nesting bounded), with no such look.
 * Each pair's ratio is a ceiling on what our server can reach against the Map app on that route.
 */
import { routedPath } from "../src/http/auth.ts";
import { bodyReader } from "../src/http/body.ts";
import { unlessNotModified, withEtag } from "../src/http/conditions.ts";
import { SetBody } from "../src/http/models.ts";
import { valueOf } from "./measure.ts";

const entry = { key: "key-1", value: valueOf(1) };
const written = { success: true, message: "Key 'key-1' set successfully" };
const strict = bodyReader(SetBody, 64 * 1024);

/** Each path, the answer it gives, and the path it is compared with (none for a baseline). */
export const FLOOR_PATHS = {
  "get/plain": { label: "GET, a JSON answer", versus: undefined },
  "get/etag": { label: "GET, the same with an ETag header", versus: "get/plain" },
  "get/conditional": { label: "GET, the same with an ETag, after a look at If-None-Match", versus: "get/plain" },
  "set/json": { label: "POST, the body read by request.json() after a look at request.body", versus: undefined },
  "set/strict": { label: "POST, the body read by our strict reader", versus: "set/json" },
} as const;
export type FloorPath = keyof typeof FLOOR_PATHS;

let revision = 0;

export function floorHandler(request: Request): Response | Promise<Response> {
  const path = routedPath(request.url);
  if (path === "/get/plain") return Response.json(entry);
  if (path === "/get/etag") return withEtag(entry, ++revision);
  if (path === "/get/conditional") return unlessNotModified(request.headers.get("if-none-match"), { body: entry, revision: ++revision }, withEtag);
  if (path === "/set/json") return request.body ? answered(request.json()) : refused();
  if (path === "/set/strict") return answered(strict(request));
  return new Response("not found", { status: 404 });
}

function answered(read: Promise<unknown>): Promise<Response> {
  return read.then(() => Response.json(written), refused);
}

function refused(): Response {
  return new Response("a JSON body is required", { status: 400 });
}
