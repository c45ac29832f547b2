/** The OpenAPI document and the documentation page, served with no help from the internet. */
import { describe, expect, it } from "bun:test";
import { join } from "node:path";
import { createApp, type App } from "../../src/http/app.ts";
import { eachWithTempApp } from "../helpers/app.ts";
import { get } from "../helpers/http.ts";
import { ROOT } from "../helpers/server-process.ts";
import type { TempStore } from "../helpers/shm.ts";

let temp: TempStore;
let app: App;

eachWithTempApp((made) => ({ temp, app } = made));

interface Operation {
  summary?: string;
  parameters?: { name: string; in: string; required: boolean }[];
  requestBody?: { content: Record<string, { schema: unknown }> };
  responses: Record<string, { description: string; content: Record<string, { schema: unknown }> }>;
}
type Spec = { openapi: string; info: { title: string }; paths: Record<string, Record<string, Operation>> };

async function spec(): Promise<Spec> {
  return (await app.handle(get("/swagger/json"))).json() as Promise<Spec>;
}

/** The bodies that are not JSON, by "METHOD /path status". */
const NOT_JSON: Record<string, string> = {
  "GET /watch 200": "text/event-stream",
  "GET /ui 200": "text/html",
  "GET /metrics 200": "text/plain; version=0.0.4",
};

const errorSchema = {
  type: "object",
  properties: { detail: { type: "string" }, code: expect.objectContaining({ type: "string" }) },
  required: expect.arrayContaining(["detail", "code"]), // a 412 adds the revision
};

describe("GET /swagger/json", () => {
  it("documents every route, with every status code it answers", async () => {
    const { paths } = await spec();
    const statuses = Object.fromEntries(
      Object.entries(paths).flatMap(([path, item]) =>
        Object.entries(item).map(([method, op]) => [`${method.toUpperCase()} ${path}`, Object.keys(op.responses).sort()]),
      ),
    );
    expect(statuses).toEqual({
      "GET /": ["200"],
      "GET /get/{key}": ["200", "304", "400", "401", "404", "406", "503"],
      "POST /set": ["200", "400", "401", "412", "413", "415", "503", "507"],
      "DELETE /delete/{key}": ["200", "400", "401", "404", "412", "503"],
      "GET /status": ["200", "400", "401", "503"],
      "GET /health": ["200", "503"],
      "GET /watch": ["200", "400", "401", "503"],
      "GET /ui": ["200"],
      "GET /keys": ["200", "400", "401", "503"],
      "POST /incr": ["200", "400", "401", "409", "413", "415", "503", "507"],
      "DELETE /keys": ["200", "400", "401", "503"],
      "GET /metrics": ["200", "401"],
    });
  });

  it("declares the bearer token only when the server has one, then on exactly the routes that are not public", async () => {
    type Secured = { components: { securitySchemes?: Record<string, unknown> }; paths: Record<string, Record<string, { security?: unknown }>> };
    const secured = (document: Secured) =>
      Object.fromEntries(
        Object.entries(document.paths).flatMap(([path, item]) =>
          Object.entries(item).map(([method, op]) => [`${method.toUpperCase()} ${path}`, op.security !== undefined]),
        ),
      );
    const open = (await spec()) as unknown as Secured;
    const tokenApp = createApp(temp.store, { token: "secret-token" });
    const withToken = (await (await tokenApp.handle(get("/swagger/json"))).json()) as Secured;
    tokenApp.close();
    expect({ scheme: open.components.securitySchemes, secured: Object.values(secured(open)).filter(Boolean) }).toEqual({
      scheme: undefined,
      secured: [],
    });
    expect({ scheme: withToken.components.securitySchemes?.bearer, secured: secured(withToken) }).toEqual({
      scheme: { type: "http", scheme: "bearer" },
      secured: {
        "GET /": false,
        "GET /get/{key}": true,
        "POST /set": true,
        "DELETE /delete/{key}": true,
        "GET /status": true,
        "GET /health": false,
        "GET /watch": true,
        "GET /ui": false,
        "GET /keys": true,
        "POST /incr": true,
        "DELETE /keys": true,
        "GET /metrics": true,
      },
    });
  });

  it("names as its server the address it was asked at, so that code samples carry the host", async () => {
    const at = async (url: string) => ((await (await app.handle(new Request(url))).json()) as { servers: unknown }).servers;
    expect([await at("http://127.0.0.1:8000/swagger/json"), await at("http://localhost:41234/swagger/json")]).toEqual([
      [{ url: "http://127.0.0.1:8000" }],
      [{ url: "http://localhost:41234" }],
    ]);
  });

  it("gives a real example of the set body, and no extra property", async () => {
    const schema = (await spec()).paths["/set"]?.post?.requestBody?.content["application/json"]?.schema as Record<string, unknown>;
    expect({ examples: schema.examples, additionalProperties: schema.additionalProperties }).toEqual({
      examples: [{ key: "mykey", value: "myvalue" }],
      additionalProperties: undefined,
    });
  });

  it("describes every body as JSON only (but those that are not), each response with a description", async () => {
    const { paths } = await spec();
    for (const [path, item] of Object.entries(paths)) {
      for (const [method, op] of Object.entries(item)) {
        for (const [status, response] of Object.entries(op.responses)) {
          if (status === "304") continue; // no body
          expect(Object.keys(response.content)).toEqual([NOT_JSON[`${method.toUpperCase()} ${path} ${status}`] ?? "application/json"]);
          expect(response.description.length).toBeGreaterThan(0);
        }
      }
    }
    expect(Object.keys(paths["/set"]?.post?.requestBody?.content ?? {})).toEqual(["application/json"]);
  });

  it("gives the seed's shapes: the set body, the status answer, and {detail, code} for every error", async () => {
    const { paths } = await spec();
    const set = paths["/set"]?.post;
    expect(set?.requestBody?.content["application/json"]?.schema).toMatchObject({
      type: "object",
      required: ["key", "value"],
      properties: { key: { type: "string", minLength: 1 }, value: { type: "string" } },
    });
    expect(paths["/status"]?.get?.responses["200"]?.content["application/json"]?.schema).toMatchObject({
      type: "object",
      required: ["version", "entry_count", "max_entries", "memory_bytes", "memory_used", "evict", "entries"],
      properties: {
        version: { type: "integer" },
        entry_count: { type: "integer" },
        max_entries: { type: "integer" },
        memory_bytes: { type: "integer" },
        memory_used: { type: "integer" },
        entries: {
          type: "array",
          items: {
            required: ["key", "value", "timestamp", "revision"],
            properties: {
              key: { type: "string" },
              value: { type: "string" },
              timestamp: { type: "integer" },
              revision: { type: "integer" },
            },
          },
        },
      },
    });
    for (const op of Object.values(paths).flatMap((item) => Object.values(item))) {
      for (const [status, response] of Object.entries(op.responses)) {
        if (status >= "400") expect(response.content["application/json"]?.schema).toMatchObject(errorSchema);
      }
    }
  });

  it("documents expiry and eviction: the ttl of /set and /incr, X-Expires-At, expires_at, evict and the delete's reason", async () => {
    const { paths } = await spec();
    const json = (op: Operation | undefined, status: string) => op?.responses[status]?.content["application/json"]?.schema as Schema;
    type Schema = { properties: Record<string, Schema>; items: Schema; anyOf: Schema[]; required?: string[]; type?: string };
    const body = (path: string) => (paths[path]?.post?.requestBody?.content["application/json"]?.schema as Schema).properties.ttl;
    const get = paths["/get/{key}"]?.get as Operation & { responses: Record<string, { headers?: Record<string, unknown> }> };
    const status = json(paths["/status"]?.get, "200");
    const keys = json(paths["/keys"]?.get, "200");
    const watch = paths["/watch"]?.get?.responses["200"]?.content["text/event-stream"]?.schema as Schema;
    const change = watch.properties.data!.anyOf[0]!;
    expect({
      setTtl: body("/set"),
      incrTtl: body("/incr"),
      headers: [Object.keys(get.responses["200"]?.headers ?? {}), Object.keys(get.responses["304"]?.headers ?? {})],
      statusEntry: [status.properties.entries!.items.properties.expires_at?.type, status.required?.includes("evict"), status.properties.evict],
      keysEntry: keys.anyOf[1]!.properties.entries!.items.properties.expires_at?.type,
      health: json(paths["/health"]?.get, "200").properties.evict,
      change: [change.properties.expires_at?.type, change.properties.reason],
    }).toEqual({
      setTtl: expect.objectContaining({ type: "number", minimum: 0.001, maximum: 315_360_000 }),
      incrTtl: expect.objectContaining({ type: "number", minimum: 0.001, maximum: 315_360_000 }),
      headers: [["ETag", "X-Expires-At"], ["ETag", "X-Expires-At"]],
      statusEntry: ["number", true, expect.objectContaining({ enum: ["none", "lru"] })],
      keysEntry: "number",
      health: expect.objectContaining({ enum: ["none", "lru"] }),
      change: ["number", expect.objectContaining({ enum: ["expired", "evicted"] })],
    });
  });

  it("names the key as a required path parameter, with ?raw and If-None-Match beside it", async () => {
    const { paths } = await spec();
    expect(paths["/get/{key}"]?.get?.parameters?.map(({ name, in: where, required }) => ({ name, in: where, required }))).toEqual([
      { name: "key", in: "path", required: true },
      { name: "raw", in: "query", required: false },
      { name: "if-none-match", in: "header", required: false },
    ]);
  });

  it("leaves out the documentation's own routes", async () => {
    const { paths } = await spec();
    expect(Object.keys(paths).filter((p) => p.startsWith("/swagger") || p === "/docs" || p === "/redoc")).toEqual([]);
  });
});

describe("GET /swagger", () => {
  it("serves the page, which loads its script from this server", async () => {
    const r = await app.handle(get("/swagger"));
    const html = await r.text();
    expect({ status: r.status, type: r.headers.get("content-type") }).toEqual({ status: 200, type: "text/html; charset=utf8" });
    const sources = [...html.matchAll(/<script[^>]*\ssrc="([^"]+)"/g)].map((m) => m[1]);
    expect(sources).toEqual(["/swagger/scalar.js"]);
    expect(html).not.toMatch(/(?:src|href)="(?:https?:)?\/\//);
  });

  it("serves the page again and again, from every app in the process", async () => {
    const other = createApp(temp.store);
    const statuses = [];
    for (const a of [app, other, app, other]) statuses.push((await a.handle(get("/swagger"))).status);
    expect(statuses).toEqual([200, 200, 200, 200]);
  });

  it("serves the script from the npm package @scalar/api-reference", async () => {
    const r = await app.handle(get("/swagger/scalar.js"));
    const bundled = Bun.file(join(ROOT, "node_modules/@scalar/api-reference/dist/browser/standalone.js"));
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toStartWith("text/javascript");
    expect(Buffer.from(await r.arrayBuffer()).equals(Buffer.from(await bundled.arrayBuffer()))).toBe(true);
  });

  it.each(["/swagger/", "/docs", "/redoc"])("is where %s leads", async (path) => {
    const r = await app.handle(get(path));
    expect({ redirect: r.status >= 300 && r.status < 400, location: r.headers.get("location") }).toEqual({
      redirect: true,
      location: "/swagger",
    });
  });
});
