/**
 * What a server or CLI says when it opens an existing store with a geometry (or an eviction policy)
 * other than the one it was given: the segment keeps its own (only `shmkv resize` changes it), and
 * the warning says how.
 */
import type { KvOptions, KvStore } from "./store.ts";

const FIELDS = [
  { option: "maxEntries", flag: "--max-entries", shown: (n: unknown) => `${n} entries` },
  { option: "keyMax", flag: "--key-max", shown: (n: unknown) => `${n} bytes of key` },
  { option: "valueMax", flag: "--value-max", shown: (n: unknown) => `${n} bytes of value` },
  { option: "memoryBytes", flag: "--memory", shown: (n: unknown) => `${n} bytes of memory` },
  { option: "evict", flag: "--evict", shown: (policy: unknown) => `eviction ${policy}` },
] as const;

type Option = (typeof FIELDS)[number]["option"];

/** The warning, naming both geometries and the resize command; undefined when they agree. */
export function geometryMismatch(store: KvStore, wanted: KvOptions): string | undefined {
  const has = { maxEntries: store.maxEntries, keyMax: store.keyMax, valueMax: store.valueMax, memoryBytes: store.memoryBytes, evict: store.evict };
  // A heap's size is memory_bytes rounded down to 16; a store made without one has none to compare.
  const same = (option: Option, value: number | string) =>
    option === "memoryBytes" ? store.memoryOption !== 0 && Number(value) - (Number(value) % 16) === has.memoryBytes : value === has[option];
  const differing = FIELDS.filter(({ option }) => wanted[option] !== undefined && !same(option, wanted[option]!));
  if (differing.length === 0) return undefined;
  // Its memory is named when it has some, or when that is what was asked for; its policy when asked for another.
  const named = (option: Option) => differing.some((d) => d.option === option);
  const listed = FIELDS.filter(({ option }) => (option === "memoryBytes" ? store.memoryOption !== 0 || named(option) : option !== "evict" || named(option)));
  const existing = listed.map(({ option, shown }) => shown(has[option])).join(", ");
  const asked = differing.map(({ option, shown }) => shown(wanted[option])).join(", ");
  const flags = differing.map(({ option, flag }) => `${flag} ${wanted[option]}`).join(" ");
  return (
    `${store.name} exists with ${existing}; asked for ${asked}: the existing segment is used as it is ` +
    `(to change it, keeping every entry: shmkv resize --name ${store.name} ${flags})`
  );
}
