/**
 * 405 Method Not Allowed: a request whose path a route serves, with another method, is told which
 * methods that path has (Allow), rather than a 404 that says the path does not exist.
 */
import { routedPath } from "./auth.ts";
import { ApiError } from "./errors.ts";

export interface RouteLike {
  method: string;
  path: string;
}

interface PathMethods {
  pattern: RegExp;
  methods: Set<string>;
}

/** A route's path as Elysia's router matches it: `:name` is one segment, `*` the rest. */
function patternOf(path: string): RegExp {
  const parts = path.split("/").map((part) => {
    if (part === "*") return ".*";
    if (part.startsWith(":")) return "[^/]+";
    return part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  });
  return new RegExp(`^${parts.join("/")}$`);
}

/**
 * For a request no route took: METHOD_NOT_ALLOWED, with Allow, when some route serves its path with
 * another method; undefined when none does (a 404). `routes` is read at the first call, when the
 * app holds them all. A GET route also answers HEAD (Elysia runs it without sending the body).
 */
export function wrongMethod(routes: () => readonly RouteLike[]) {
  let table: PathMethods[] | undefined;
  const build = () => {
    const byPath = new Map<string, Set<string>>();
    for (const { method, path } of routes()) {
      const methods = byPath.get(path) ?? new Set<string>();
      methods.add(method);
      if (method === "GET") methods.add("HEAD");
      byPath.set(path, methods);
    }
    return [...byPath].map(([path, methods]) => ({ pattern: patternOf(path), methods }));
  };
  return (request: Request): ApiError | undefined => {
    table ??= build();
    const path = routedPath(request.url);
    const allowed = new Set(table.filter(({ pattern }) => pattern.test(path)).flatMap(({ methods }) => [...methods]));
    if (allowed.size === 0 || allowed.has(request.method)) return undefined;
    const allow = [...allowed].sort().join(", ");
    return new ApiError("METHOD_NOT_ALLOWED", `${request.method} is not a method of ${path}: it answers ${allow}`, undefined, {
      allow,
    });
  };
}
