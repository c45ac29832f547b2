/**
 * Why a segment is not trusted (KV_CHECK_OWNER refused it): its owner and mode as the file says,
 * with the fix. Only words for a message: the library made the decision on the descriptor it opened.
 */
import { readFileSync, statSync } from "node:fs";

/** The message of an UNTRUSTED open of `name` ("/name"), for the process's effective user. */
export function untrustedMessage(name: string): string {
  const path = `/dev/shm${name}`;
  const stat = statSync(path, { throwIfNoEntry: false });
  const me = process.geteuid?.() ?? -1;
  const owner = stat ? `is owned by ${user(stat.uid)}, mode ${octal(stat.mode & 0o777)}` : "was not there any more";
  return (
    `refusing ${path}: it ${owner}; this process runs as ${user(me)}, and trusts only a segment of its own that ` +
    `others may not write (another user could have made it to read or change the store). Remove it, or make it ` +
    `yours (chown ${me} ${path}; chmod o-w ${path}); or, when it is shared on purpose, trust it with ` +
    "--trust-segment-owner (KV_TRUST_SEGMENT_OWNER=1)"
  );
}

/** "uid 65534 (nobody)", or "uid 1234" when /etc/passwd does not name it. */
function user(uid: number): string {
  const name = passwdNames().get(uid);
  return name === undefined ? `uid ${uid}` : `uid ${uid} (${name})`;
}

function passwdNames(): Map<number, string> {
  const names = new Map<number, string>();
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const [name, , uid] = line.split(":");
      if (name && uid && !names.has(Number(uid))) names.set(Number(uid), name);
    }
  } catch {
    // no /etc/passwd: uids only
  }
  return names;
}

function octal(mode: number): string {
  return `0${mode.toString(8).padStart(3, "0")}`;
}
