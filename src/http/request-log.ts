/** One log line per request: method, path (no query string, never a body), status, duration. */

export type Handler = (request: Request) => Response | Promise<Response>;

export function withRequestLog(handle: Handler, log: (line: string) => void): Handler {
  return async (request) => {
    const started = performance.now();
    const response = await handle(request);
    // The path as sent, still percent-encoded: a key cannot put control characters in the log.
    log(`${request.method} ${new URL(request.url).pathname} ${response.status} ${(performance.now() - started).toFixed(1)}ms`);
    return response;
  };
}
