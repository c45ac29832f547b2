/**
 * What a server or CLI says when it opens an existing store with a geometry other than the one it
 * was given: the segment keeps its own (only `shmkv resize` changes it), and the warning says how.
 */
import type { KvOptions, KvStore } from "./store.ts";

const FIELDS = [
  { option: "maxEntries", flag: "--max-entries", unit: "entries" },
  { option: "keyMax", flag: "--key-max", unit: "bytes of key" },
  { option: "valueMax", flag: "--value-max", unit: "bytes of value" },
  { option: "memoryBytes", flag: "--memory", unit: "bytes of memory" },
] as const;

/** The warning, naming both geometries and the resize command; undefined when they agree. */
export function geometryMismatch(store: KvStore, wanted: KvOptions): string | undefined {
  const has = { maxEntries: store.maxEntries, keyMax: store.keyMax, valueMax: store.valueMax, memoryBytes: store.memoryBytes };
  // A heap's size is memory_bytes rounded down to 16; a store made without one has none to compare.
  const same = (option: (typeof FIELDS)[number]["option"], value: number) =>
    option === "memoryBytes" ? store.memoryOption !== 0 && value - (value % 16) === has.memoryBytes : value === has[option];
  const differing = FIELDS.filter(({ option }) => wanted[option] !== undefined && !same(option, wanted[option]!));
  if (differing.length === 0) return undefined;
  // Its memory is named when it has some, or when that is what was asked for.
  const shown = FIELDS.filter(({ option }) => option !== "memoryBytes" || store.memoryOption !== 0 || differing.some((d) => d.option === option));
  const existing = shown.map(({ option, unit }) => `${has[option]} ${unit}`).join(", ");
  const asked = differing.map(({ option, unit }) => `${wanted[option]} ${unit}`).join(", ");
  const flags = differing.map(({ option, flag }) => `${flag} ${wanted[option]}`).join(" ");
  return (
    `${store.name} exists with ${existing}; asked for ${asked}: the existing segment is used as it is ` +
    `(to change it, keeping every entry: shmkv resize --name ${store.name} ${flags})`
  );
}
