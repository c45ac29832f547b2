/**
 * The syntax of a Host: what KV_ALLOWED_HOSTS may list (src/config.ts) and what the HTTP gate
 * accepts (src/http/hosts.ts).
 */

/** A host[:port] as RFC 3986 allows a reg-name (no percent-encoding), an IPv4 or a bracketed IPv6. */
export const HOST_SYNTAX = /^(\[[0-9a-f:.]+\]|[a-z0-9._~!$&'()*+,;=-]+)(?::(\d{1,5}))?$/i;

/**
 * The URL's host for a request whose Host was not a host[:port]: the reserved name "invalid"
 * (RFC 6761: it never resolves, so no client asks for it), which the gate answers with 400.
 */
export const BAD_HOST = "invalid";

/** Whether `name` is a host name or address (no port) that KV_ALLOWED_HOSTS may list. */
export function isHostName(name: string): boolean {
  const syntax = HOST_SYNTAX.exec(name);
  return syntax !== null && syntax[2] === undefined && name !== BAD_HOST;
}
