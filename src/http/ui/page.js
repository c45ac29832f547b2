// The live page: the store from /status, kept current by the events of /watch, read with fetch so
// that the API token, when the server asks for one, goes with every request. Keys and values are
// only ever shown as text.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "shmkv-token";
const state = { entries: new Map(), version: 0, max: 0, changed: null, token: sessionStorage.getItem(TOKEN_KEY) ?? "" };

class Unauthorized extends Error {}

function request(path, init = {}) {
  const headers = { ...init.headers, ...(state.token ? { authorization: `Bearer ${state.token}` } : {}) };
  return fetch(path, { ...init, headers }).then((response) => {
    if (response.status === 401) throw new Unauthorized();
    return response;
  });
}

function render() {
  const rows = [...state.entries.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  $("count").textContent = String(rows.length);
  $("max").textContent = String(state.max);
  $("version").textContent = String(state.version);
  const used = state.max ? rows.length / state.max : 0;
  $("used").textContent = `${Math.round(used * 100)}%`;
  $("bar").style.width = `${Math.min(100, used * 100)}%`;
  $("bar").parentElement.classList.toggle("full", used >= 1);
  $("entries").replaceChildren(...rows.map(row));
  $("empty").hidden = rows.length > 0;
}

function row(entry) {
  const tr = document.createElement("tr");
  tr.dataset.key = entry.key;
  if (entry.key === state.changed) tr.className = "changed";
  const cell = (className, text) => {
    const td = tr.insertCell();
    td.className = className;
    td.textContent = text;
    return td;
  };
  cell("key", entry.key);
  cell("value", entry.value);
  cell("revision", entry.revision === undefined ? "" : `#${entry.revision}`);
  cell("time", new Date(entry.timestamp * 1000).toLocaleString());
  const remove = document.createElement("button");
  remove.className = "remove";
  remove.title = `Delete ${entry.key}`;
  remove.textContent = "✕";
  remove.addEventListener("click", () => removeAsked(entry));
  cell("actions", "").append(remove);
  return tr;
}

/**
 * Delete the entry of a row once the user confirms, and only as it was shown (If-Match its
 * revision): a write by another process meanwhile makes it a 412 that says so, not a lost value.
 */
function removeAsked(entry) {
  if (!confirm(`Delete "${entry.key}"? This cannot be undone.`)) return;
  const asShown = entry.revision === undefined ? {} : { "if-match": `"${entry.revision}"` };
  send("DELETE", `/delete/${encodeURIComponent(entry.key)}`, undefined, asShown);
}

function apply(op, data) {
  if (data.revision <= state.version) return; // already in the /status this page read
  state.version = data.revision;
  state.changed = data.key;
  if (op === "set") state.entries.set(data.key, data);
  else state.entries.delete(data.key);
  render();
}

function live(on, text = on ? "live" : "reconnecting…") {
  $("live").classList.toggle("on", on);
  $("live").textContent = text;
}

async function load() {
  const response = await request("/status");
  if (!response.ok) throw new Error(`/status: ${response.status}`);
  const status = await response.json();
  state.entries = new Map(status.entries.map((e) => [e.key, e]));
  state.version = status.version;
  state.max = status.max_entries;
  state.changed = null;
  render();
}

/** Apply the events of /watch after the version read; resolves true on a resync, false when the stream ends. */
async function follow() {
  const response = await request(`/watch?since=${state.version}`, { headers: { accept: "text/event-stream" } });
  if (!response.ok) throw new Error(`/watch: ${response.status}`);
  live(true);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return false;
    buffer += value;
    for (let end; (end = buffer.indexOf("\n\n")) >= 0; buffer = buffer.slice(end + 2)) {
      const event = {};
      for (const line of buffer.slice(0, end).split("\n")) event[line.slice(0, line.indexOf(":"))] = line.slice(line.indexOf(":") + 2);
      if (event.event === "resync") {
        reader.cancel();
        return true;
      }
      if (event.event === "set" || event.event === "delete") apply(event.event, JSON.parse(event.data));
    }
  }
}

/** Resolves once the user gave a token. */
function tokenGiven() {
  $("token").hidden = false;
  $("token-value").focus();
  return new Promise((resolve) => {
    $("token").onsubmit = (e) => {
      e.preventDefault();
      state.token = $("token-value").value;
      sessionStorage.setItem(TOKEN_KEY, state.token);
      $("token").hidden = true;
      resolve();
    };
  });
}

/** Read the whole store, follow it; after a resync read it again, after a failure a second later. */
async function run() {
  for (;;) {
    try {
      await load();
      if (await follow()) continue;
    } catch (error) {
      if (error instanceof Unauthorized) {
        live(false, "token needed");
        await tokenGiven();
        continue;
      }
    }
    live(false);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function send(method, path, body, headers = {}) {
  const init = body
    ? { method, headers: { ...headers, "content-type": "application/json" }, body: JSON.stringify(body) }
    : { method, headers };
  const message = $("message");
  try {
    const response = await request(path, init);
    const answer = await response.json();
    message.className = response.ok ? "" : "error";
    message.textContent = response.ok ? answer.message : answer.detail;
  } catch (error) {
    message.className = "error";
    message.textContent = error instanceof Unauthorized ? "This server needs its API token." : String(error);
  }
}

$("set").addEventListener("submit", (e) => {
  e.preventDefault();
  send("POST", "/set", { key: $("set-key").value, value: $("set-value").value });
});
$("delete").addEventListener("submit", (e) => {
  e.preventDefault();
  send("DELETE", `/delete/${encodeURIComponent($("delete-key").value)}`);
});
fetch("/health")
  .then((r) => r.json())
  .then((h) => ($("name").textContent = h.name ?? ""))
  .catch(() => {});
run();
