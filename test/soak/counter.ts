/** A Bun writer for the soak: sets KEY to checksummed "KEY-1", "KEY-2", ... until killed, so the
 * number in the store afterwards is how many of its writes were applied. The twin of
 * `kvtool NAME counter KEY`. */
import { kvHash } from "../../src/layout.ts";
import { KvStore } from "../../src/store.ts";
import { checksummed } from "../helpers/kvtool.ts";

const [name, key] = process.argv.slice(2);
const store = KvStore.open(name!);
for (let n = 1; ; n++) store.set(key!, checksummed(`${key}-${n}`, kvHash));
