/**
 * A reader process for the cross-process benchmark:
 *   bun bench/reader.ts NAME ENTRIES SECONDS  ->  one JSON line {ops, p50, p99}
 * Each read is timed on its own (batch of 1): the tail a writer causes is what is measured.
 */
import { KvStore } from "../src/store.ts";
import { keyOf, measure, scatter } from "./measure.ts";

const [name, entriesArg, secondsArg] = process.argv.slice(2);
const entries = Number(entriesArg);
const keys = Array.from({ length: entries }, (_, i) => keyOf(i));
using store = KvStore.open(name!);
let missing = 0;
const figures = measure(Number(secondsArg), (i) => {
  if (store.get(keys[scatter(i, entries)]!) === undefined) missing++;
}, 1);
if (missing) throw new Error(`${missing} reads found no value`);
console.log(JSON.stringify(figures));
