/**
 * Whether the packages are installed (`make deps`), told before anything imports them. A module that
 * imports a missing package fails before any of its code runs, with a module-resolution error that
 * does not say what to do: an entry point asks here first, then imports the rest. This module
 * imports nothing but Node's own modules and package.json.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import pkg from "../package.json";

const ROOT = join(import.meta.dir, "..");

/** The packages of package.json's dependencies that node_modules does not hold. */
export function missingPackages(root = ROOT): string[] {
  return Object.keys(pkg.dependencies).filter((name) => !existsSync(join(root, "node_modules", name, "package.json")));
}

/** What to tell someone who runs shmkv from a checkout where `make deps` has not run. */
export function missingPackagesMessage(missing: string[], root = ROOT): string {
  return (
    `shmkv: the packages it needs are not installed (${missing.join(", ")}): ` +
    `run \`make deps\` in ${root} (it installs the pinned bun and the packages)`
  );
}
