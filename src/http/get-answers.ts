/**
 * GetAnswers: the answers of GET /get/{key} for the entries read again and again, sent as copies
 * while the entry is unchanged.
 *
 * Why: a copy of a Response shares its headers' and its body's bytes, and costs about half of
 * building one (JSON, then a Headers object for the ETag). Under wrk it saved 0.4-1.2 µs of server
 * CPU per GET of an unchanged entry (README "Performance").
 *
 * An answer is a function of its entry's key, value and revision (the ETag) alone, so a kept answer
 * is sent only when all three are the ones just read: a write by any process changes the revision,
 * and nothing needs telling. (The key and the value are compared too: the segment the server opens
 * again after a reattachment may give a revision anew.)
 *
 * A fixed table of cells, each for the keys whose hash leads to it, keeps at most one answer per cell.
 * A cell keeps one at the second read in a row of the same revision, not the first: reads spread over
 * many keys then cost a hash and a number's compare, and leave nothing for the collector to trace
 * (a Map of kept answers cost them 0.8-2.7 µs more per read in-process).
 */
import { withEtag } from "./conditions.ts";
import type { GetResponse } from "./models.ts";

/** Cells of the table (a power of two). */
const CELLS = 256;

interface Kept {
  key: string;
  value: string;
  revision: number;
  /** Never sent: each request gets a copy. */
  response: Response;
}

export class GetAnswers {
  /** The revision each cell's keys were last read at (0: none; revisions start at 1). */
  readonly #lastRead = new Float64Array(CELLS);
  readonly #kept = new Array<Kept | undefined>(CELLS).fill(undefined);

  /** `maxValueLength`: the longest value (UTF-16 units) whose answer may be kept. */
  constructor(readonly maxValueLength = 512) {}

  /** Answers kept now. */
  get size(): number {
    return this.#kept.filter((kept) => kept !== undefined).length;
  }

  /** The answer for `body` at `revision`: a copy of the kept one when it is the same, else a new one. */
  answer(body: GetResponse, revision: number): Response {
    const { key, value } = body;
    const cell = cellOf(key);
    const kept = this.#kept[cell];
    if (kept !== undefined && kept.revision === revision && kept.key === key && kept.value === value) {
      return copy(kept.response);
    }
    const response = withEtag(body, revision);
    if (this.#lastRead[cell] !== revision) this.#lastRead[cell] = revision;
    else if (value.length <= this.maxValueLength) this.#kept[cell] = { key, value, revision, response: copy(response) };
    return response;
  }
}

/** A copy to send. (bun-types declares clone() as returning undici's Response, which is Bun's.) */
function copy(response: Response): Response {
  return response.clone() as Response;
}

/** FNV-1a over the key's UTF-16 units, folded to a cell. */
function cellOf(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return (h ^ (h >>> 16)) & (CELLS - 1);
}
