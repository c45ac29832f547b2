/** Debian's Chromium for browser tests: installed when missing, launched with the network cut off. */
import { chromium, type Browser } from "playwright-core";
import { ensureDebianPackage } from "./debian.ts";

export const CHROMIUM = "/usr/bin/chromium";

/** Install Debian's chromium package unless it is there (needs root, as on CI and dev machines). */
export function ensureChromium(): void {
  ensureDebianPackage(CHROMIUM, "chromium");
}

/**
 * Headless Chromium in a fresh profile that can reach loopback only: names other than 127.0.0.1 do
 * not resolve, and anything else goes to a proxy that is not there (Chromium never proxies loopback).
 */
export function launchOffline(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    chromiumSandbox: false,
    args: [
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
      "--proxy-server=http://127.0.0.1:9",
    ],
  });
}

/** Whether a URL the page asked for stays on this machine. */
export function isLoopback(url: string): boolean {
  const { protocol, hostname } = new URL(url);
  return ["data:", "blob:", "about:"].includes(protocol) || hostname === "127.0.0.1" || hostname === "localhost";
}
