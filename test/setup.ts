/** Preloaded into every test file (bunfig.toml): the suite must leave /dev/shm as it found it. */
import { afterAll, expect } from "bun:test";
import { leftoverSegments } from "./helpers/shm.ts";

afterAll(() => {
  expect(leftoverSegments()).toEqual([]);
});
