/**
 * Which file a segment is: its device and inode. A store's own identity is read from its mapping
 * (/proc/self/maps), not by looking its name up again: a name looked up after the open may already
 * lead elsewhere, the mapping cannot. Comparing it with what the name leads to now tells whether the
 * segment was unlinked or replaced under the store (Linux: POSIX shared memory is /dev/shm).
 */
import { readFileSync, statSync } from "node:fs";

export interface FileIdentity {
  dev: number;
  ino: number;
}

/** The device and inode of the file mapped at `address` (a mapping's first byte); undefined when none is. */
export function mappedIdentity(address: number): FileIdentity | undefined {
  for (const line of readFileSync("/proc/self/maps", "utf8").split("\n")) {
    // "7f3c1a2b3000-7f3c1a2b4000 rw-s 00000000 00:1a 1234   /dev/shm/name"
    const [range, , , device, inode] = line.split(/\s+/, 5);
    if (!range || !device || !inode || Number.parseInt(range, 16) !== address) continue;
    const [major, minor] = device.split(":").map((hex) => Number.parseInt(hex, 16));
    return { dev: deviceNumber(major!, minor!), ino: Number(inode) };
  }
  return undefined;
}

/** What `/dev/shm${name}` is now; undefined when the name leads nowhere. */
export function namedIdentity(name: string): FileIdentity | undefined {
  const stat = statSync(`/dev/shm${name}`, { throwIfNoEntry: false });
  return stat && { dev: stat.dev, ino: stat.ino };
}

/**
 * Why the name `name` no longer leads to the segment `mapped`, or undefined when it still does (or
 * when the mapping's identity is unknown).
 */
export function replacement(name: string, mapped: FileIdentity | undefined): string | undefined {
  if (!mapped) return undefined;
  const now = namedIdentity(name);
  if (!now) return `/dev/shm${name} was unlinked`;
  if (now.dev !== mapped.dev || now.ino !== mapped.ino) {
    return `/dev/shm${name} was replaced by another segment (inode ${now.ino}, was ${mapped.ino})`;
  }
  return undefined;
}

/** st_dev as stat(2) reports it for a device "major:minor" (glibc's makedev). */
function deviceNumber(major: number, minor: number): number {
  return (major & 0xfff) * 2 ** 8 + (minor & 0xff) + Math.floor(minor / 2 ** 8) * 2 ** 20 + Math.floor(major / 2 ** 12) * 2 ** 44;
}
