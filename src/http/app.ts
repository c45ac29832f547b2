/**
 * createApp: the HTTP API over a store, as an Elysia app that does not listen (src/server.ts does).
 * Routes follow the seed's REST contract; every error is JSON {detail, code}, mapped in one place.
 */
import { Elysia } from "elysia";
import pkg from "../../package.json";
import { KvStore } from "../store.ts";
import { PATH_SEARCH_FROM, requireToken } from "./auth.ts";
import { DEFAULT_MAX_BODY_BYTES } from "../config.ts";
import { bodyReader, refuseLargeBodies } from "./body.ts";
import { docs } from "./docs.ts";
import { bytesWithEtag, conditionOf, jsonTextWithEtag, unlessNotModified, withEtag } from "./conditions.ts";
import { andThen } from "./busy.ts";
import { answerAtOnce } from "./elysia.ts";
import { AnswerLater, ApiError, atOnce, failureResponse, KEY_NOT_DECODED, toHttpFailure } from "./errors.ts";
import { requireHost, type HostPolicy } from "./hosts.ts";
import { wrongMethod } from "./methods.ts";
import { HttpMetrics, measure, METRICS_CONTENT_TYPE } from "./metrics.ts";
import {
  ConditionHeaders,
  conditionParameters,
  errorResponse,
  getParameters,
  type GetQuery,
  GetResponse,
  DeleteKeysQuery,
  DeleteKeysResponse,
  HealthResponse,
  IncrBody,
  IncrResponse,
  IndexResponse,
  KeyParams,
  KeysQuery,
  KeysResponse,
  MetricsResponse,
  notModifiedResponse,
  PreconditionFailedResponse,
  SetBody,
  SetResponse,
  StatusQuery,
  StatusResponse,
  SuccessResponse,
  UiPage,
  WatchEvent,
  WatchHeaders,
  WatchQuery,
} from "./models.ts";
import { KvService, type Revisioned } from "./service.ts";
import { StoreSlot } from "./store-slot.ts";
import { uiPage } from "./ui.ts";
import { WatchHub, type WatchHubOptions } from "./watch.ts";
import type { Incremented, ReplicatedWriter } from "./writer.ts";

export interface AppOptions {
  /** Largest accepted request body, in bytes (413 above). Default 64 KiB. */
  maxBodyBytes?: number;
  /** Told about failures that became a 500, with their cause. Default: console.error. */
  onInternalError?: (error: unknown) => void;
  /** GET /watch: its heartbeat, its polling and how much a stream may hold unsent. */
  watch?: WatchHubOptions;
  /** When set, every path but the public ones (src/http/auth.ts) needs `Authorization: Bearer <token>`. */
  token?: string;
  /** Milliseconds a request may wait for a busy store (a writer holding its lock) before 503. */
  busyWaitMs?: number;
  /** The Host names answered for, without a token (src/http/hosts.ts): HOST and KV_ALLOWED_HOSTS. */
  hosts?: Omit<HostPolicy, "token">;
  /** Writes through Redis (src/replication/), which /health and /metrics then report on. */
  replication?: ReplicatedWriter;
}

const ENDPOINTS: Record<string, string> = {
  "GET /": "this description",
  "GET /get/{key}": "the value of a key (a '/' in it as it is, or %2F; ?raw: its bytes, not JSON)",
  "POST /set": 'insert or replace an entry: JSON {"key": ..., "value": ...}, and "ttl": seconds for one that expires',
  "DELETE /delete/{key}": "remove an entry",
  "GET /status": "version, entry count, capacity and every entry",
  "GET /health": "200 when the store is open, 503 with the reason when not",
  "GET /keys": "the keys (or entries, with values=1) in pages, optionally those with a prefix",
  "POST /incr": 'add to an integer value, atomically: JSON {"key": ..., "by": N} (by defaults to 1; "ttl" when it creates the key)',
  "DELETE /keys": "delete every key with a prefix (?prefix=P), or every key (?all=1)",
  "GET /metrics": "request and store metrics in the Prometheus text format",
  "GET /watch": "Server-Sent Events, one per change by any process (?since=, Last-Event-ID, ?prefix=)",
  "GET /ui": "a live page of the store: its entries, updated as they change, and forms to set and delete",
  "GET /swagger": "interactive API documentation (OpenAPI document at /swagger/json)",
};

const SLASH = "/".charCodeAt(0);
/** The route of GET /get/{key}, in the syntax of Elysia's router and of Bun's (src/server.ts serves it by Bun's). */
export const GET_KEY_ROUTE = "/get/:key";
const GET_PREFIX = "/get/";
const hidden = { detail: { hide: true } };

/** What a read route's handler is given (see answerAtOnce). */
interface Read<P, Q> {
  params: P;
  query: Q;
  request: Request;
}
interface WildcardParams {
  "*": string;
}

/** The key of /get/* or /delete/*: the rest of the path, "/" included, percent-decoded. */
function slashedKey(params: WildcardParams): string {
  try {
    return decodeURIComponent(params["*"]);
  } catch {
    throw new ApiError("BAD_REQUEST", KEY_NOT_DECODED);
  }
}
const unavailable = errorResponse("The store is not available, or (a write, with --replicate) Redis is not: then Retry-After says when to try again; detail says why.");
/** What every route but the public ones (src/http/auth.ts) may answer when the server has a token. */
const unauthorized = errorResponse("The server has an API token (KV_API_TOKEN) and the request did not send it.");
/** The OpenAPI security requirement of those routes, when the server has a token. */
const BEARER = [{ bearer: [] }];

export function createApp(store: KvStore | StoreSlot, options: AppOptions = {}) {
  const slot = store instanceof KvStore ? StoreSlot.of(store) : store;
  const service = new KvService(slot, { busyWaitMs: options.busyWaitMs, replication: options.replication });
  const watchHub = new WatchHub(slot, options.watch);
  const onInternalError = options.onInternalError ?? ((error: unknown) => console.error(error));
  const metrics = new HttpMetrics();
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const refuseLarge = refuseLargeBodies(maxBodyBytes);
  const checkToken = requireToken(options.token);
  const checkHost = requireHost({ ...options.hosts, token: options.token });
  const readSetBody = bodyReader(SetBody, maxBodyBytes);
  const readIncrBody = bodyReader(IncrBody, maxBodyBytes);
  const bearer = options.token === undefined ? undefined : BEARER;
  /** The failure of an answer that came later (AnswerLater), answered as onError answers any other. */
  const answerFailure = (error: unknown) => failureResponse(error, onInternalError);
  const notAllowed = wrongMethod(() => app.routes);
  /** GET /get/{key}: the entry as JSON, or (raw) its value's bytes; 304 when If-None-Match names its revision. */
  const readKey = (key: string, raw: boolean, request: Request): Response => {
    const ifNoneMatch = request.headers.get("if-none-match");
    if (!raw) return answerRead(service.get(key), ifNoneMatch, withEtag);
    return answerRead(service.getBytes(key), ifNoneMatch, bytesWithEtag);
  };
  /**
   * The gates every request passes before routing: a refusal is thrown; a redirect is returned, as
   * the answer; undefined lets the request through. `url` is the request's, read by the caller once:
   * Bun makes a new string on every read of request.url.
   */
  const gates = (request: Request, url: string): Response | undefined => {
    checkHost(url);
    // Send every "/path/" to "/path" ("/swagger/" too, so the page has one address), on this
    // server: "//evil.com/" goes to "/evil.com", never to "//evil.com" (another host, for a
    // browser). A cheap look at the raw URL first: this runs for every request.
    const query = url.indexOf("?");
    if (url.charCodeAt((query < 0 ? url.length : query) - 1) === SLASH) {
      const { pathname, search } = new URL(url);
      if (pathname.length > 1) return Response.redirect(`/${pathname.replace(/^\/+|\/+$/g, "")}${search}`, 308);
    }
    refuseLarge(request);
    checkToken(request);
    return undefined;
  };
  /**
   * A GET of /get/{key} as Bun's own router hands it over (src/server.ts), past Elysia: the gates,
   * the read and the count that the app gives the route, without Elysia's routing, context and
   * hooks, whose cost is a large share of this read's (`BENCH_ONLY=http make bench` measures it).
   * Only the plain case, a key with no percent-escape and no query; the app answers the rest (?raw,
   * an escaped key, a request a gate refuses or redirects), and counts it, as it answers any
   * request. HEAD is the app's too: Bun's router gives it the app (and any other method).
   */
  const getKey = (request: Request): Response | Promise<Response> => {
    const { url } = request;
    const path = url.indexOf("/", PATH_SEARCH_FROM);
    const from = path + GET_PREFIX.length;
    const plain = url.startsWith(GET_PREFIX, path) && url.indexOf("?", from) < 0 && url.indexOf("%", from) < 0;
    if (!plain) return app.handle(request);
    const began = performance.now();
    let passed: boolean;
    try {
      passed = gates(request, url) === undefined;
    } catch {
      passed = false;
    }
    if (!passed) return app.handle(request);
    let answer: Response | Promise<Response>;
    try {
      answer = readKey(url.substring(from), false, request);
    } catch (error) {
      answer = error instanceof AnswerLater ? error.answer.then(undefined, answerFailure) : answerFailure(error);
    }
    if (answer instanceof Promise) return answer.then((response) => countGetKey(response, began));
    return countGetKey(answer, began);
  };
  /** Count a GET /get/{key} that getKey answered, begun at `began` (performance.now()). */
  const countGetKey = (response: Response, began: number): Response => {
    metrics.observe("GET", GET_KEY_ROUTE, response.status, (performance.now() - began) / 1000);
    return response;
  };
  // The path starts after "http://" and the host, which may be shorter than Elysia assumes.
  const app = new Elysia({ handler: { standardHostname: false } })
    .use(measure(metrics))
    // The gates, in one hook. Elysia reads a hook's source to decide whether to await it, and takes
    // a `return f(...)` for async; an awaited hook makes the handling of every request asynchronous
    // from its first step. Hence the answer is assigned, then returned (test/http/routes.test.ts
    // checks that the hook stays synchronous).
    .onRequest(({ request }) => {
      let early;
      early = gates(request, request.url);
      return early;
    })
    .onError(({ code, error, set, request }) => {
      if (error instanceof AnswerLater) {
        return error.answer.then(undefined, answerFailure).then((response) => {
          set.status = response.status;
          return response;
        });
      }
      const failure = toHttpFailure(code, (code === "NOT_FOUND" && notAllowed(request)) || error);
      if (failure.internal) onInternalError(error);
      set.status = failure.status;
      Object.assign(set.headers, failure.headers);
      return failure.body;
    })
    .use(docs({ token: options.token !== undefined }))
    .get("/", () => ({ name: pkg.name, version: pkg.version, endpoints: ENDPOINTS }), {
      response: { 200: IndexResponse },
      detail: { summary: "What this server is and its endpoints" },
    })
    // The read routes answer without a promise (see answerAtOnce), or, when the store is busy, later
    // through onError (see atOnce).
    .get(GET_KEY_ROUTE, answerAtOnce(({ params, query, request }: Read<KeyParams, GetQuery>) => readKey(params.key, query.raw !== undefined, request)), {
      params: KeyParams,
      response: {
        200: GetResponse,
        304: notModifiedResponse,
        401: unauthorized,
        400: errorResponse("The key holds a NUL byte or does not decode."),
        404: errorResponse("No entry has that key."),
        406: errorResponse("The value is bytes that are not UTF-8 text, which JSON cannot carry: ?raw answers them (code NOT_UTF8)."),
        503: unavailable,
      },
      detail: { summary: "Get the value of a key", security: bearer, parameters: getParameters },
    })
    // A key with "/" in it, sent as it is (/get/a/b), as Consul's /v1/kv/a/b: documented above.
    .get(
      "/get/*",
      answerAtOnce(({ params, query, request }: Read<WildcardParams, GetQuery>) => readKey(slashedKey(params), query.raw !== undefined, request)),
      hidden,
    )
    // The hot write path reads its condition headers from the request. Declared as its `headers`
    // schema, they cost every set a copy of all the request's headers into an object, a second copy
    // keeping only these two, and a check of it (`BENCH_ONLY=http make bench` shows it); so the
    // documentation lists them as parameters instead, and Eden types them as any string headers.
    // Elysia neither reads nor checks the body (parse: "none"): the handler does, as body.ts
    // bodyReader tells why. The `body` schema documents and types it. Every write answers the
    // entry's new revision in ETag, for the next compare-and-set, in a Response built here: Elysia
    // checks no response schema against it.
    .post("/set", async ({ request }) => {
      const { key, value, ttl } = await readSetBody(request);
      const condition = conditionOf(request.headers);
      const written = await service.set(key, value, condition, ttl);
      return withEtag(written.body, written.revision);
    }, {
      parse: "none",
      body: SetBody,
      response: {
        200: SetResponse,
        401: unauthorized,
        400: errorResponse(
          "Malformed: not JSON or not UTF-8, nested too deep, not an object, a missing or non-string field, an empty key or a NUL in it, " +
            "a ttl that is no number of seconds from 0.001 to ten years.",
        ),
        412: PreconditionFailedResponse,
        413: errorResponse("The key or the value is longer than the store allows (UTF-8 bytes), or the body is too large."),
        415: errorResponse("The body is not sent as JSON (Content-Type: application/json)."),
        503: unavailable,
        507: errorResponse(
          "The store is full: every entry is in use, or its memory has no room for this one; detail says how to grow it. " +
            "A store made with eviction (lru) evicts entries to make room instead, and answers it only for an entry that would not fit in an empty store.",
        ),
      },
      detail: { summary: "Insert or replace an entry", security: bearer, parameters: conditionParameters },
    })
    // Its `headers` schema documents and types the condition; it is read from the request, as for /set.
    .delete("/delete/:key", ({ params, request }) => service.delete(params.key, conditionOf(request.headers)), {
      params: KeyParams,
      headers: ConditionHeaders,
      response: {
        200: SuccessResponse,
        401: unauthorized,
        400: errorResponse("The key holds a NUL byte or does not decode."),
        404: errorResponse("No entry has that key."),
        412: PreconditionFailedResponse,
        503: unavailable,
      },
      detail: { summary: "Remove an entry", security: bearer },
    })
    .delete("/delete/*", ({ params, request }) => service.delete(slashedKey(params), conditionOf(request.headers)), {
      headers: ConditionHeaders,
      ...hidden,
    })
    .get("/status", answerAtOnce(({ query }: { query: StatusQuery }) => atOnce(service.status(query))), {
      query: StatusQuery,
      response: {
        200: StatusResponse,
        401: unauthorized,
        400: errorResponse("A limit out of 1..1000, or a cursor this server did not give."),
        503: unavailable,
      },
      detail: { summary: "The whole store: version, counts and every entry", security: bearer },
    })
    .get("/health", () => service.health(), {
      response: { 200: HealthResponse, 503: unavailable },
      detail: { summary: "Whether the store is open" },
    })
    .get("/keys", ({ query }) => service.keys(query), {
      query: KeysQuery,
      response: {
        200: KeysResponse,
        401: unauthorized,
        400: errorResponse("A limit out of 1..1000, a values other than 1 or 0, or a cursor this server did not give."),
        503: unavailable,
      },
      detail: { summary: "Page through the keys (or entries), in slot order", security: bearer },
    })
    // The counter's routes. /incr reads its body as /set does (parse: "none"); its value is written
    // as exact digits (incrAnswer), for an int64 can exceed what a JSON number parses to exactly.
    .post("/incr", async ({ request }) => {
      const { key, by, ttl } = await readIncrBody(request);
      return incrAnswer(key, await service.incr(key, by, ttl));
    }, {
      parse: "none",
      body: IncrBody,
      response: {
        200: IncrResponse,
        401: unauthorized,
        400: errorResponse(
          "Malformed: not JSON, a missing or non-string key, an empty key or a NUL in it, a by that is no integer or lies beyond its range, " +
            "a ttl as POST /set refuses it.",
        ),
        409: errorResponse("The value is not a decimal integer within int64 (NOT_A_NUMBER), or the sum would leave int64 (ERANGE); nothing was written."),
        413: errorResponse("The key is longer than the store allows, the new value's digits longer than its value_max, or the body too large."),
        415: errorResponse("The body is not sent as JSON (Content-Type: application/json)."),
        503: unavailable,
        507: errorResponse("The table is full: every slot is in use (never with eviction, lru)."),
      },
      detail: { summary: "Add to an integer value, atomically", security: bearer },
    })
    .delete("/keys", ({ query }) => service.deleteKeys(query), {
      query: DeleteKeysQuery,
      response: {
        200: DeleteKeysResponse,
        401: unauthorized,
        400: errorResponse("No prefix (or an empty one) and no all=1, or both."),
        503: unavailable,
      },
      detail: { summary: "Delete every key with a prefix, or every key", security: bearer },
    })
    .get("/metrics", ({ set }) => {
      set.headers["content-type"] = METRICS_CONTENT_TYPE;
      return andThen(service.figures(), (figures) => metrics.render(figures));
    }, {
      response: { 200: MetricsResponse, 401: unauthorized },
      detail: { summary: "Request and store metrics, in the Prometheus text format", security: bearer },
    })
    .get("/watch", ({ query, headers }) => watchHub.open(headers["last-event-id"] ?? query.since, query.prefix ?? ""), {
      query: WatchQuery,
      headers: WatchHeaders,
      response: {
        200: WatchEvent,
        401: unauthorized,
        400: errorResponse("since or Last-Event-ID is not a whole number of zero or more."),
        503: unavailable,
      },
      detail: { summary: "Follow the changes, by any process, as Server-Sent Events", security: bearer },
    })
    // HEAD of the stream: its status and headers, the query and headers checked as for GET.
    .head("/watch", () => watchHub.head(), {
      query: WatchQuery,
      headers: WatchHeaders,
      detail: { hide: true },
    })
    .get("/ui", () => uiPage(), {
      response: { 200: UiPage },
      detail: { summary: "A live page of the store, with forms to set and delete" },
    })
    .decorate("watchHub", watchHub);
  // What a server must do when it stops: end the /watch streams, which never finish by themselves.
  return Object.assign(app, { close: () => watchHub.close(), getKey });
}

export type App = ReturnType<typeof createApp>;

/**
 * The answer of a read (see unlessNotModified): now, with no closure made on the way, or, when the
 * store was busy, later (see atOnce).
 */
function answerRead<T>(
  read: Revisioned<T> | Promise<Revisioned<T>>,
  ifNoneMatch: string | null,
  answer: (body: T, revision: number, expiresAt?: number) => Response,
): Response {
  if (read instanceof Promise) return atOnce(read.then((r) => unlessNotModified(ifNoneMatch, r, answer)));
  return unlessNotModified(ifNoneMatch, read, answer);
}

/** POST /incr's answer: `value` as its exact decimal digits, and the new revision as the ETag. */
function incrAnswer(key: string, { value, revision }: Incremented): Response {
  return jsonTextWithEtag(`{"key":${JSON.stringify(key)},"value":${value}}`, revision);
}
