/**
 * Names of the SAEs of a sweep, from the setting each one changes (`topk-k16`, `jumprelu-l0c2`), so folders,
 * tables and reports say which SAE is which without a lookup in config.json.
 */

const SHORT: Record<string, string> = {
  k: 'k',
  d_sae: 'd',
  expansion_factor: 'x',
  l1_coefficient: 'l1c',
  l0_coefficient: 'l0c',
  lr: 'lr',
  layer: 'L',
};

function valueText(v: unknown): string {
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

function settingText(key: string, value: unknown): string {
  if (key === 'hook_name' || key === 'hook_name_out') return valueText(value);
  if (value === true) return key;
  if (value === false) return `no-${key}`;
  return `${SHORT[key] ?? key}${valueText(value)}`;
}

function sanitize(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]+/g, '_');
}

/**
 * SAE `index`'s name: `<architecture>-<hook>` for a single SAE, `<architecture>-<setting>...` for a sweep entry
 * (its own overrides, in the order given). Entries that would share a name get their index appended.
 */
export function sweepSaeName(
  drafts: readonly Record<string, unknown>[],
  overrides: readonly Record<string, unknown>[],
  index: number,
): string {
  const draft = drafts[index]!;
  if (overrides.length <= 1) return sanitize(`${String(draft.architecture)}-${String(draft.hook_name)}`);
  const names = overrides.map((o, i) =>
    sanitize(
      [
        String(drafts[i]!.architecture),
        ...Object.entries(o)
          .filter(([k]) => k !== 'name' && k !== 'architecture')
          .map(([k, v]) => settingText(k, v)),
      ].join('-'),
    ),
  );
  const mine = names[index]!;
  const shared = names.filter((n) => n === mine).length > 1;
  return shared || mine === String(draft.architecture) ? `${mine}-${index}` : mine;
}
