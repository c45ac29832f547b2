/**
 * What a server or CLI says when it opens an existing store with a geometry other than the one it
 * was given: the segment keeps its own (only `shmkv resize` changes it), and the warning says how.
 */
import type { KvOptions, KvStore } from "./store.ts";

const FIELDS = [
  { option: "maxEntries", flag: "--max-entries", unit: "entries" },
  { option: "keyMax", flag: "--key-max", unit: "bytes of key" },
  { option: "valueMax", flag: "--value-max", unit: "bytes of value" },
] as const;

/** The warning, naming both geometries and the resize command; undefined when they agree. */
export function geometryMismatch(store: KvStore, wanted: KvOptions): string | undefined {
  const has = { maxEntries: store.maxEntries, keyMax: store.keyMax, valueMax: store.valueMax };
  const differing = FIELDS.filter(({ option }) => wanted[option] !== undefined && wanted[option] !== has[option]);
  if (differing.length === 0) return undefined;
  const existing = FIELDS.map(({ option, unit }) => `${has[option]} ${unit}`).join(", ");
  const asked = differing.map(({ option, unit }) => `${wanted[option]} ${unit}`).join(", ");
  const flags = differing.map(({ option, flag }) => `${flag} ${wanted[option]}`).join(" ");
  return (
    `${store.name} exists with ${existing}; asked for ${asked}: the existing segment is used as it is ` +
    `(to change it, keeping every entry: shmkv resize --name ${store.name} ${flags})`
  );
}
