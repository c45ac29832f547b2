/**
 * The API's documentation: the OpenAPI document at /swagger/json and the Scalar UI at /swagger, whose
 * script is served from here (the npm package @scalar/api-reference), never from a CDN, so the page
 * works with no internet access, and shows nothing that needs it (or an account with Scalar). The
 * seed's /docs and /redoc lead to it.
 */
import { swagger } from "@elysiajs/swagger";
import { Elysia } from "elysia";
import scalarBundle from "../../node_modules/@scalar/api-reference/dist/browser/standalone.js" with { type: "file" };
import pkg from "../../package.json";

const DOCS_PATH = "/swagger";
const SPEC_PATH = `${DOCS_PATH}/json`;
const SCRIPT_PATH = `${DOCS_PATH}/scalar.js`;
/** Every path of the documentation (public when the API needs a token). */
export const DOCS_PATHS = [DOCS_PATH, SPEC_PATH, SCRIPT_PATH, "/docs", "/redoc"];
const hidden = { detail: { hide: true } };

interface Content {
  content?: Record<string, unknown>;
  /** Set from a model's options: the body's media type when it is not JSON. */
  "x-media-type"?: string;
}
interface Operation {
  requestBody?: Content;
  responses?: Record<string, Content>;
}
type Spec = { paths: Record<string, Record<string, Operation>>; servers?: { url: string }[] };

/**
 * The plugin lists, for every body (responses included), the content types of the route's parsers,
 * or form-data, text and JSON when it names none. Every body of this API is JSON, but those whose
 * model names its own type in `x-media-type` (the event stream of /watch, the page of /ui): say only that.
 */
function jsonOnly(spec: Spec): Spec {
  const keepJson = (body: Content | undefined) => {
    if (!body?.content) return;
    const type = body["x-media-type"] ?? "application/json";
    body.content = { [type]: body.content[type] ?? body.content["application/json"] };
  };
  for (const operation of Object.values(spec.paths).flatMap((item) => Object.values(item))) {
    keepJson(operation.requestBody);
    withoutExtraFields(operation.requestBody);
    Object.values(operation.responses ?? {}).forEach(keepJson);
  }
  return spec;
}

/**
 * The document as this request sees it: its `servers` is the address the request came to, so that
 * the page's code samples carry it (`curl http://127.0.0.1:8000/get/...`, not `curl /get/...`).
 */
function servedAt(spec: Spec, request: Request): Spec {
  return { ...spec, servers: [{ url: new URL(request.url).origin }] };
}

/**
 * Scalar's options that take away what needs the internet or an account with Scalar: the AI agent
 * ("Ask AI"), the MCP generator ("Generate MCP"), and the developer tools ("Share", "Deploy"),
 * which Scalar shows by default on localhost; no telemetry, no fonts from its CDN.
 */
const OFFLINE_SCALAR = {
  agent: { disabled: true },
  mcp: { disabled: true },
  showDeveloperTools: "never",
  telemetry: false,
  withDefaultFonts: false,
};

export interface DocsOptions {
  /** The server needs a token (KV_API_TOKEN): the document declares the bearer scheme. */
  token: boolean;
}

/**
 * A request body's schema without `additionalProperties: true`, which the page would show as a
 * field "additionalProperty" in the example (the body's description says other fields are ignored).
 * A copy: the schema is the model's own object, which validates requests.
 */
function withoutExtraFields(body: Content | undefined): void {
  for (const media of Object.values(body?.content ?? {}) as { schema?: Record<string, unknown> }[]) {
    if (media.schema?.additionalProperties !== true) continue;
    const { additionalProperties: _, ...schema } = media.schema;
    media.schema = schema;
  }
}

/** A new instance for each app: the plugin's page is one Response, whose body can be sent once. */
export const docs = ({ token }: DocsOptions) =>
  new Elysia()
    .onAfterHandle(({ path, response, request }) => (path === SPEC_PATH ? servedAt(jsonOnly(response as Spec), request) : undefined))
    .use(
      swagger({
        path: DOCS_PATH,
        specPath: SPEC_PATH,
        provider: "scalar",
        scalarCDN: SCRIPT_PATH,
        // The document by its absolute path (the plugin's default is relative to the page).
        scalarConfig: { spec: { url: SPEC_PATH }, ...OFFLINE_SCALAR },
        documentation: {
          info: {
            title: "shmkv",
            version: pkg.version,
            description: "A key-value store in POSIX shared memory, over HTTP. Every error body is {detail, code}.",
          },
          // Only when the server has a token (KV_API_TOKEN): then the routes that need it list it.
          components: token ? { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } } : {},
        },
      }),
    )
    .get(
      SCRIPT_PATH,
      () =>
        new Response(Bun.file(scalarBundle), {
          headers: { "content-type": "text/javascript; charset=utf-8", "cache-control": "public, max-age=86400" },
        }),
      hidden,
    )
    .get("/docs", ({ redirect }) => redirect(DOCS_PATH, 302), hidden)
    .get("/redoc", ({ redirect }) => redirect(DOCS_PATH, 302), hidden);
