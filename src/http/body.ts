/** The request-body size limit, enforced before a body is parsed, with a JSON answer (413). */
import { ApiError } from "./errors.ts";

export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;

function tooLarge(limit: number): ApiError {
  return new ApiError("BODY_TOO_LARGE", `the request body is larger than ${limit} bytes`);
}

/**
 * A parse hook to run before Elysia's JSON parser. A body that declares its length is refused
 * unread when over `limit`, else left to the JSON parser (undefined). A body without a length
 * (chunked) is counted while it is read, refused as soon as it passes `limit`, and parsed here,
 * since its stream is then consumed.
 */
export function limitBody(limit: number) {
  return async ({ request }: { request: Request }): Promise<unknown> => {
    const declared = request.headers.get("content-length");
    if (declared !== null) {
      if (Number(declared) > limit) throw tooLarge(limit);
      return undefined;
    }
    // Elysia reports a throw here as a parse failure: invalid JSON is a 400 like any other.
    return JSON.parse(await readAtMost(request, limit));
  };
}

async function readAtMost(request: Request, limit: number): Promise<string> {
  if (!request.body) return "";
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of request.body) {
    total += chunk.byteLength;
    if (total > limit) throw tooLarge(limit);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}
