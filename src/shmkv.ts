/**
 * The entry point of the single binary (`make compile`): the CLI, with the C library inside it. Only
 * this file imports build/libshared_memory_kv.so, so src/cli.ts runs from source without it.
 */
import embeddedLibrary from "../build/libshared_memory_kv.so" with { type: "file" };
import { main } from "./cli.ts";

process.exit(await main(Bun.argv.slice(2), process.env, undefined, embeddedLibrary));
