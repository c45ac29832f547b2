/** One log line per request: method, path (no query string, never a body), status, duration. */
import { routedPath } from "./auth.ts";

export type Handler = (request: Request) => Response | Promise<Response>;

export function withRequestLog(handle: Handler, log: (line: string) => void): Handler {
  return async (request) => {
    const started = performance.now();
    const response = await handle(request);
    log(`${request.method} ${loggedPath(request.url)} ${response.status} ${(performance.now() - started).toFixed(1)}ms`);
    return response;
  };
}

/**
 * The path as sent, percent-encoded: a key cannot put control characters in the log. Bun's URL of
 * a request holds the path raw, and may not parse (a Host with a port over 65535 is refused with 400,
 * yet logged): then its path is encoded here.
 */
function loggedPath(url: string): string {
  return URL.parse(url)?.pathname ?? encodeURI(routedPath(url));
}
