/**
 * Hook points of a model, independent of the engine that computes them and of the family that defines
 * them: names, execution order, shapes, pattern selection and the plan of a run (what to capture, where to
 * stop). The family lists its sites (`ModelConfig.hooks`); everything here follows from that list.
 *
 * Semantics shared by every engine:
 * - Shapes follow TransformerLens: [batch, pos, ...dims of the site] (e.g. [batch, pos, d_model] for the
 *   residual stream, [batch, pos, n_heads, d_head] for `attn.hook_z`); `hook_pos_embed` is repeated over
 *   the batch as TransformerLens does.
 * - A replacement's value replaces the activation and the forward continues from it (a TransformerLens
 *   hook function that returns a tensor). A captured hook that is also replaced holds the replaced value,
 *   i.e. what the rest of the model saw; the replacement itself receives the original.
 * - Normalisation hooks (`ln1/ln2/ln_final.hook_normalized`) include the learned scale and bias
 *   (TransformerLens without `fold_ln`).
 */
import { UserError } from '../pipeline/errors.js';
import type { HookDim, HookSiteSpec, ModelConfig } from './config.js';

/** A hook's site: its name inside a block (`attn.hook_z`), or the whole name outside the blocks. */
export type HookSite = string;

export interface HookPoint {
  name: string;
  site: HookSite;
  /** The block index, or null for the embedding and final hooks. */
  layer: number | null;
  /** Position in execution order over the whole forward: a larger number is computed later. */
  order: number;
}

/** An activation handed back to the caller: row-major float32 with its TransformerLens shape. */
export interface Activation {
  shape: number[];
  data: Float32Array;
}

/** A batch of token ids, row-major [batch, seq]. */
export interface TokenBatch {
  data: Int32Array;
  shape: readonly [number, number];
}

/** The model's hooks as a config-independent thing: what a config needs for names and shapes. */
type HookConfig = Pick<ModelConfig, 'hooks' | 'nLayers'>;

const BLOCK_PATTERN = /^blocks\.(\d+)\.(.+)$/;

function siteIndex(sites: readonly HookSiteSpec[], site: string): number {
  return sites.findIndex((s) => s.site === site);
}

/** All hook names of a model, in execution order. */
export function listHookNames(config: HookConfig): string[] {
  const { embed, block, final } = config.hooks;
  const names: string[] = embed.map((s) => s.site);
  for (let l = 0; l < config.nLayers; l++) for (const s of block) names.push(`blocks.${l}.${s.site}`);
  names.push(...final.map((s) => s.site));
  return names;
}

/** The valid names written compactly, for error messages. */
export function describeHookNames(config: HookConfig): string {
  const { embed, block, final } = config.hooks;
  return (
    `${embed.map((s) => s.site).join(', ')}, blocks.L.{${block.map((s) => s.site).join(', ')}} ` +
    `with L in 0..${config.nLayers - 1}, ${final.map((s) => s.site).join(', ')}`
  );
}

/** Parses an exact hook name; an unknown name or a layer out of range is a UserError listing the valid names. */
export function parseHookName(config: HookConfig, name: string): HookPoint {
  const { embed, block, final } = config.hooks;
  const e = siteIndex(embed, name);
  if (e >= 0) return { name, site: name, layer: null, order: e };
  const f = siteIndex(final, name);
  if (f >= 0)
    return { name, site: name, layer: null, order: embed.length + config.nLayers * block.length + f };
  const m = BLOCK_PATTERN.exec(name);
  const b = m ? siteIndex(block, m[2]!) : -1;
  if (m && b >= 0) {
    const layer = Number(m[1]);
    if (layer < config.nLayers && String(layer) === m[1]) {
      return { name, site: m[2]!, layer, order: embed.length + layer * block.length + b };
    }
    throw new UserError(
      `unknown hook "${name}": layer ${m[1]} is out of range (the model has ${config.nLayers} layers, ` +
        `0..${config.nLayers - 1}). Valid hooks: ${describeHookNames(config)}`,
    );
  }
  throw new UserError(`unknown hook "${name}". Valid hooks: ${describeHookNames(config)}`);
}

function globToRegExp(pattern: string): RegExp {
  const body = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/**
 * Expands hook names and glob patterns (`*` any run of characters, `?` one character; e.g.
 * `blocks.*.hook_resid_post`) into distinct hook names in execution order. A plain name must be valid
 * and a pattern must match at least one hook, else UserError.
 */
export function resolveHookPatterns(config: HookConfig, patterns: string | readonly string[]): string[] {
  const list = typeof patterns === 'string' ? [patterns] : patterns;
  const all = listHookNames(config);
  const chosen = new Set<string>();
  for (const p of list) {
    if (!p.includes('*') && !p.includes('?')) {
      chosen.add(parseHookName(config, p).name);
      continue;
    }
    const re = globToRegExp(p);
    const hits = all.filter((n) => re.test(n));
    if (hits.length === 0) {
      throw new UserError(`hook pattern "${p}" matches no hook. Valid hooks: ${describeHookNames(config)}`);
    }
    for (const h of hits) chosen.add(h);
  }
  return all.filter((n) => chosen.has(n));
}

function dimSize(config: ModelConfig, d: HookDim): number {
  switch (d) {
    case 'd_model':
      return config.dModel;
    case 'd_mlp':
      return config.dMlp;
    case 'n_heads':
      return config.nHeads;
    case 'n_kv_heads':
      return config.nKvHeads;
    case 'd_head':
      return config.dHead;
    default:
      return d;
  }
}

/** The TransformerLens shape of a hook's activation for a [batch, seq] input. */
export function hookShape(config: ModelConfig, site: HookSite, batch: number, seq: number): number[] {
  const { embed, block, final } = config.hooks;
  const spec = [...embed, ...block, ...final].find((s) => s.site === site);
  if (spec === undefined) throw new Error(`hookShape: the ${config.family} family has no hook site ${site}`);
  return [batch, seq, ...spec.dims.map((d) => dimSize(config, d))];
}

/** Per-token width of a hook (multi-dimensional hooks such as attn.hook_z flattened, as SAELens does). */
export function siteWidth(config: ModelConfig, site: HookSite): number {
  return hookShape(config, site, 1, 1).reduce((a, b) => a * b, 1);
}

/** Checks ids and sizes before any engine sees them (an out-of-range id would silently gather garbage). */
export function validateTokenBatch(config: ModelConfig, tokens: TokenBatch): void {
  const [batch, seq] = tokens.shape;
  if (!Number.isInteger(batch) || !Number.isInteger(seq) || batch <= 0 || seq <= 0) {
    throw new UserError(`token batch shape [${batch}, ${seq}] must be two positive integers`);
  }
  if (tokens.data.length !== batch * seq) {
    throw new UserError(`token batch has ${tokens.data.length} ids but shape [${batch}, ${seq}]`);
  }
  if (seq > config.nCtx) {
    throw new UserError(`sequence length ${seq} exceeds the model's n_positions ${config.nCtx}`);
  }
  const v = config.vocabSize;
  for (let i = 0; i < tokens.data.length; i++) {
    const t = tokens.data[i]!;
    if (t < 0 || t >= v) {
      throw new UserError(
        `token id ${t} at [${Math.floor(i / seq)}, ${i % seq}] is outside the vocabulary 0..${v - 1}`,
      );
    }
  }
}

export interface RunRequest {
  /** Hook names or glob patterns to capture. */
  hooks?: string | readonly string[];
  /** Exact hook names whose activation is replaced; only the names matter here. */
  interventions?: readonly string[];
  returnLogits?: boolean;
  returnLoss?: boolean;
  /** Stop after the deepest captured or intervened hook unless logits or loss are wanted (default true). */
  stopAtDeepestHook?: boolean;
}

/** What an engine must do for one forward. */
export interface RunPlan {
  /** Hook names to capture, in execution order. */
  capture: HookPoint[];
  /** Hook points with an intervention, in execution order. */
  intervene: HookPoint[];
  /** Every hook point an engine must stop at (captured or intervened), keyed by name. */
  touched: Map<string, HookPoint>;
  /** Execution-order index after which the forward may stop; Infinity runs to the logits. */
  stopAfter: number;
  needLogits: boolean;
}

export function planRun(config: HookConfig, request: RunRequest): RunPlan {
  const capture = resolveHookPatterns(config, request.hooks ?? []).map((n) => parseHookName(config, n));
  const intervene = [...new Set(request.interventions ?? [])]
    .map((n) => parseHookName(config, n))
    .sort((a, b) => a.order - b.order);
  const touched = new Map<string, HookPoint>();
  for (const h of [...capture, ...intervene]) touched.set(h.name, h);
  const needLogits = request.returnLogits === true || request.returnLoss === true;
  let stopAfter = Infinity;
  if (!needLogits && request.stopAtDeepestHook !== false) {
    stopAfter = Math.max(-1, ...[...touched.values()].map((h) => h.order));
  }
  return { capture, intervene, touched, stopAfter, needLogits };
}
