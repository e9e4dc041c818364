/**
 * TransformerLens hook points of a GPT-2, independent of the engine that computes them: names, execution
 * order, shapes, pattern selection and the plan of a run (what to capture, where to stop). A second
 * engine (onnxruntime, say) reuses this module so that hook semantics live in one place.
 *
 * Semantics shared by every engine:
 * - Shapes follow TransformerLens: [batch, pos, d_model] for residual-width hooks, [batch, pos, d_mlp] for
 *   `mlp.hook_pre`/`mlp.hook_post`, [batch, pos, n_heads, d_head] for `attn.hook_q/k/v/z`;
 *   `hook_pos_embed` is repeated over the batch like TransformerLens does.
 * - An intervention's return value replaces the activation and the forward continues from it (a
 *   TransformerLens hook function that returns a tensor). A captured hook that is also intervened on holds
 *   the replaced value, i.e. what the rest of the model saw; the intervention function itself receives
 *   the original.
 * - `ln1/ln2/ln_final.hook_normalized` are LayerNorm outputs including the learned scale and bias
 *   (TransformerLens without `fold_ln`).
 */
import { UserError } from '../pipeline/errors.js';
import type { Gpt2Config } from './gpt2-config.js';

/** Hooks that occur once, before the blocks. */
export const EMBED_SITES = ['hook_embed', 'hook_pos_embed'] as const;
/** Hooks of every block, in the order the forward reaches them. */
export const BLOCK_SITES = [
  'hook_resid_pre',
  'ln1.hook_normalized',
  'attn.hook_q',
  'attn.hook_k',
  'attn.hook_v',
  'attn.hook_z',
  'hook_attn_out',
  'hook_resid_mid',
  'ln2.hook_normalized',
  'mlp.hook_pre',
  'mlp.hook_post',
  'hook_mlp_out',
  'hook_resid_post',
] as const;
/** Hooks that occur once, after the blocks. */
export const FINAL_SITES = ['ln_final.hook_normalized'] as const;

export type EmbedSite = (typeof EMBED_SITES)[number];
export type BlockSite = (typeof BLOCK_SITES)[number];
export type FinalSite = (typeof FINAL_SITES)[number];
export type HookSite = EmbedSite | BlockSite | FinalSite;

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

const BLOCK_PATTERN = /^blocks\.(\d+)\.(.+)$/;

function siteOrder(config: Gpt2Config, site: HookSite, layer: number | null): number {
  if (layer === null) {
    const e = (EMBED_SITES as readonly string[]).indexOf(site);
    if (e >= 0) return e;
    return EMBED_SITES.length + config.nLayer * BLOCK_SITES.length;
  }
  return EMBED_SITES.length + layer * BLOCK_SITES.length + (BLOCK_SITES as readonly string[]).indexOf(site);
}

/** All hook names of a model, in execution order. */
export function listHookNames(config: Gpt2Config): string[] {
  const names: string[] = [...EMBED_SITES];
  for (let l = 0; l < config.nLayer; l++) for (const s of BLOCK_SITES) names.push(`blocks.${l}.${s}`);
  names.push(...FINAL_SITES);
  return names;
}

/** The valid names written compactly, for error messages. */
export function describeHookNames(config: Gpt2Config): string {
  return (
    `${EMBED_SITES.join(', ')}, blocks.L.{${BLOCK_SITES.join(', ')}} with L in 0..${config.nLayer - 1}, ` +
    FINAL_SITES.join(', ')
  );
}

/** Parses an exact hook name; an unknown name or a layer out of range is a UserError listing the valid names. */
export function parseHookName(config: Gpt2Config, name: string): HookPoint {
  if (
    (EMBED_SITES as readonly string[]).includes(name) ||
    (FINAL_SITES as readonly string[]).includes(name)
  ) {
    const site = name as EmbedSite | FinalSite;
    return { name, site, layer: null, order: siteOrder(config, site, null) };
  }
  const m = BLOCK_PATTERN.exec(name);
  if (m && (BLOCK_SITES as readonly string[]).includes(m[2]!)) {
    const layer = Number(m[1]);
    if (layer < config.nLayer && String(layer) === m[1]) {
      const site = m[2] as BlockSite;
      return { name, site, layer, order: siteOrder(config, site, layer) };
    }
    throw new UserError(
      `unknown hook "${name}": layer ${m[1]} is out of range (the model has ${config.nLayer} layers, ` +
        `0..${config.nLayer - 1}). Valid hooks: ${describeHookNames(config)}`,
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
export function resolveHookPatterns(config: Gpt2Config, patterns: string | readonly string[]): string[] {
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

/** The TransformerLens shape of a hook's activation for a [batch, seq] input. */
export function hookShape(config: Gpt2Config, site: HookSite, batch: number, seq: number): number[] {
  switch (site) {
    case 'attn.hook_q':
    case 'attn.hook_k':
    case 'attn.hook_v':
    case 'attn.hook_z':
      return [batch, seq, config.nHead, config.dHead];
    case 'mlp.hook_pre':
    case 'mlp.hook_post':
      return [batch, seq, config.dMlp];
    default:
      return [batch, seq, config.nEmbd];
  }
}

/** Checks ids and sizes before any engine sees them (an out-of-range id would silently gather garbage). */
export function validateTokenBatch(config: Gpt2Config, tokens: TokenBatch): void {
  const [batch, seq] = tokens.shape;
  if (!Number.isInteger(batch) || !Number.isInteger(seq) || batch <= 0 || seq <= 0) {
    throw new UserError(`token batch shape [${batch}, ${seq}] must be two positive integers`);
  }
  if (tokens.data.length !== batch * seq) {
    throw new UserError(`token batch has ${tokens.data.length} ids but shape [${batch}, ${seq}]`);
  }
  if (seq > config.nPositions) {
    throw new UserError(`sequence length ${seq} exceeds the model's n_positions ${config.nPositions}`);
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

export function planRun(config: Gpt2Config, request: RunRequest): RunPlan {
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
