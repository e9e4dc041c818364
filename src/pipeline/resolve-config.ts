import { UserError } from './errors.js';
import { isOption, OptionError, type ConfigOf, type ConfigSchema, type Option } from './options.js';

/** Every option of a schema with its dotted key (`sae.d_sae`), in declaration order. */
export function flattenSchema(schema: ConfigSchema, prefix = ''): Array<[string, Option<unknown>]> {
  const out: Array<[string, Option<unknown>]> = [];
  for (const [key, value] of Object.entries(schema)) {
    const dotted = prefix ? `${prefix}.${key}` : key;
    if (isOption(value)) out.push([dotted, value]);
    else out.push(...flattenSchema(value, dotted));
  }
  return out;
}

export function defaultsOf<S extends ConfigSchema>(schema: S): ConfigOf<S> {
  const cfg: Record<string, unknown> = {};
  for (const [key, option] of flattenSchema(schema)) setDotted(cfg, key, structuredClone(option.default));
  return cfg as ConfigOf<S>;
}

function setDotted(target: Record<string, unknown>, dotted: string, value: unknown): void {
  const parts = dotted.split('.');
  let node = target;
  for (const part of parts.slice(0, -1)) {
    node[part] ??= {};
    node = node[part] as Record<string, unknown>;
  }
  node[parts[parts.length - 1] as string] = value;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const next = Math.min(
        (row[j] as number) + 1,
        (row[j - 1] as number) + 1,
        diag + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
      diag = row[j] as number;
      row[j] = next;
    }
  }
  return row[b.length] as number;
}

/** `unknown option --foo`, with the nearest known names as a hint. */
export function unknownOptionError(key: string, known: string[], where: string): UserError {
  const near = known
    .map((k) => [k, editDistance(key, k)] as const)
    .filter(([k, d]) => d <= Math.max(2, Math.floor(key.length / 3)) || k.endsWith(`.${key}`))
    .sort((a, b) => a[1] - b[1])
    .slice(0, 3)
    .map(([k]) => `--${k}`);
  const hint = near.length ? ` Did you mean ${near.join(' or ')}?` : '';
  return new UserError(`Unknown option --${key} ${where}.${hint} Run with --help to list the options.`);
}

function optionIndex(schema: ConfigSchema): Map<string, Option<unknown>> {
  return new Map(flattenSchema(schema));
}

/** Applies `key -> raw string` overrides from the command line. */
export function applyCliOverrides<S extends ConfigSchema>(
  schema: S,
  cfg: ConfigOf<S>,
  overrides: ReadonlyArray<readonly [string, string]>,
  pipelineName: string,
): ConfigOf<S> {
  const index = optionIndex(schema);
  const out = structuredClone(cfg) as Record<string, unknown>;
  for (const [key, raw] of overrides) {
    const option = index.get(key);
    if (!option) throw unknownOptionError(key, [...index.keys()], `for pipeline ${pipelineName}`);
    try {
      setDotted(out, key, option.fromString(raw));
    } catch (e) {
      if (e instanceof OptionError) throw new UserError(`Option --${key}: ${e.message}.`);
      throw e;
    }
  }
  return out as ConfigOf<S>;
}

/**
 * Applies a JSON object (from `--config file.json` or a resumed run's config.json), nested or with
 * dotted keys. `source` names the file in errors.
 */
export function applyJsonConfig<S extends ConfigSchema>(
  schema: S,
  cfg: ConfigOf<S>,
  json: unknown,
  source: string,
): ConfigOf<S> {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new UserError(`${source}: expected a JSON object of options.`);
  }
  const index = optionIndex(schema);
  const out = structuredClone(cfg) as Record<string, unknown>;
  const visit = (node: Record<string, unknown>, prefix: string) => {
    for (const [k, value] of Object.entries(node)) {
      const key = prefix ? `${prefix}.${k}` : k;
      const option = index.get(key);
      if (option) {
        try {
          setDotted(out, key, option.check(value));
        } catch (e) {
          if (e instanceof OptionError) throw new UserError(`${source}: option "${key}": ${e.message}.`);
          throw e;
        }
      } else if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
        const isGroup = [...index.keys()].some((known) => known.startsWith(`${key}.`));
        if (!isGroup) throw unknownOptionError(key, [...index.keys()], `in ${source}`);
        visit(value as Record<string, unknown>, key);
      } else {
        throw unknownOptionError(key, [...index.keys()], `in ${source}`);
      }
    }
  };
  visit(json as Record<string, unknown>, '');
  return out as ConfigOf<S>;
}

/** The options table printed by --help. */
export function formatOptionsHelp(schema: ConfigSchema): string {
  const rows = flattenSchema(schema).map(([key, option]) => ({
    flag: `--${key} <${option.typeName}>`,
    doc: option.doc,
    def: option.format(option.default),
  }));
  const width = Math.min(48, Math.max(0, ...rows.map((r) => r.flag.length)));
  return rows
    .map((r) => {
      const pad =
        r.flag.length > width ? `\n${' '.repeat(width + 4)}` : ' '.repeat(width - r.flag.length + 2);
      // A doc that explains its own default ("default: 8 for 12-layer models") says more than "none".
      const def = /\(default[: ]/.test(r.doc) ? '' : ` (default: ${r.def})`;
      return `  ${r.flag}${pad}${r.doc}${def}`;
    })
    .join('\n');
}
