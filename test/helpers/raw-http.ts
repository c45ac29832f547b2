/** HTTP/1.1 over a bare TCP socket, for what fetch will not send: raw bytes, huge or paced bodies, stalls. */
import { connect, type Socket } from "node:net";

export interface RawAnswer {
  /** The status line's code; 0 when the server closed without answering. */
  status: number;
  headers: Record<string, string>;
  body: string;
}

function parse(raw: Buffer): RawAnswer {
  const text = raw.toString("latin1");
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) return { status: 0, headers: {}, body: "" };
  const [statusLine = "", ...lines] = text.slice(0, end).split("\r\n");
  const headers = Object.fromEntries(
    lines.map((line) => [line.slice(0, line.indexOf(":")).toLowerCase(), line.slice(line.indexOf(":") + 1).trim()]),
  );
  const body = raw.subarray(Buffer.byteLength(text.slice(0, end + 4), "latin1"));
  return { status: Number(statusLine.split(" ")[1]), headers, body: body.toString("utf8") };
}

function open(url: string): Socket {
  const { hostname, port } = new URL(url);
  return connect(Number(port), hostname);
}

/** Send `bytes` as they are (a whole request, which should say `Connection: close`); the answer. */
export function rawRequest(url: string, bytes: string | Uint8Array): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = open(url);
    const chunks: Buffer[] = [];
    socket.on("data", (chunk) => chunks.push(Buffer.from(chunk)));
    socket.on("error", reject);
    socket.on("close", () => resolve(parse(Buffer.concat(chunks))));
    socket.end(typeof bytes === "string" ? Buffer.from(bytes, "latin1") : bytes);
  });
}

export interface Upload {
  answer: RawAnswer;
  /** Body bytes handed to the socket before the server closed it. */
  sent: number;
}

/**
 * Send `head` (request line and headers, with the blank line), then up to `total` body bytes of
 * spaces, as fast as the socket takes them, raw or as chunks; stop when the server closes.
 */
export function upload(url: string, head: string, total: number, chunked: boolean): Promise<Upload> {
  return new Promise((resolve) => {
    const socket = open(url);
    const block = Buffer.alloc(64 * 1024, " ");
    const piece = chunked ? Buffer.concat([Buffer.from(`${block.length.toString(16)}\r\n`), block, Buffer.from("\r\n")]) : block;
    const chunks: Buffer[] = [];
    let sent = 0;
    const pump = () => {
      while (sent < total && !socket.destroyed) {
        sent += block.length;
        if (!socket.write(piece)) return void socket.once("drain", pump);
      }
    };
    socket.on("data", (chunk) => chunks.push(Buffer.from(chunk)));
    socket.on("error", () => socket.destroy()); // the server closing while we write: EPIPE or ECONNRESET
    socket.on("close", () => resolve({ answer: parse(Buffer.concat(chunks)), sent }));
    socket.write(head);
    pump();
  });
}

export interface SlowClient {
  /** Resolves, with what the server sent (if anything), once the server has closed the connection. */
  closed: Promise<RawAnswer>;
  /** Bytes of `bytes` sent so far. */
  readonly sent: number;
}

/** Send `first` at once, then `bytes` one at a time, every `intervalMs`; never closes by itself. */
export function slowClient(url: string, first: string, bytes: string, intervalMs: number): SlowClient {
  const socket = open(url);
  const chunks: Buffer[] = [];
  let sent = 0;
  socket.write(first);
  const timer = setInterval(() => {
    if (sent < bytes.length && !socket.destroyed) socket.write(bytes[sent++]!);
  }, intervalMs);
  socket.on("data", (chunk) => chunks.push(Buffer.from(chunk)));
  socket.on("error", () => socket.destroy());
  const closed = new Promise<RawAnswer>((resolve) =>
    socket.on("close", () => {
      clearInterval(timer);
      resolve(parse(Buffer.concat(chunks)));
    }),
  );
  return {
    closed,
    get sent() {
      return sent;
    },
  };
}
