/** Debian packages a test needs: installed when missing, as `make test` does on a fresh machine (as root). */
import { existsSync } from "node:fs";

/** Install the Debian package `pkg` unless `path` (a file it provides) is there. */
export function ensureDebianPackage(path: string, pkg: string): void {
  if (existsSync(path)) return;
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  for (const cmd of [["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", pkg]]) {
    const r = Bun.spawnSync(cmd, { env, stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed (${r.exitCode}):\n${r.stderr}`);
  }
}
