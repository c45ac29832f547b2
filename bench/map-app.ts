/**
 * The baselines of the HTTP benchmark, both served from a JS Map by Elysia:
 * - createMapApp: the framework's own ceiling. The same routes and bodies as our API, typed the same
 *   way, and nothing more. The targets compare with it.
 * - createFeaturedMapApp: the same, plus what our server does on these routes beyond the store: the
 *   ETag header of GET /get/{key} (with its If-None-Match check) and POST /set, request metrics, the request gate, the
 *   strict JSON body reader and the response schemas, with our own modules. Compared with both, it
 *   splits our gap to the ceiling into the cost of those features and the cost of the shared-memory
 *   store.
 */
import { Elysia, t } from "elysia";
import { bodyReader, refuseLargeBodies } from "../src/http/body.ts";
import { unlessNotModified, withEtag } from "../src/http/conditions.ts";
import { answerAtOnce } from "../src/http/elysia.ts";
import { HttpMetrics, measure } from "../src/http/metrics.ts";
import { errorResponse, GetResponse, SetBody, SetResponse, StatusResponse } from "../src/http/models.ts";
import { layoutOf } from "../src/layout.ts";

const MAX_BODY_BYTES = 64 * 1024;

interface Entry {
  value: string;
  timestamp: number;
  revision: number;
}

/** A table of at most `maxEntries`, with the store's version and revisions. */
class MapTable {
  readonly entries = new Map<string, Entry>();
  version = 0;

  constructor(readonly maxEntries: number) {}

  /** The entry's new revision, or undefined when the table is full. */
  set(key: string, value: string): number | undefined {
    if (!this.entries.has(key) && this.entries.size >= this.maxEntries) return undefined;
    this.entries.set(key, { value, timestamp: Math.floor(Date.now() / 1000), revision: ++this.version });
    return this.version;
  }

  /** The status body, each entry as `shown` gives it: the seed's fields, or ours with the revision. */
  status<T>(shown: (key: string, entry: Entry) => T) {
    const entries = [...this.entries].map(([key, e]) => shown(key, e));
    return { version: this.version, entry_count: this.entries.size, max_entries: this.maxEntries, entries };
  }

  /** The memory figures our store gives at the seed's geometry (every chunk the largest entry's). */
  memory() {
    const chunk = layoutOf({ maxEntries: this.maxEntries, keyMax: 63, valueMax: 255 }).fixedChunk;
    return { memory_bytes: (this.maxEntries + 1) * chunk, memory_used: this.entries.size * chunk };
  }
}

const notFound = (key: string) => ({ detail: `Key '${key}' not found`, code: "NOT_FOUND" });
const full = { detail: "table full", code: "TABLE_FULL" };
const setBody = t.Object({ key: t.String({ minLength: 1 }), value: t.String() });
const setMessage = (key: string) => ({ success: true as const, message: `Key '${key}' set successfully` });

export function createMapApp(maxEntries = 10) {
  const table = new MapTable(maxEntries);
  return new Elysia()
    .get("/get/:key", ({ params, status }) => {
      const e = table.entries.get(params.key);
      return e ? { key: params.key, value: e.value } : status(404, notFound(params.key));
    }, { params: t.Object({ key: t.String() }) })
    .post("/set", ({ body, status }) => {
      return table.set(body.key, body.value) === undefined ? status(507, full) : setMessage(body.key);
    }, { body: setBody })
    .get("/status", () => table.status((key, e) => ({ key, value: e.value, timestamp: e.timestamp })));
}

/** What createFeaturedMapApp adds to the Map app; BENCH_WITHOUT=etag,parse,... leaves some out. */
export const FEATURES = ["etag", "metrics", "gate", "parse", "schemas"] as const;
export type Feature = (typeof FEATURES)[number];

/** The features BENCH_WITHOUT names (comma-separated); an error for a name that is none of them. */
export function featuresLeftOut(env = process.env): Set<Feature> {
  const names = (env.BENCH_WITHOUT ?? "").split(",").filter(Boolean);
  const unknown = names.filter((name) => !(FEATURES as readonly string[]).includes(name));
  if (unknown.length) throw new Error(`BENCH_WITHOUT: no feature ${unknown.join(", ")} (there are ${FEATURES.join(", ")})`);
  return new Set(names as Feature[]);
}

export function createFeaturedMapApp(maxEntries = 10, without: ReadonlySet<Feature> = new Set()) {
  const table = new MapTable(maxEntries);
  const refuseLarge = refuseLargeBodies(MAX_BODY_BYTES);
  const has = (feature: Feature) => !without.has(feature);
  // Our body schema, which lets other fields through. (Elysia sets additionalProperties: false on a
  // route's schema that does not say, so a reader compiled from the Map app's after any app
  // registered it would refuse them.)
  const readSetBody = has("parse") ? bodyReader(SetBody, MAX_BODY_BYTES) : undefined;
  return new Elysia()
    .use(has("metrics") ? measure(new HttpMetrics()) : new Elysia())
    .use(has("gate") ? new Elysia().onRequest(({ request }) => {
      refuseLarge(request);
    }) : new Elysia())
    // Answered without a promise, as our GET /get is (src/http/elysia.ts).
    .get("/get/:key", answerAtOnce(({ params, request }: { params: { key: string }; request: Request }) => {
      const e = table.entries.get(params.key);
      if (!e) return Response.json(notFound(params.key), { status: 404 });
      const body = { key: params.key, value: e.value };
      return has("etag") ? unlessNotModified(request.headers.get("if-none-match"), { body, revision: e.revision }, withEtag) : body;
    }), {
      params: t.Object({ key: t.String() }),
      response: has("schemas") ? { 200: GetResponse, 404: errorResponse("No entry has that key.") } : undefined,
    })
    // With "parse", read as our POST /set reads its body (src/http/app.ts); else by Elysia.
    .post("/set", async ({ body, request, status }) => {
      const { key, value } = readSetBody ? await readSetBody(request) : body;
      // As ours answers: the seed's body, built here, and the new revision in ETag.
      const revision = table.set(key, value);
      if (revision === undefined) return status(507, full);
      return has("etag") ? withEtag(setMessage(key), revision) : Response.json(setMessage(key));
    }, {
      parse: readSetBody ? "none" : undefined,
      body: SetBody,
      response: has("schemas") ? { 200: SetResponse, 507: errorResponse("The table is full.") } : undefined,
    })
    .get("/status", () => ({ ...table.status((key, e) => ({ key, value: e.value, timestamp: e.timestamp, revision: e.revision })), ...table.memory(), evict: "none" as const }), {
      response: has("schemas") ? { 200: StatusResponse } : undefined,
    });
}
