import { UserError } from '../../../pipeline/errors.js';

/** Which record field (JSONL) or column (Parquet) holds the document. */
export interface FieldOptions {
  /** Field with the document's text. */
  textField?: string;
  /** Field with the document's token ids (a list of ints), for pre-tokenized data. */
  tokensField?: string;
}

export interface FieldChoice {
  kind: 'text' | 'tokens';
  name: string;
}

/** Tried in this order when no field is named, as SAELens's ActivationsStore does. */
const AUTO_FIELDS: FieldChoice[] = [
  { kind: 'tokens', name: 'tokens' },
  { kind: 'tokens', name: 'input_ids' },
  { kind: 'text', name: 'text' },
];

export function checkFieldOptions(opts: FieldOptions): void {
  if (opts.textField !== undefined && opts.tokensField !== undefined) {
    throw new UserError(
      `give either textField or tokensField, not both (got textField '${opts.textField}', tokensField '${opts.tokensField}')`,
    );
  }
  for (const key of ['textField', 'tokensField'] as const) {
    const value = opts[key];
    if (value !== undefined && (typeof value !== 'string' || value.length === 0)) {
      throw new UserError(`${key} must be a non-empty string, got ${JSON.stringify(value)}`);
    }
  }
}

/**
 * Picks the field to read from the fields present in a file (Parquet columns, or the keys of the
 * first JSONL record). `where` names the file (and line) for the error message.
 */
export function chooseField(available: readonly string[], opts: FieldOptions, where: string): FieldChoice {
  checkFieldOptions(opts);
  const explicit: FieldChoice | undefined =
    opts.tokensField !== undefined
      ? { kind: 'tokens', name: opts.tokensField }
      : opts.textField !== undefined
        ? { kind: 'text', name: opts.textField }
        : undefined;
  const list = available.length > 0 ? available.join(', ') : '(none)';
  if (explicit) {
    if (!available.includes(explicit.name)) {
      throw new UserError(`${where}: column '${explicit.name}' not found; available columns: ${list}`);
    }
    return explicit;
  }
  const found = AUTO_FIELDS.find((f) => available.includes(f.name));
  if (!found) {
    throw new UserError(
      `${where}: no 'text', 'tokens' or 'input_ids' column (name one with textField or tokensField); available columns: ${list}`,
    );
  }
  return found;
}

const MAX_TOKEN_ID = 0x7fffffff;

/**
 * A list of token ids from a decoded value: a JS array of numbers or bigints (JSON, hyparquet's
 * INT64 lists) or a typed array. Anything else, or an id that is negative, fractional or beyond
 * int32, is a UserError naming the field and where it was found.
 */
export function toTokenArray(value: unknown, field: string, where: string): Int32Array {
  if (value instanceof Int32Array) return value;
  const isList = Array.isArray(value) || (ArrayBuffer.isView(value) && !(value instanceof DataView));
  if (!isList) {
    throw new UserError(
      `${where}: field '${field}' must be a list of token ids, got ${describeValue(value)}`,
    );
  }
  const list = value as ArrayLike<unknown>;
  const out = new Int32Array(list.length);
  for (let i = 0; i < list.length; i++) {
    const v = list[i];
    const n = typeof v === 'bigint' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_TOKEN_ID) {
      throw new UserError(
        `${where}: field '${field}' item ${i} is not a valid token id (a non-negative int32): ${describeValue(v)}`,
      );
    }
    out[i] = n;
  }
  return out;
}

export function toText(value: unknown, field: string, where: string): string {
  if (typeof value !== 'string') {
    throw new UserError(`${where}: field '${field}' must be a string, got ${describeValue(value)}`);
  }
  return value;
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'bigint') return `${v}`;
  if (typeof v === 'object') return 'an object';
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? `${s.slice(0, 40)}...` : s;
}
