/**
 * The live page of GET /ui: one HTML document with its style and script inside (src/http/ui/), so
 * it needs nothing but this server; a Content-Security-Policy lets it run only those two and talk
 * only to its own origin.
 */
import style from "./ui/page.css" with { type: "text" };
import script from "./ui/page.js" with { type: "text" };

const sha256 = (text: string) => `'sha256-${new Bun.CryptoHasher("sha256").update(text).digest("base64")}'`;

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>shmkv</title>
<style>${style}</style>
</head>
<body>
<header><h1>shmkv</h1><span class="name" id="name"></span>
  <form id="token" hidden><input id="token-value" type="password" placeholder="API token" aria-label="API token" required><button type="submit">Use</button></form>
  <span class="live" id="live">connecting…</span></header>
<main>
  <section class="stats">
    <div class="card stat"><div class="label">Entries</div><div class="value"><span id="count">0</span> <small>of <span id="max">0</span></small></div></div>
    <div class="card stat"><div class="label">Capacity used</div><div class="value" id="used">0%</div><div class="bar"><div id="bar"></div></div></div>
    <div class="card stat"><div class="label">Version</div><div class="value" id="version">0</div></div>
  </section>
  <section class="forms">
    <form class="card" id="set"><h2>Set</h2><div class="row">
      <input id="set-key" name="key" placeholder="key" required aria-label="Key to set">
      <input id="set-value" name="value" placeholder="value" aria-label="Value">
      <button type="submit">Set</button></div></form>
    <form class="card" id="delete"><h2>Delete</h2><div class="row">
      <input id="delete-key" name="key" placeholder="key" required aria-label="Key to delete">
      <button type="submit" class="danger">Delete</button></div></form>
  </section>
  <div id="message" role="status"></div>
  <section class="card entries">
    <table><thead><tr><th>Key</th><th>Value</th><th>Revision</th><th>Updated</th><th></th></tr></thead><tbody id="entries"></tbody></table>
    <div class="empty" id="empty">No entries yet.</div>
  </section>
  <footer>Follows <code>/watch</code>: writes by any process on this host show up here as they happen. API documentation: <a href="/swagger">/swagger</a>.</footer>
</main>
<script>${script}</script>
</body>
</html>
`;

const HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "content-security-policy": `default-src 'none'; connect-src 'self'; style-src ${sha256(style)}; script-src ${sha256(script)}`,
  "cache-control": "no-cache",
};

export function uiPage(): Response {
  return new Response(PAGE, { headers: HEADERS });
}
