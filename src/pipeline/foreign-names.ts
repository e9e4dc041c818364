/**
 * Option names from another tool (SAELens's runner config for the training pipelines), accepted on the command
 * line and in `--config` files next to the pipeline's own. Each name either is one of the pipeline's options under
 * another name, has no effect here (accepted, and the run log says why), or asks for something saeflow does not
 * do: then it is an error that names the saeflow equivalent, except where its value is the one that changes
 * nothing, because a config dumped by the other tool lists every field, at its default or not.
 */
import { UserError } from './errors.js';

export type ForeignName =
  /** The pipeline option `to`, with the value converted when the other tool spells it differently. */
  | { to: string; convert?: (value: unknown) => unknown; tool?: string }
  /** Accepted, no effect: `why` goes to the run log. */
  | { ignored: string; tool?: string }
  /** An error naming the equivalent, unless `harmless(value)`: a value that asks for nothing saeflow lacks. */
  | { unsupported: string; harmless?: (value: unknown) => boolean; tool?: string }
  /** A nested object whose fields are themselves option names (SAELens's `sae` and `logger`). */
  | { group: true; tool?: string };

export type ForeignNames = Readonly<Record<string, ForeignName>>;

export interface Translated {
  /** The pipeline's own option names with their values (raw strings from the command line, JSON from a file). */
  values: Array<[string, unknown]>;
  /** One line per accepted name that has no effect, for the run log. */
  notes: string[];
}

function label(name: string, entry: ForeignName, flag: boolean): string {
  return `${flag ? '--' : ''}${name}${entry.tool ? ` (${entry.tool})` : ''}`;
}

/**
 * Translates `[name, value]` pairs: the pipeline's own names (`known`) pass through, foreign ones become the
 * option they mean or a note, and anything else passes through for the caller's unknown-option error. `flag`
 * says the values are command-line strings (and names are shown as `--name`). Two spellings of one option with
 * different values are an error rather than a silent winner.
 */
export function translateForeignNames(
  pairs: ReadonlyArray<readonly [string, unknown]>,
  foreign: ForeignNames,
  known: ReadonlySet<string>,
  source: string,
  flag: boolean,
): Translated {
  const values: Array<[string, unknown]> = [];
  const notes: string[] = [];
  const foreignTargets = new Set<string>();
  const setters = new Map<string, string[]>();
  const setBy = (target: string, name: string) => setters.set(target, [...(setters.get(target) ?? []), name]);
  const visit = (name: string, value: unknown) => {
    if (known.has(name) || !Object.hasOwn(foreign, name)) {
      values.push([name, value]);
      setBy(name, name);
      return;
    }
    const entry = foreign[name]!;
    const shown = label(name, entry, flag);
    if ('group' in entry) {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        throw new UserError(`${source}: ${shown} must be an object of options, got ${JSON.stringify(value)}`);
      }
      for (const [k, v] of Object.entries(value)) visit(k, v);
      return;
    }
    if ('ignored' in entry) {
      notes.push(`${shown} = ${JSON.stringify(value)} has no effect in saeflow: ${entry.ignored}`);
      return;
    }
    if ('unsupported' in entry) {
      const parsed = flag && typeof value === 'string' ? parseLoose(value) : value;
      if (entry.harmless?.(parsed)) return;
      throw new UserError(
        `${source}: ${shown} = ${JSON.stringify(value)} is not supported: ${entry.unsupported}`,
      );
    }
    let converted = value;
    if (entry.convert) {
      converted = entry.convert(flag && typeof value === 'string' ? parseLoose(value) : value);
      if (flag) converted = typeof converted === 'string' ? converted : JSON.stringify(converted);
    }
    values.push([entry.to, converted]);
    setBy(entry.to, name);
    foreignTargets.add(entry.to);
  };
  for (const [name, value] of pairs) visit(name, value);
  for (const target of foreignTargets) {
    const given = values.filter(([k]) => k === target).map(([, v]) => JSON.stringify(v));
    if (new Set(given).size > 1) {
      const names = [...new Set(setters.get(target))];
      throw new UserError(
        `${source}: ${names.map((n) => (flag ? `--${n}` : n)).join(' and ')} all set ${target}, to different values (${given.join(', ')}); give one of them`,
      );
    }
  }
  return { values, notes };
}

/** A command-line string read as JSON where it is JSON (`false`, `0`, `null`), else as the string itself. */
function parseLoose(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}
