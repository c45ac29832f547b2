/** Every request and response body of the HTTP API: the one place its shapes are defined. */
import { Type } from "@sinclair/typebox";
import { t } from "elysia";

/** A JSON integer. (Elysia's t.Integer also accepts numeric strings, and documents them.) */
const Integer = Type.Integer;

export const KeyParams = t.Object({
  key: t.String({ description: "The key, percent-encoded UTF-8 (a '/' in a key is %2F)." }),
});
export type KeyParams = typeof KeyParams.static;

export const SetBody = t.Object(
  {
    key: t.String({
      minLength: 1,
      description: "1 to key_max UTF-8 bytes (63 by default), with no NUL byte.",
    }),
    value: t.String({ description: "0 to value_max UTF-8 bytes (255 by default)." }),
  },
  { description: "The entry to insert or replace. Other fields are ignored.", additionalProperties: true },
);
export type SetBody = typeof SetBody.static;

export const GetResponse = t.Object({ key: t.String(), value: t.String() }, { description: "The entry." });
export type GetResponse = typeof GetResponse.static;

export const SuccessResponse = t.Object(
  { success: t.Literal(true), message: t.String() },
  { description: "The write was done." },
);
export type SuccessResponse = typeof SuccessResponse.static;

export const StatusEntry = t.Object({
  key: t.String(),
  value: t.String(),
  timestamp: Integer({ description: "Unix time of the entry's last write, in seconds." }),
});

export const StatusResponse = t.Object(
  {
    version: Integer({ description: "Successful writes (sets and deletes) since the store was created." }),
    entry_count: Integer(),
    max_entries: Integer(),
    entries: t.Array(StatusEntry, { description: "In slot order: insertion order while nothing was deleted." }),
  },
  { description: "The whole store, read as one consistent state." },
);
export type StatusResponse = typeof StatusResponse.static;

export const HealthResponse = t.Object(
  {
    status: t.Literal("ok"),
    name: t.String({ description: "The shared-memory segment's name." }),
    entry_count: Integer(),
    max_entries: Integer(),
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

/** Every error: `detail` for people (the seed's clients read it), `code` for programs. */
export const ErrorResponse = t.Object({
  detail: t.String(),
  code: t.String({ description: "A stable code, such as NOT_FOUND, KEY_TOO_LONG or STORE_UNAVAILABLE." }),
});
export type ErrorResponse = typeof ErrorResponse.static;

/** An ErrorResponse documented for one status code. */
export function errorResponse(description: string) {
  return t.Object(ErrorResponse.properties, { description });
}
