/**
 * The Host a request was sent to: a valid host[:port], and, against DNS rebinding, one this server
 * answers for. A page on evil.example whose name its owner makes resolve to 127.0.0.1 may read and
 * write this server as its own origin: the browser's same-origin rule sees only names, and the Host
 * (like the Origin) still says evil.example. So without a token the server answers only for
 * loopback names and addresses, its own HOST and the names in KV_ALLOWED_HOSTS.
 *
 * The gate reads the host from the request's URL, which Bun builds from the Host header (reading the
 * headers themselves would make Bun build them all for every GET). Bun gives a request whose Host is
 * missing or malformed a URL of its path alone; the server (src/server.ts, `withWholeUrl`) makes that
 * a whole URL on NO_HOST or BAD_HOST before the app sees it.
 */
import { BAD_HOST, HOST_SYNTAX } from "../host-name.ts";
import { isLoopback, PATH_SEARCH_FROM } from "./auth.ts";
import { ApiError } from "./errors.ts";

/** The URL's host for a request that sent no Host (HTTP/1.0): a loopback name, always answered. */
const NO_HOST = "localhost";

export interface HostPolicy {
  /** The address the server listens on (HOST): a Host naming it is its own. */
  listenHost?: string;
  /** KV_ALLOWED_HOSTS: more names (no port) to answer for; "*" turns the name check off. */
  allowedHosts?: readonly string[];
  /** With a token and no allowedHosts, the name check is off (the token guards every route). */
  token?: string;
}

type Verdict = "ok" | "bad" | "foreign";

/** Distinct hosts remembered: the normal case is one or two; a client sending many pays the check. */
const CACHE_LIMIT = 64;
const SLASH = "/".charCodeAt(0);

/** Whether the Host check limits names with this configuration. */
function checksNames(policy: HostPolicy): boolean {
  if (policy.allowedHosts?.includes("*")) return false;
  return policy.token === undefined || policy.allowedHosts !== undefined;
}

/**
 * A gate of createApp's request hook: a request whose Host was not a valid host[:port] gets 400;
 * one sent to a name this server does not answer for gets 421. Cheap on the normal path: the last
 * host answered is compared in place, others are looked up in a small cache.
 */
export function requireHost(policy: HostPolicy) {
  const names = checksNames(policy)
    ? new Set([...(policy.allowedHosts ?? []), ...(policy.listenHost ? [policy.listenHost] : [])].map(hostName))
    : undefined;
  const verdicts = new Map<string, Verdict>();
  let last = "";
  return (url: string): void => {
    const end = url.indexOf("/", PATH_SEARCH_FROM);
    if (end === PATH_SEARCH_FROM + last.length && url.startsWith(last, PATH_SEARCH_FROM)) return;
    const host = url.substring(PATH_SEARCH_FROM, end);
    let verdict = verdicts.get(host);
    if (verdict === undefined) {
      verdict = judge(host, names);
      if (verdicts.size < CACHE_LIMIT) verdicts.set(host, verdict);
    }
    if (verdict === "ok") {
      last = host;
      return;
    }
    if (verdict === "bad") throw new ApiError("BAD_REQUEST", "the Host header is missing its value or is not a valid host[:port]");
    throw new ApiError(
      "MISDIRECTED_REQUEST",
      `this server does not answer for the host ${JSON.stringify(host)} (a web page can make a browser send ` +
        "another site's requests here: DNS rebinding). It answers for localhost, 127.0.0.0/8, [::1], its HOST and the " +
        "names in KV_ALLOWED_HOSTS: add the names it is reached by there (--allowed-hosts, comma-separated; * allows any)",
    );
  };
}

/**
 * The start-up note of a server that other machines may reach while the check limits names: they
 * get 421 unless they use one of the names listed.
 */
export function hostCheckNotice(policy: HostPolicy): string | undefined {
  if (!checksNames(policy) || policy.listenHost === undefined || isLoopback(policy.listenHost)) return undefined;
  const names = ["localhost", "127.0.0.0/8", "[::1]", policy.listenHost, ...(policy.allowedHosts ?? [])];
  return `answering requests whose Host is ${names.join(", ")} only (421 for others): add the names clients use to KV_ALLOWED_HOSTS (--allowed-hosts)`;
}

function judge(host: string, names: ReadonlySet<string> | undefined): Verdict {
  const syntax = HOST_SYNTAX.exec(host);
  if (!syntax || host === BAD_HOST || Number(syntax[2] ?? 0) > 65535) return "bad";
  if (!names) return "ok";
  const name = hostName(syntax[1]!);
  return isLoopback(name) || names.has(name) ? "ok" : "foreign";
}

/** A host as the check compares it: lowercase, without brackets or a final dot. */
function hostName(host: string): string {
  return host.toLowerCase().replace(/^\[(.*)\]$/, "$1").replace(/\.$/, "");
}

/**
 * What the server hands the app: Bun's request as it is when its URL is whole (the normal case, one
 * look at a character), else the same request on http://NO_HOST or http://BAD_HOST.
 */
export function withWholeUrl(request: Request): Request {
  const { url } = request;
  if (url.charCodeAt(0) !== SLASH) return request;
  const host = request.headers.get("host") === null ? NO_HOST : BAD_HOST;
  return new Request(`http://${host}${url}`, request);
}
