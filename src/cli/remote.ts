/**
 * The CLI's writes sent to a server (`--server URL` or KV_SERVER) in place of the segment. A
 * replica's segment takes writes only through its server, which runs them in Redis; the same works
 * for any server, with its token from KV_API_TOKEN or --token-file. The server's answer is printed
 * as the local write's would be; a refusal carries the server's code and detail.
 */
import type { WriteServer } from "../config.ts";

/** What a write answered: its body, as text and as JSON, and the revision its ETag names (when it sent one). */
export interface Written {
  text: string;
  body: Record<string, unknown>;
  revision: number | undefined;
}

/** A refusal by the server, or no answer from it. */
export class RemoteError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** One write request: its answer, or a RemoteError with the server's code and detail. */
export async function send(
  server: WriteServer,
  method: "POST" | "DELETE",
  path: string,
  options: { body?: unknown; headers?: Record<string, string> } = {},
): Promise<Written> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.body !== undefined) headers["content-type"] = "application/json";
  if (server.token !== undefined) headers.authorization = `Bearer ${server.token}`;
  let response: Response;
  try {
    response = await fetch(new URL(path, server.url), { method, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body) });
  } catch (error) {
    throw new RemoteError("SERVER_UNREACHABLE", `cannot reach ${server.url.origin}: ${(error as Error).message}`);
  }
  const text = await response.text();
  const body = parsed(text);
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : `${response.status} ${response.statusText}`;
    throw new RemoteError(typeof body.code === "string" ? body.code : `HTTP_${response.status}`, `${server.url.origin}: ${detail}`);
  }
  const etag = response.headers.get("etag");
  return { text, body, revision: etag === null ? undefined : Number(etag.replaceAll('"', "")) };
}

function parsed(text: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** The condition headers of an expected revision (0: the key must be absent). */
export function conditionHeaders(expected: number | undefined): Record<string, string> {
  if (expected === undefined) return {};
  return expected === 0 ? { "if-none-match": "*" } : { "if-match": `"${expected}"` };
}

/** A key as one path segment: percent-encoded, "/" included. */
export const keyPath = (route: string, key: string) => `${route}/${encodeURIComponent(key)}`;
