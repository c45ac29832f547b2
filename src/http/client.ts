/**
 * The type to give Eden (`@elysiajs/eden`) for a typed client of this API. Eden files a route under
 * its path's segments, and GET / under `get`: the same place as the segment "get" of /get/{key},
 * which it then cannot see. KvApi is App without GET / (the description route), so that Eden Fetch
 * (edenFetch<KvApi>) types every store route. Eden Treaty works with App for /set, /status, /keys,
 * /health and /metrics, but not for /get/{key} or /delete/{key}: it takes a segment named like an
 * HTTP method for the method.
 */
import type { Elysia } from "elysia";
import type { App } from "./app.ts";

type Routes = App["~Routes"];

export type KvApi = Elysia<"", any, any, any, Omit<Routes, "get"> & { get: Pick<Routes["get"], ":key"> }>;
