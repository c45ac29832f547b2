/** Every request and response body of the HTTP API: the one place its shapes are defined. */
import { Type } from "@sinclair/typebox";
import { t } from "elysia";
import { TTL_MAX_SECONDS } from "../config.ts";
import { DEFAULTS } from "../limits.ts";

/** A JSON integer. (Elysia's t.Integer also accepts numeric strings, and documents them.) */
const Integer = Type.Integer;

export const KeyParams = t.Object({
  key: t.String({
    description:
      "The key, percent-encoded UTF-8. A '/' in it may be sent as it is (/get/a/b is the key a/b) or as %2F; a final '/' only as %2F.",
  }),
});
export type KeyParams = typeof KeyParams.static;

/**
 * GET /get/{key}'s query: ?raw for the value's bytes. Read from the query Elysia parses anyway, and
 * documented as a parameter (getParameters) rather than checked by a schema on the hot read path.
 */
export interface GetQuery {
  raw?: string;
}

/** The OpenAPI parameters GET /get/{key} reads itself: ?raw and If-None-Match. */
export const getParameters = [
  {
    name: "raw",
    in: "query",
    required: false,
    allowEmptyValue: true,
    description: "Present (?raw): answer the value's bytes as they are stored, as application/octet-stream, not JSON (as Consul's ?raw).",
    schema: { type: "string" as const },
  },
  {
    name: "if-none-match",
    in: "header",
    required: false,
    description: 'The ETag of the copy the client has ("7"): 304 with no body while the entry is still at that revision.',
    schema: { type: "string" as const },
  },
];

/** POST /set's and POST /incr's optional expiry, in seconds (the service turns it into milliseconds). */
const ttl = (more = "") =>
  t.Optional(
    Type.Number({
      minimum: 0.001,
      maximum: TTL_MAX_SECONDS,
      description:
        `Seconds until the entry expires (then every reader finds it absent), a number from 0.001 to ${TTL_MAX_SECONDS} (ten years), ` +
        `counted to the millisecond. Absent: it never expires.${more}`,
      error: `ttl must be a number of seconds from 0.001 to ${TTL_MAX_SECONDS} (ten years), such as 30 or 0.5`,
      examples: [30],
    }),
  );

export const SetBody = t.Object(
  {
    key: t.String({
      minLength: 1,
      description: `1 to key_max UTF-8 bytes (${DEFAULTS.keyMax} by default), with no NUL byte.`,
      error: "key must be a string of at least one character",
      examples: ["mykey"],
    }),
    value: t.String({
      description: `0 to value_max UTF-8 bytes (${DEFAULTS.valueMax} by default).`,
      error: "value must be a string (it may be empty)",
      examples: ["myvalue"],
    }),
    ttl: ttl(),
  },
  {
    description: "The entry to insert or replace. Other fields are ignored.",
    // Said outright: Elysia makes a route's body schema refuse other fields unless it is. (The API
    // page leaves it out of the document: see docs.ts.)
    additionalProperties: true,
    error: 'the body must be a JSON object: {"key": "mykey", "value": "myvalue"}',
    examples: [{ key: "mykey", value: "myvalue" }],
  },
);
export type SetBody = typeof SetBody.static;

/** The response header that carries an entry's revision (OpenAPI, in a response's options). */
const etagHeader = {
  ETag: {
    description: 'The entry\'s revision, quoted: "7". Send it back in If-Match to write only if nothing changed it.',
    schema: { type: "string" },
  },
};

/** The response header that says when an entry expires (absent: it never does). */
const expiryHeader = {
  "X-Expires-At": {
    description: "When the entry expires, in Unix seconds with the milliseconds as a fraction (1764090030.5); absent when it never does.",
    schema: { type: "string" },
  },
};

export const GetResponse = t.Object(
  { key: t.String(), value: t.String() },
  { description: "The entry.", headers: { ...etagHeader, ...expiryHeader } },
);
export type GetResponse = typeof GetResponse.static;

/** A GET whose If-None-Match names the entry's revision. */
export const notModifiedResponse = t.Void({
  description: "Not modified: the entry is still at the revision If-None-Match names; no body.",
  headers: { ...etagHeader, ...expiryHeader },
});

export const SuccessResponse = t.Object(
  { success: t.Literal(true), message: t.String() },
  { description: "The write was done." },
);
export type SuccessResponse = typeof SuccessResponse.static;

/** When an entry expires: present only when it does. */
const ExpiresAt = Type.Number({
  description: "Unix time at which the entry expires, in seconds with the milliseconds as a fraction; absent when it never does.",
});

/** What a full store does: refuse a new entry (none), or evict the least recently used (lru). */
const Evict = t.UnionEnum(["none", "lru"], {
  default: undefined, // a field of an answer: t.UnionEnum would say its first value
  description: "The store's eviction policy, chosen at creation: none (a full store answers 507) or lru (a set evicts the least recently used entries to fit).",
});

export const StatusEntry = t.Object({
  key: t.String(),
  value: t.String(),
  timestamp: Integer({ description: "Unix time of the entry's last write, in seconds." }),
  revision: Integer({ description: "The store's version after the entry's last write (its ETag)." }),
  expires_at: t.Optional(ExpiresAt),
});

const NextCursor = t.Union([t.String(), t.Null()], {
  description: "Where the next page starts (pass it as cursor); null when this page is the last.",
});

const MemoryBytes = Integer({ description: "Bytes of the store's memory for keys and values (its heap)." });
const MemoryUsed = Integer({
  description: "Bytes of that memory live entries hold, chunk rounding included (read as it stands: a write in progress may be counted or not).",
});

export const StatusResponse = t.Object(
  {
    version: Integer({ description: "Successful writes (sets and deletes) since the store was created." }),
    entry_count: Integer(),
    max_entries: Integer(),
    memory_bytes: MemoryBytes,
    memory_used: MemoryUsed,
    evict: Evict,
    entries: t.Array(StatusEntry, { description: "In slot order: insertion order while nothing was deleted." }),
    next_cursor: t.Optional(NextCursor),
  },
  {
    description:
      "The whole store. Every entry is read whole; version and entry_count are those when the read began: every write up to that version is in the entries, and writes made during the read may be too.",
  },
);
export type StatusResponse = typeof StatusResponse.static;

export const HealthResponse = t.Object(
  {
    status: t.Literal("ok"),
    name: t.String({ description: "The shared-memory segment's name." }),
    entry_count: Integer(),
    max_entries: Integer(),
    memory_bytes: MemoryBytes,
    memory_used: MemoryUsed,
    evict: Evict,
    lock: t.Object(
      { held_for_ms: Integer({ description: "How long the write lock has been held by its current holder; 0 when it is free." }) },
      { description: "The store's write lock: a writer stopped or hung inside it shows here, while reads go on." },
    ),
    replication: t.Optional(
      t.Object(
        {
          state: t.String({ description: "starting, loading, following or disconnected." }),
          lag_ms: Integer({ description: "How far behind Redis the segment is, in milliseconds (0 when caught up)." }),
          applied_revision: Integer({ description: "Redis's revision of the last change applied here." }),
          last_error: t.Union([t.String(), t.Null()], { description: "The last failure since the last success, or null." }),
        },
        { description: "With --replicate: how this server's segment follows the namespace in Redis." },
      ),
    ),
    reattached: t.Optional(
      t.Object(
        { at: t.String({ description: "ISO 8601 time." }), reason: t.String() },
        { description: "The last time the segment was unlinked or replaced under the server, which then opened the name again." },
      ),
    ),
  },
  { description: "The store is open." },
);
export type HealthResponse = typeof HealthResponse.static;

export const IndexResponse = t.Object(
  {
    name: t.String(),
    version: t.String(),
    endpoints: t.Record(t.String(), t.String(), { description: "Each route, as 'METHOD /path', and what it does." }),
  },
  { description: "What this server is and what it offers." },
);
export type IndexResponse = typeof IndexResponse.static;

/** The conditions of POST /set and DELETE /delete/{key} (header names are matched in lower case). */
export const ConditionHeaders = t.Object({
  "if-match": t.Optional(
    t.String({ description: 'Write only if the entry is at this revision, its ETag ("7"); * : only if it exists.' }),
  ),
  "if-none-match": t.Optional(t.String({ description: "* : write only if the entry does not exist (create only)." })),
});
export type ConditionHeaders = typeof ConditionHeaders.static;

/**
 * ConditionHeaders as the OpenAPI parameters of a route that reads them itself rather than declaring
 * them as its `headers` schema (POST /set: see app.ts); the same entries the schema would give.
 */
export const conditionParameters = Object.entries(ConditionHeaders.properties).map(([name, schema]) => ({
  description: schema.description,
  schema: { type: "string" as const },
  in: "header",
  name,
  required: false,
}));

/** A set's answer: the seed's body; for a conditional set, the entry's new revision in the ETag header. */
export const SetResponse = t.Object(SuccessResponse.properties, { description: "The write was done.", headers: etagHeader });

/** The largest integer a JSON number carries exactly in every client (2^53 - 1). */
const SAFE = Number.MAX_SAFE_INTEGER;

export const IncrBody = t.Object(
  {
    key: t.String({
      minLength: 1,
      description: `1 to key_max UTF-8 bytes (${DEFAULTS.keyMax} by default), with no NUL byte.`,
    }),
    by: t.Optional(
      t.Union(
        [
          Integer({ minimum: -SAFE, maximum: SAFE }),
          t.String({ pattern: "^-?[0-9]{1,19}$" }),
        ],
        {
          description:
            "What to add (negative subtracts); 1 when absent. A JSON integer within ±(2^53 − 1), or, for the rest " +
            'of the int64 range, a string of decimal digits ("-9223372036854775808").',
          error: "invalid body: by must be an integer within ±(2^53 − 1), or a string of decimal digits within int64",
        },
      ),
    ),
    ttl: ttl(" Applies only when the increment creates the key: an existing counter keeps its expiry."),
  },
  { description: "The counter to increment. Other fields are ignored.", additionalProperties: true },
);
export type IncrBody = typeof IncrBody.static;

export const IncrResponse = t.Object(
  {
    key: t.String(),
    value: t.Integer({
      description:
        "The new value, int64, written as its exact decimal digits: beyond ±(2^53 − 1) a JavaScript client's JSON.parse rounds it.",
    }),
  },
  { description: "The increment was done: the value it made.", headers: etagHeader },
);
export type IncrResponse = typeof IncrResponse.static;

/** DELETE /keys: what to delete (one of the two). */
export const DeleteKeysQuery = t.Object({
  prefix: t.Optional(t.String({ description: "Delete every key that starts with it (not empty)." })),
  all: t.Optional(t.Literal("1", { description: "1: delete every key. Without it, a prefix is required." })),
});
export type DeleteKeysQuery = typeof DeleteKeysQuery.static;

export const DeleteKeysResponse = t.Object(
  { deleted: Integer({ description: "How many keys were deleted, each a delete of its own (a revision and a /watch event)." }) },
  { description: "The keys were deleted." },
);
export type DeleteKeysResponse = typeof DeleteKeysResponse.static;

const pageLimit = (options: { default?: number } = {}) =>
  t.Integer({
    minimum: 1,
    maximum: 1000,
    description: "Entries per page, 1 to 1000.",
    error: "limit must be a whole number from 1 to 1000",
    ...options,
  });
const Cursor = t.String({ description: "The next_cursor of the previous page." });

/** Paging through /status: no limit and no cursor means every entry, as the seed did. */
export const StatusQuery = t.Object({ limit: t.Optional(pageLimit()), cursor: t.Optional(Cursor) });
export type StatusQuery = typeof StatusQuery.static;

export const KeysQuery = t.Object({
  prefix: t.Optional(t.String({ description: "Only keys that start with it." })),
  limit: t.Optional(pageLimit({ default: 100 })),
  cursor: t.Optional(Cursor),
  values: t.Optional(
    t.Union([t.Literal("1"), t.Literal("0")], { description: "1: the whole entries, not just the keys.", error: "values must be 1 or 0" }),
  ),
});
export type KeysQuery = typeof KeysQuery.static;

export const KeysResponse = t.Union(
  [
    t.Object({ keys: t.Array(t.String()), next_cursor: NextCursor }),
    t.Object({ entries: t.Array(StatusEntry), next_cursor: NextCursor }),
  ],
  { description: "One page of keys (or, with values=1, of entries), in slot order." },
);
export type KeysResponse = typeof KeysResponse.static;

export const MetricsResponse = t.String({
  description: "The Prometheus text exposition format, version 0.0.4.",
  "x-media-type": "text/plain; version=0.0.4",
});

/** Every error: `detail` for people (the seed's clients read it), `code` for programs. */
export const ErrorResponse = t.Object({
  detail: t.String(),
  code: t.String({ description: "A stable code, such as NOT_FOUND, KEY_TOO_LONG or STORE_UNAVAILABLE." }),
});
export type ErrorResponse = typeof ErrorResponse.static;

/** A 412: the condition did not hold, and nothing was written. */
export const PreconditionFailedResponse = t.Object(
  {
    ...ErrorResponse.properties,
    code: t.Literal("PRECONDITION_FAILED"),
    revision: Integer({ description: "The entry's revision now: 0 when it does not exist." }),
  },
  { description: "The If-Match or If-None-Match condition does not hold; nothing was written." },
);

/** An ErrorResponse documented for one status code. */
export function errorResponse(description: string) {
  return t.Object(ErrorResponse.properties, { description });
}

/** GET /watch: where to start. Without either, the stream starts from now. */
export const WatchQuery = t.Object({
  since: t.Optional(
    t.Integer({
      minimum: 0,
      description: "Send the changes after this revision (Last-Event-ID wins over it).",
      error: "since must be a revision: a whole number from 0",
    }),
  ),
  prefix: t.Optional(t.String({ description: "Only changes to keys that start with it (resync events always)." })),
});
export type WatchQuery = typeof WatchQuery.static;

export const WatchHeaders = t.Object({
  "last-event-id": t.Optional(
    t.Integer({
      minimum: 0,
      description: "The id of the last event received: EventSource sends it when it reconnects.",
      error: "Last-Event-ID must be a revision: a whole number from 0",
    }),
  ),
});
export type WatchHeaders = typeof WatchHeaders.static;

/** The data of a set or delete event. */
export const WatchChange = t.Object({
  key: t.String(),
  value: t.Optional(t.String({ description: "The value set; absent for a delete." })),
  revision: Integer({ description: "The store's version after this write; also the event's id." }),
  timestamp: Integer({ description: "Unix time of the write, in seconds." }),
  expires_at: t.Optional(ExpiresAt),
  reason: t.Optional(
    t.UnionEnum(["expired", "evicted"], {
      default: undefined, // absent is a delete a client asked for: no default
      description: "Why the store deleted the entry itself: it expired, or a full store evicted it; absent for a delete a client asked for.",
    }),
  ),
});
export type WatchChange = typeof WatchChange.static;

/** The data of a resync event. */
export const WatchResync = t.Object({
  version: Integer({ description: "Reread /status; the stream goes on with the changes after this version." }),
});
export type WatchResync = typeof WatchResync.static;

/** One event of the stream; `x-media-type` makes the documentation list it as text/event-stream. */
export const WatchEvent = t.Object(
  {
    id: t.Optional(t.String({ description: "The change's revision (set and delete events)." })),
    event: t.UnionEnum(["set", "delete", "resync"]),
    data: t.Union([WatchChange, WatchResync], { description: "One line of JSON." }),
  },
  {
    description:
      "Server-Sent Events, one per change: `id: <revision>`, `event: set|delete`, `data: {key, value?, revision, timestamp, expires_at?, reason?}` " +
      '(a delete the store made itself has `reason`, "expired" or "evicted"; a set with an expiry has `expires_at`). ' +
      "A client that fell behind the ring of recent changes (or whose revisions belong to a replaced store) gets " +
      "`event: resync`, `data: {version}`: reread /status. A comment line (`: heartbeat`) comes every 15 s.",
    "x-media-type": "text/event-stream",
  },
);

/** GET /ui: the live page (HTML with its script and style inside). */
export const UiPage = t.String({ description: "An HTML page that shows the store and follows /watch.", "x-media-type": "text/html" });
