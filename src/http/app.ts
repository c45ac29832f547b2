/**
 * createApp: the HTTP API over a store, as an Elysia app that does not listen (src/server.ts does).
 * Routes follow the seed's REST contract; every error is JSON {detail, code}, mapped in one place.
 */
import { Elysia } from "elysia";
import pkg from "../../package.json";
import { KvStore } from "../store.ts";
import { requireToken } from "./auth.ts";
import { DEFAULT_MAX_BODY_BYTES } from "../config.ts";
import { bodyReader, refuseLargeBodies } from "./body.ts";
import { docs } from "./docs.ts";
import { conditionOf, withEtag } from "./conditions.ts";
import { andThen } from "./busy.ts";
import { answerAtOnce } from "./elysia.ts";
import { AnswerLater, atOnce, failureResponse, toHttpFailure } from "./errors.ts";
import { requireHost, type HostPolicy } from "./hosts.ts";
import { HttpMetrics, measure, METRICS_CONTENT_TYPE } from "./metrics.ts";
import {
  ConditionHeaders,
  conditionParameters,
  errorResponse,
  GetResponse,
  HealthResponse,
  IndexResponse,
  KeyParams,
  KeysQuery,
  KeysResponse,
  MetricsResponse,
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
import { KvService } from "./service.ts";
import { StoreSlot } from "./store-slot.ts";
import { uiPage } from "./ui.ts";
import { WatchHub, type WatchHubOptions } from "./watch.ts";
import type { ReplicatedWriter } from "./writer.ts";

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
  "GET /get/{key}": "the value of a key",
  "POST /set": 'insert or replace an entry: JSON {"key": ..., "value": ...}',
  "DELETE /delete/{key}": "remove an entry",
  "GET /status": "version, entry count, capacity and every entry",
  "GET /health": "200 when the store is open, 503 with the reason when not",
  "GET /keys": "the keys (or entries, with values=1) in pages, optionally those with a prefix",
  "GET /metrics": "request and store metrics in the Prometheus text format",
  "GET /watch": "Server-Sent Events, one per change by any process (?since=, Last-Event-ID, ?prefix=)",
  "GET /ui": "a live page of the store: its entries, updated as they change, and forms to set and delete",
  "GET /swagger": "interactive API documentation (OpenAPI document at /swagger/json)",
};

const SLASH = "/".charCodeAt(0);
const unavailable = errorResponse("The store is not available, or (a write, with --replicate) Redis is not: then Retry-After says when to try again; detail says why.");
/** What every route but the public ones (src/http/auth.ts) may answer when the server has a token. */
const unauthorized = errorResponse("The server has an API token (KV_API_TOKEN) and the request did not send it.");
/** The OpenAPI security requirement of those routes. */
const bearer = [{ bearer: [] }];

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
  /** The failure of an answer that came later (AnswerLater), answered as onError answers any other. */
  const answerFailure = (error: unknown) => failureResponse(error, onInternalError);
  // The path starts after "http://" and the host, which may be shorter than Elysia assumes.
  const app = new Elysia({ handler: { standardHostname: false } })
    .use(measure(metrics))
    // The gates every request passes before routing, in one hook. Elysia reads a hook's source to
    // decide whether to await it, and takes a `return f(...)` for async; an awaited hook makes the
    // handling of every request asynchronous from its first step. Hence the redirect is assigned,
    // then returned (test/http/routes.test.ts checks that the hook stays synchronous).
    .onRequest(({ request, redirect }) => {
      let early: Response | undefined;
      // Bun makes a new string on every read of request.url, about 50 ns: it is read once.
      const { url } = request;
      checkHost(url);
      // Send every "/path/" to "/path" ("/swagger/" too, so the page has one address), on this
      // server: "//evil.com/" goes to "/evil.com", never to "//evil.com" (another host, for a
      // browser). A cheap look at the raw URL first: this runs for every request.
      const query = url.indexOf("?");
      if (url.charCodeAt((query < 0 ? url.length : query) - 1) === SLASH) {
        const { pathname, search } = new URL(url);
        if (pathname.length > 1) early = redirect(`/${pathname.replace(/^\/+|\/+$/g, "")}${search}`, 308);
      }
      if (early === undefined) {
        refuseLarge(request);
        checkToken(request);
      }
      return early;
    })
    .onError(({ code, error, set }) => {
      if (error instanceof AnswerLater) {
        return error.answer.then(undefined, answerFailure).then((response) => {
          set.status = response.status;
          return response;
        });
      }
      const failure = toHttpFailure(code, error);
      if (failure.internal) onInternalError(error);
      set.status = failure.status;
      Object.assign(set.headers, failure.headers);
      return failure.body;
    })
    .use(docs())
    .get("/", () => ({ name: pkg.name, version: pkg.version, endpoints: ENDPOINTS }), {
      response: { 200: IndexResponse },
      detail: { summary: "What this server is and its endpoints" },
    })
    // The read routes answer without a promise (see answerAtOnce), or, when the store is busy, later
    // through onError (see atOnce).
    .get("/get/:key", answerAtOnce(({ params }: { params: KeyParams }) =>
      atOnce(andThen(service.get(params.key), ({ body, revision }) => withEtag(body, revision))),
    ), {
      params: KeyParams,
      response: {
        200: GetResponse,
        401: unauthorized,
        400: errorResponse("The key holds a NUL byte or does not decode."),
        404: errorResponse("No entry has that key."),
        503: unavailable,
      },
      detail: { summary: "Get the value of a key", security: bearer },
    })
    // The hot write path reads its condition headers from the request. Declared as its `headers`
    // schema, they cost every set a copy of all the request's headers into an object, a second copy
    // keeping only these two, and a check of it (`BENCH_ONLY=http make bench` shows it); so the
    // documentation lists them as parameters instead, and Eden types them as any string headers.
    // Elysia neither reads nor checks the body (parse: "none"): the handler does, as body.ts
    // bodyReader tells why. The `body` schema documents and types it. Every write answers the
    // entry's new revision in ETag, for the next compare-and-set, in a Response built here: Elysia
    // checks no response schema against it.
    .post("/set", async ({ request }) => {
      const { key, value } = await readSetBody(request);
      const condition = conditionOf(request.headers);
      const written = await service.set(key, value, condition);
      return withEtag(written.body, written.revision);
    }, {
      parse: "none",
      body: SetBody,
      response: {
        200: SetResponse,
        401: unauthorized,
        400: errorResponse(
          "Malformed: not JSON or not UTF-8, nested too deep, not an object, a missing or non-string field, an empty key or a NUL in it.",
        ),
        412: PreconditionFailedResponse,
        413: errorResponse("The key or the value is longer than the store allows (UTF-8 bytes), or the body is too large."),
        415: errorResponse("The body is not sent as JSON (Content-Type: application/json)."),
        503: unavailable,
        507: errorResponse("The store is full: every entry is in use, or its memory has no room for this one. detail says how to grow it."),
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
  return Object.assign(app, { close: () => watchHub.close() });
}

export type App = ReturnType<typeof createApp>;
