/**
 * A Server-Sent Events client on a plain TCP socket: fetch would hold back all but a few hundred
 * streams per process, and the tests open a thousand. It speaks just enough HTTP/1.1 (chunked
 * bodies) and records each event with the time it arrived.
 */
import type { Socket } from "bun";
import { waitFor, type WaitOptions } from "./wait.ts";

export interface SseEvent {
  id?: string;
  event: string;
  data: string;
  /** performance.timeOrigin + performance.now() when its last byte arrived, in ms. */
  at: number;
}

const CRLF = "\r\n";

export class SseClient {
  status = 0;
  readonly headers = new Map<string, string>();
  readonly events: SseEvent[] = [];
  /** Comment lines (": heartbeat"), without the colon. */
  readonly comments: string[] = [];
  /** The body, once the server ended it (or the connection closed). */
  ended = false;
  #socket: Socket | undefined;
  #raw = ""; // bytes not yet parsed as HTTP
  #inBody = false;
  #text = ""; // body (latin1, as received) not yet parsed as events

  private constructor() {}

  /** GET `path` from the server at `base` ("http://127.0.0.1:PORT/"), with `headers`. */
  static async open(base: string, path: string, headers: Record<string, string> = {}): Promise<SseClient> {
    const { hostname, port } = new URL(base);
    const client = new SseClient();
    client.#socket = await Bun.connect({
      hostname,
      port: Number(port),
      socket: {
        data: (_socket, data) => client.#receive(data.toString("latin1")),
        close: () => void (client.ended = true),
        error: () => void (client.ended = true),
      },
    });
    const lines = [`GET ${path} HTTP/1.1`, `Host: ${hostname}:${port}`, "Accept: text/event-stream"];
    for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
    client.#socket.write(`${lines.join(CRLF)}${CRLF}${CRLF}`);
    return client;
  }

  /** Wait for the status line and headers. */
  async answered(options?: WaitOptions): Promise<number> {
    return waitFor(() => this.status, { what: "the response's headers", ...options });
  }

  /** Wait until `count` events arrived; resolves with all of them. */
  async received(count: number, options?: WaitOptions): Promise<SseEvent[]> {
    await waitFor(() => this.events.length >= count, { what: `${count} events`, ...options });
    return this.events;
  }

  close(): void {
    this.#socket?.end();
  }

  #receive(chunk: string): void {
    this.#raw += chunk;
    if (!this.#inBody) {
      const end = this.#raw.indexOf(CRLF + CRLF);
      if (end < 0) return;
      const [statusLine = "", ...headerLines] = this.#raw.slice(0, end).split(CRLF);
      for (const line of headerLines) {
        const colon = line.indexOf(":");
        this.headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
      }
      this.status = Number(statusLine.split(" ")[1]);
      this.#raw = this.#raw.slice(end + 4);
      this.#inBody = true;
    }
    if (this.headers.get("transfer-encoding") === "chunked") return this.#unchunk();
    this.#text += this.#raw; // an error's JSON body
    this.#raw = "";
  }

  /** Take whole chunks of the chunked body off #raw. */
  #unchunk(): void {
    for (;;) {
      const sizeEnd = this.#raw.indexOf(CRLF);
      if (sizeEnd < 0) return;
      const size = Number.parseInt(this.#raw.slice(0, sizeEnd), 16);
      if (size === 0) {
        this.ended = true;
        return;
      }
      const start = sizeEnd + 2;
      if (this.#raw.length < start + size + 2) return;
      this.#text += this.#raw.slice(start, start + size);
      this.#raw = this.#raw.slice(start + size + 2);
      this.#parse();
    }
  }

  #parse(): void {
    const at = performance.timeOrigin + performance.now();
    let end: number;
    while ((end = this.#text.indexOf("\n\n")) >= 0) {
      const block = Buffer.from(this.#text.slice(0, end), "latin1").toString("utf8");
      this.#text = this.#text.slice(end + 2);
      const event: SseEvent = { event: "message", data: "", at };
      let isEvent = false;
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) this.comments.push(line.slice(1).trim());
        const colon = line.indexOf(": ");
        const [field, value] = colon < 0 ? [line, ""] : [line.slice(0, colon), line.slice(colon + 2)];
        if (field === "id") event.id = value;
        if (field === "event") event.event = value;
        if (field === "data") {
          event.data = value;
          isEvent = true;
        }
      }
      if (isEvent) this.events.push(event);
    }
  }
}
