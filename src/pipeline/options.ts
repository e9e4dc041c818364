/**
 * Declarative pipeline options: each option knows its default, its one-line doc, how to read itself
 * from a command-line string and how to check a value that came from JSON. A pipeline's `config` is a
 * tree of these (nested objects become dotted keys), and `ConfigOf` gives the typed resolved config.
 */
export interface Option<T> {
  readonly isOption: true;
  readonly default: T;
  readonly doc: string;
  /** Shown in --help, e.g. `integer >= 2` or `topk|standard`. */
  readonly typeName: string;
  /** Parse a command-line value; throws a message (not an Error) describing what was expected. */
  fromString(raw: string): T;
  /** Check a value from a JSON config file or a default; throws a message on mismatch. */
  check(value: unknown): T;
  format(value: T): string;
}

export type ConfigSchema = { readonly [key: string]: Option<unknown> | ConfigSchema };

export type ConfigOf<S extends ConfigSchema> = {
  -readonly [K in keyof S]: S[K] extends Option<infer T>
    ? T
    : S[K] extends ConfigSchema
      ? ConfigOf<S[K]>
      : never;
};

export function isOption(x: unknown): x is Option<unknown> {
  return typeof x === 'object' && x !== null && (x as { isOption?: unknown }).isOption === true;
}

class OptionError extends Error {}
const fail = (expected: string, got: unknown): never => {
  throw new OptionError(`expected ${expected}, got ${JSON.stringify(got)}`);
};
export { OptionError };

function make<T>(spec: Omit<Option<T>, 'isOption' | 'format'> & { format?: (v: T) => string }): Option<T> {
  const checked = spec.check(spec.default);
  return {
    isOption: true,
    format: (v: T) => JSON.stringify(v),
    ...spec,
    default: checked,
  };
}

interface NumberBounds {
  min?: number;
  max?: number;
}

function boundsText(name: string, { min, max }: NumberBounds): string {
  if (min !== undefined && max !== undefined) return `${name} in [${min}, ${max}]`;
  if (min !== undefined) return `${name} >= ${min}`;
  if (max !== undefined) return `${name} <= ${max}`;
  return name;
}

function numberOption(
  defaultValue: number,
  doc: string,
  integer: boolean,
  bounds: NumberBounds,
): Option<number> {
  const typeName = boundsText(integer ? 'integer' : 'number', bounds);
  const check = (v: unknown): number => {
    if (typeof v !== 'number' || !Number.isFinite(v)) return fail(typeName, v);
    if (integer && !Number.isInteger(v)) return fail(typeName, v);
    if (bounds.min !== undefined && v < bounds.min) return fail(typeName, v);
    if (bounds.max !== undefined && v > bounds.max) return fail(typeName, v);
    return v;
  };
  return make({
    default: defaultValue,
    doc,
    typeName,
    check,
    format: (v) => String(v),
    fromString: (raw) => {
      // Accept 1e6 and 1_000_000, which is how people write token counts.
      const cleaned = raw.trim().replace(/_/g, '');
      if (cleaned === '' || Number.isNaN(Number(cleaned))) return fail(typeName, raw);
      return check(Number(cleaned));
    },
  });
}

export const opt = {
  number: (defaultValue: number, doc: string, bounds: NumberBounds = {}) =>
    numberOption(defaultValue, doc, false, bounds),
  int: (defaultValue: number, doc: string, bounds: NumberBounds = {}) =>
    numberOption(defaultValue, doc, true, bounds),

  string: (defaultValue: string, doc: string): Option<string> =>
    make({
      default: defaultValue,
      doc,
      typeName: 'string',
      check: (v) => (typeof v === 'string' ? v : fail('a string', v)),
      fromString: (raw) => raw,
      format: (v) => (v === '' ? '""' : v),
    }),

  choice: <const C extends string>(choices: readonly C[], defaultValue: C, doc: string): Option<C> => {
    const typeName = choices.join('|');
    const check = (v: unknown): C => (choices.includes(v as C) ? (v as C) : fail(`one of ${typeName}`, v));
    return make({ default: defaultValue, doc, typeName, check, fromString: check, format: (v) => v });
  },

  boolean: (defaultValue: boolean, doc: string): Option<boolean> =>
    make({
      default: defaultValue,
      doc,
      typeName: 'boolean',
      check: (v) => (typeof v === 'boolean' ? v : fail('true or false', v)),
      fromString: (raw) => {
        const s = raw.toLowerCase();
        if (['true', '1', 'yes'].includes(s)) return true;
        if (['false', '0', 'no'].includes(s)) return false;
        return fail('true or false', raw);
      },
      format: (v) => String(v),
    }),

  /** A list of strings; on the command line, comma-separated. */
  list: (defaultValue: string[], doc: string): Option<string[]> =>
    make({
      default: defaultValue,
      doc,
      typeName: 'comma-separated list',
      check: (v) =>
        Array.isArray(v) && v.every((s) => typeof s === 'string') ? [...v] : fail('a list of strings', v),
      fromString: (raw) =>
        raw
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== ''),
      format: (v) => v.join(','),
    }),

  /** A list of numbers; on the command line, comma-separated. */
  numberList: (defaultValue: number[], doc: string, bounds: NumberBounds = {}): Option<number[]> => {
    const item = numberOption(bounds.min ?? 0, doc, false, bounds);
    return make({
      default: defaultValue,
      doc,
      typeName: `comma-separated ${item.typeName}`,
      check: (v) => (Array.isArray(v) ? v.map((x) => item.check(x)) : fail('a list of numbers', v)),
      fromString: (raw) =>
        raw
          .split(',')
          .filter((s) => s.trim() !== '')
          .map((s) => item.fromString(s)),
      format: (v) => v.join(','),
    });
  },

  /** Makes an option accept `null` (written `none` or `null` on the command line), e.g. "no limit". */
  nullable: <T>(inner: Option<T>, defaultValue: T | null = inner.default): Option<T | null> =>
    make<T | null>({
      default: defaultValue,
      doc: inner.doc,
      typeName: `${inner.typeName} or none`,
      check: (v) => (v === null ? null : inner.check(v)),
      fromString: (raw) => {
        if (raw === 'none' || raw === 'null') return null;
        try {
          return inner.fromString(raw);
        } catch (e) {
          if (e instanceof OptionError) return fail(`${inner.typeName} or none`, raw);
          throw e;
        }
      },
      format: (v) => (v === null ? 'none' : inner.format(v)),
    }),

  /** Structured values (e.g. a list of SAE specs for a sweep): JSON on the command line. */
  json: <T>(defaultValue: T, doc: string, check: (v: unknown) => T, typeName = 'JSON'): Option<T> =>
    make({
      default: defaultValue,
      doc,
      typeName,
      check,
      fromString: (raw) => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(raw);
        } catch {
          return fail(`${typeName} (as JSON)`, raw);
        }
        return check(parsed);
      },
    }),
};
