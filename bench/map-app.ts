/**
 * The framework's own ceiling for the HTTP benchmark: the same routes and bodies as our API, typed
 * the same way, served from a JS Map by a minimal Elysia app.
 */
import { Elysia, t } from "elysia";

export function createMapApp(maxEntries = 10) {
  const map = new Map<string, { value: string; timestamp: number }>();
  let version = 0;
  return new Elysia()
    .get("/get/:key", ({ params, status }) => {
      const e = map.get(params.key);
      return e ? { key: params.key, value: e.value } : status(404, { detail: `Key '${params.key}' not found`, code: "NOT_FOUND" });
    }, { params: t.Object({ key: t.String() }) })
    .post("/set", ({ body, status }) => {
      if (!map.has(body.key) && map.size >= maxEntries) return status(507, { detail: "table full", code: "TABLE_FULL" });
      map.set(body.key, { value: body.value, timestamp: Math.floor(Date.now() / 1000) });
      version++;
      return { success: true, message: `Key '${body.key}' set successfully` };
    }, { body: t.Object({ key: t.String({ minLength: 1 }), value: t.String() }) })
    .get("/status", () => ({
      version,
      entry_count: map.size,
      max_entries: maxEntries,
      entries: [...map].map(([key, e]) => ({ key, value: e.value, timestamp: e.timestamp })),
    }));
}
