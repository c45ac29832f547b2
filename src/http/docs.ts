/**
 * The API's documentation: the OpenAPI document at /swagger/json and the Scalar UI at /swagger, whose
 * script is served from here (the npm package @scalar/api-reference), never from a CDN, so the page
 * works with no internet access. The seed's /docs and /redoc lead to it.
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
type Spec = { paths: Record<string, Record<string, Operation>> };

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
    Object.values(operation.responses ?? {}).forEach(keepJson);
  }
  return spec;
}

/** A new instance for each app: the plugin's page is one Response, whose body can be sent once. */
export const docs = () =>
  new Elysia()
    .onAfterHandle(({ path, response }) => (path === SPEC_PATH ? jsonOnly(response as Spec) : undefined))
    .use(
      swagger({
        path: DOCS_PATH,
        specPath: SPEC_PATH,
        provider: "scalar",
        scalarCDN: SCRIPT_PATH,
        // The document by its absolute path (the plugin's default is relative to the page), and no fonts
        // from Scalar's CDN.
        scalarConfig: { spec: { url: SPEC_PATH }, withDefaultFonts: false },
        documentation: {
          info: {
            title: "shmkv",
            version: pkg.version,
            description: "A key-value store in POSIX shared memory, over HTTP. Every error body is {detail, code}.",
          },
          // Routes that list it need the token when the server has one (KV_API_TOKEN).
          components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
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
