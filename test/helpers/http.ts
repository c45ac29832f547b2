/** Requests for `app.handle` and the checks every HTTP test makes. */
import { expect } from "bun:test";

export const BASE = "http://localhost";

export function get(path: string): Request {
  return new Request(`${BASE}${path}`);
}

export function del(path: string): Request {
  return new Request(`${BASE}${path}`, { method: "DELETE" });
}

/** POST /set with `body` as given (a string is sent verbatim, anything else as JSON). */
export function postSet(body: unknown, headers: Record<string, string> = { "content-type": "application/json" }): Request {
  return new Request(`${BASE}/set`, {
    method: "POST",
    headers,
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** POST /incr with `body` (as JSON). */
export function postIncr(body: unknown, headers: Record<string, string> = {}): Request {
  return new Request(`${BASE}/incr`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** DELETE /keys with the query `query` ("prefix=a", "all=1", ""). */
export function deleteKeys(query: string, headers: Record<string, string> = {}): Request {
  return new Request(`${BASE}/keys${query ? `?${query}` : ""}`, { method: "DELETE", headers });
}

/** A key as it goes in a URL path. */
export function keyPath(route: "get" | "delete", key: string): string {
  return `/${route}/${encodeURIComponent(key)}`;
}

export interface Answer {
  status: number;
  body: unknown;
}

/** Status and parsed JSON body of a response; fails the test when the body is not JSON. */
export async function answer(response: Response | Promise<Response>): Promise<Answer> {
  const r = await response;
  expect(r.headers.get("content-type") ?? "").toStartWith("application/json");
  return { status: r.status, body: await r.json() };
}

/** An error answer: `status`, and a JSON body {detail, code} with that code and a detail matching. */
export async function expectError(response: Response | Promise<Response>, status: number, code: string, detail: RegExp) {
  const got = await answer(response);
  expect(got).toEqual({ status, body: { detail: expect.stringMatching(detail), code } });
}
