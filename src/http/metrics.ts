/**
 * GET /metrics in the Prometheus text format (0.0.4): the requests the app answered, by method,
 * route pattern and status, with a latency histogram; and the store's figures, read at each scrape.
 * Recording a request costs two clock reads, three map look-ups and a few additions.
 */
import { Elysia, StatusMap } from "elysia";
import type { KvStats } from "../store.ts";
import type { ReplicationStatus } from "./writer.ts";

export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Upper bounds of the latency buckets, in seconds: from 50 µs (a GET served in-process) to 2.5 s. */
const BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
/** The route label of a request that matched no route. */
const UNMATCHED = "unmatched";
const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);

/** What /metrics tells of the store: its own figures and this process's seqlock read retries. */
export interface StoreFigures extends KvStats {
  read_retries: number;
  /** With --replicate: how the segment follows Redis. */
  replication?: ReplicationStatus;
}

/** The requests of one method and route. */
class Series {
  readonly statuses = new Map<number, number>();
  /** Requests per bucket (not cumulative); the last one is +Inf. */
  readonly buckets = new Float64Array(BUCKETS.length + 1);
  sum = 0;
  count = 0;

  constructor(
    readonly method: string,
    readonly route: string,
  ) {}

  observe(status: number, seconds: number): void {
    this.statuses.set(status, (this.statuses.get(status) ?? 0) + 1);
    let i = 0;
    while (i < BUCKETS.length && seconds > BUCKETS[i]!) i++;
    this.buckets[i]!++;
    this.sum += seconds;
    this.count++;
  }
}

export class HttpMetrics {
  /** By route pattern, then method. */
  readonly #series = new Map<string, Map<string, Series>>();

  /** Count one answered request. `route` is the pattern it matched (undefined: none). */
  observe(method: string, route: string | undefined, status: number, seconds: number): void {
    const routeLabel = route ?? UNMATCHED;
    const methodLabel = METHODS.has(method) ? method : "OTHER"; // clients choose methods: bound the labels
    let byMethod = this.#series.get(routeLabel);
    if (!byMethod) this.#series.set(routeLabel, (byMethod = new Map()));
    let series = byMethod.get(methodLabel);
    if (!series) byMethod.set(methodLabel, (series = new Series(methodLabel, routeLabel)));
    series.observe(status, seconds);
  }

  /** The exposition: the requests so far, and the store's figures (undefined: it is not available). */
  render(store: StoreFigures | undefined): string {
    const all = [...this.#series.values()].flatMap((byMethod) => [...byMethod.values()]);
    const lines = [
      ...family("shmkv_http_requests_total", "counter", "HTTP requests answered, by method, route pattern and status."),
      ...all.flatMap((s) => [...s.statuses].map(([status, n]) => sample("shmkv_http_requests_total", { ...labels(s), status }, n))),
      ...family("shmkv_http_request_duration_seconds", "histogram", "Time to answer a request, in seconds."),
      ...all.flatMap(histogram),
      ...family("shmkv_store_up", "gauge", "1 while the store is open, 0 while it is not available."),
      sample("shmkv_store_up", {}, store ? 1 : 0),
    ];
    if (store) lines.push(...storeLines(store));
    return `${lines.join("\n")}\n`;
  }
}

/**
 * Hooks that time every request the app answers, its errors included, into `metrics`: recorded as
 * the response is mapped, synchronously (onAfterResponse would cost a setImmediate per request).
 * A request refused before routing is labelled "unmatched"; one that an onRequest hook answers
 * early (the trailing-slash redirect) is not counted.
 */
export function measure(metrics: HttpMetrics) {
  const started = Symbol("started");
  type Timed = { [started]?: number };
  return new Elysia()
    .onRequest((context) => {
      (context as Timed)[started] = performance.now();
    })
    .mapResponse({ as: "global" }, (context) => {
      const begun = (context as Timed)[started];
      const value = context.responseValue;
      if (begun !== undefined) {
        (context as Timed)[started] = undefined; // once, should Elysia map a response twice
        const code = context.set.status ?? 200;
        const status = value instanceof Response ? value.status : typeof code === "number" ? code : StatusMap[code];
        metrics.observe(context.request.method, context.route, status, (performance.now() - begun) / 1000);
      }
      // Hand back the response unchanged. Returning nothing should do, but Elysia 1.4.30's app-wide
      // error handler (unmatched routes, errors thrown in onRequest) takes whatever this hook returns
      // as the response, and would answer an empty body. Elysia types the result as a Response, yet
      // maps any value it is given, as it would have mapped this one.
      return value as Response;
    });
}

function storeLines(store: StoreFigures): string[] {
  const gauges: [string, string, number][] = [
    ["shmkv_entries", "Entries in the store.", store.entry_count],
    ["shmkv_capacity_entries", "Entries the store can hold.", store.max_entries],
    ["shmkv_store_version", "The store's version: its successful writes (sets and deletes) since creation.", store.version],
    ["shmkv_segment_bytes", "Size of the shared-memory segment (its mapping), in bytes.", store.segment_bytes],
    ["shmkv_memory_bytes", "Bytes of the store's memory for keys and values (its heap).", store.memory_bytes],
    ["shmkv_memory_used_bytes", "Bytes of that memory live entries hold, chunk rounding included.", store.memory_used],
    ["shmkv_lock_held_seconds", "How long the write lock has been held by its current holder (0 when free).", store.lock_held_ms / 1000],
  ];
  const counters: [string, string, number][] = [
    ["shmkv_lock_recoveries_total", "Times any process repaired the store after a writer died holding the lock.", store.lock_recoveries],
    ["shmkv_read_retries_total", "Lock-free reads by this server that a write overlapped, and were retried.", store.read_retries],
    ["shmkv_expired_total", "Entries reclaimed because they expired, by any process.", store.expired],
    ["shmkv_evictions_total", "Entries evicted to make room in a full store (eviction policy lru), by any process.", store.evictions],
  ];
  if (store.replication) {
    gauges.push(
      ["shmkv_replication_lag_seconds", "How far behind Redis the segment is (0 when caught up).", store.replication.lag_ms / 1000],
      ["shmkv_replication_applied_revision", "Redis's revision of the last change applied to the segment.", store.replication.applied_revision],
      ["shmkv_replication_connected", "1 while replication follows Redis, 0 while it cannot.", store.replication.state === "following" ? 1 : 0],
    );
  }
  return [
    ...gauges.flatMap(([name, help, value]) => [...family(name, "gauge", help), sample(name, {}, value)]),
    ...counters.flatMap(([name, help, value]) => [...family(name, "counter", help), sample(name, {}, value)]),
  ];
}

function histogram(s: Series): string[] {
  const name = "shmkv_http_request_duration_seconds";
  let cumulative = 0;
  const buckets = [...BUCKETS.map(String), "+Inf"].map((le, i) => {
    cumulative += s.buckets[i]!;
    return sample(`${name}_bucket`, { ...labels(s), le }, cumulative);
  });
  return [...buckets, sample(`${name}_sum`, labels(s), s.sum), sample(`${name}_count`, labels(s), s.count)];
}

function labels(s: Series): Record<string, string> {
  return { method: s.method, route: s.route };
}

function family(name: string, type: string, help: string): string[] {
  return [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`];
}

function sample(name: string, labelSet: Record<string, string | number>, value: number): string {
  const pairs = Object.entries(labelSet).map(([k, v]) => `${k}="${String(v).replace(/[\\"\n]/g, escape)}"`);
  return `${name}${pairs.length ? `{${pairs.join(",")}}` : ""} ${value}`;
}

function escape(c: string): string {
  return c === "\n" ? "\\n" : `\\${c}`;
}
