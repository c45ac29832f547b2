/**
 * createApp: the HTTP API over a store, as an Elysia app that does not listen (src/server.ts does).
 * Routes follow the seed's REST contract; every error is JSON {detail, code}, mapped in one place.
 */
import { Elysia } from "elysia";
import pkg from "../../package.json";
import { KvStore } from "../store.ts";
import { DEFAULT_MAX_BODY_BYTES, limitBody } from "./body.ts";
import { docs } from "./docs.ts";
import { toHttpFailure } from "./errors.ts";
import {
  errorResponse,
  GetResponse,
  HealthResponse,
  IndexResponse,
  KeyParams,
  SetBody,
  StatusResponse,
  SuccessResponse,
} from "./models.ts";
import { KvService } from "./service.ts";
import { StoreSlot } from "./store-slot.ts";

export interface AppOptions {
  /** Largest accepted request body, in bytes (413 above). Default 64 KiB. */
  maxBodyBytes?: number;
  /** Told about failures that became a 500, with their cause. Default: console.error. */
  onInternalError?: (error: unknown) => void;
}

const ENDPOINTS: Record<string, string> = {
  "GET /": "this description",
  "GET /get/{key}": "the value of a key",
  "POST /set": 'insert or replace an entry: JSON {"key": ..., "value": ...}',
  "DELETE /delete/{key}": "remove an entry",
  "GET /status": "version, entry count, capacity and every entry",
  "GET /health": "200 when the store is open, 503 with the reason when not",
  "GET /swagger": "interactive API documentation (OpenAPI document at /swagger/json)",
};

const SLASH = "/".charCodeAt(0);
const unavailable = errorResponse("The store is not available; detail says why.");

export function createApp(store: KvStore | StoreSlot, options: AppOptions = {}) {
  const service = new KvService(store instanceof KvStore ? StoreSlot.of(store) : store);
  const onInternalError = options.onInternalError ?? ((error: unknown) => console.error(error));
  return new Elysia()
    .onRequest(({ request, redirect }) => {
      // Send every "/path/" to "/path" ("/swagger/" too, so the page has one address). A cheap look
      // at the raw URL first: this runs for every request.
      const query = request.url.indexOf("?");
      if (request.url.charCodeAt((query < 0 ? request.url.length : query) - 1) !== SLASH) return;
      const url = new URL(request.url);
      if (url.pathname.length > 1) return redirect(`${url.pathname.replace(/\/+$/, "") || "/"}${url.search}`, 308);
    })
    .onError(({ code, error, set }) => {
      const failure = toHttpFailure(code, error);
      if (failure.internal) onInternalError(error);
      set.status = failure.status;
      return failure.body;
    })
    .use(docs())
    .get("/", () => ({ name: pkg.name, version: pkg.version, endpoints: ENDPOINTS }), {
      response: { 200: IndexResponse },
      detail: { summary: "What this server is and its endpoints" },
    })
    .get("/get/:key", ({ params }) => service.get(params.key), {
      params: KeyParams,
      response: {
        200: GetResponse,
        400: errorResponse("The key holds a NUL byte or does not decode."),
        404: errorResponse("No entry has that key."),
        503: unavailable,
      },
      detail: { summary: "Get the value of a key" },
    })
    .post("/set", ({ body }) => service.set(body.key, body.value), {
      parse: [limitBody(options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES), "json"],
      body: SetBody,
      response: {
        200: SuccessResponse,
        400: errorResponse("Malformed: not JSON, not an object, a missing or non-string field, an empty key or a NUL in it."),
        413: errorResponse("The key or the value is longer than the store allows (UTF-8 bytes), or the body is too large."),
        503: unavailable,
        507: errorResponse("The table is full: every slot is in use."),
      },
      detail: { summary: "Insert or replace an entry" },
    })
    .delete("/delete/:key", ({ params }) => service.delete(params.key), {
      params: KeyParams,
      response: {
        200: SuccessResponse,
        400: errorResponse("The key holds a NUL byte or does not decode."),
        404: errorResponse("No entry has that key."),
        503: unavailable,
      },
      detail: { summary: "Remove an entry" },
    })
    .get("/status", () => service.status(), {
      response: { 200: StatusResponse, 503: unavailable },
      detail: { summary: "The whole store: version, counts and every entry" },
    })
    .get("/health", () => service.health(), {
      response: { 200: HealthResponse, 503: unavailable },
      detail: { summary: "Whether the store is open" },
    });
}

export type App = ReturnType<typeof createApp>;
