/** The fixture the HTTP tests share: for each test, a store of its own and an app over it. */
import { afterEach, beforeEach } from "bun:test";
import { createApp, type App, type AppOptions } from "../../src/http/app.ts";
import type { OpenOptions } from "../../src/store.ts";
import { TempStore } from "./shm.ts";

export interface TempApp {
  temp: TempStore;
  app: App;
}

/**
 * Before each test of the file: a new TempStore (with `options.store`) and createApp over it (with
 * `options.app`), handed to `use`. After each: the app closed, the store closed and its name unlinked.
 */
export function eachWithTempApp(use: (made: TempApp) => void, options: { store?: OpenOptions; app?: AppOptions } = {}): void {
  let made: TempApp | undefined;
  beforeEach(() => {
    const temp = new TempStore(options.store);
    made = { temp, app: createApp(temp.store, options.app) };
    use(made);
  });
  afterEach(() => {
    made?.app.close();
    made?.temp[Symbol.dispose]();
    made = undefined;
  });
}
