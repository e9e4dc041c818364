/**
 * Hook replacements as data, applied by one definition on the op layer for both engines: zero ablation,
 * or an SAE's (transcoder's) reconstruction via the SAE inference forward of src/sae/inference.ts (a
 * transcoder reads its input at an earlier hook). As in the evaluator, the reconstruction is
 * decode(encode(x)) with a per-token normalisation undone for SAEs but not for transcoders, and a keep mask
 * ([batch, seq], 0 for excluded tokens such as BOS) keeps the original activation where it is 0.
 */
import type { Ops } from '../ops/ops.js';
import { UserError } from '../pipeline/errors.js';
import { saeForward } from '../sae/inference.js';
import type { InferenceSae } from '../sae/inference.js';
import type { ModelConfig } from './config.js';
import { hookShape, parseHookName } from './hook-points.js';
import type { HookPoint } from './hook-points.js';

/** An SAE or transcoder as saved (cfg.json and its weights, normalisation folded in), with a name for messages. */
export interface ReplacementSae extends InferenceSae {
  name: string;
}

export type HookReplacement =
  /** Every position replaced by zeros. */
  | { kind: 'zero' }
  /**
   * The SAE's reconstruction of the activation at `input` (default: the replaced hook itself; a
   * transcoder's input hook, which must come no later), at the positions the run's keep mask allows.
   */
  | { kind: 'sae'; sae: ReplacementSae; input?: string };

/** What the SAE replacing a hook computed, per token: features [rows, d_sae], reconstruction [rows, d_out]. */
export interface SaeValues<T> {
  features: T;
  reconstruction: T;
}

function width(config: ModelConfig, hook: HookPoint): number {
  return hookShape(config, hook.site, 1, 1).reduce((a, b) => a * b, 1);
}

function parseHook(config: ModelConfig, name: string, what: string): HookPoint {
  try {
    return parseHookName(config, name);
  } catch (e) {
    if (e instanceof UserError) throw new UserError(`${what}: ${e.message}`);
    throw e;
  }
}

/** Tensors each encoder needs, beyond W_enc, b_enc, W_dec and b_dec. */
const ENCODER_TENSORS: Record<InferenceSae['kind']['encoder'], string[]> = {
  standard: [],
  topk: [],
  jumprelu: ['threshold'],
  gated: ['b_gate', 'b_mag', 'r_mag'],
};

/**
 * Checks a replacement against the model before anything runs: the hooks exist, a transcoder's input
 * comes no later than the hook it replaces, and the SAE's widths and weight shapes fit. UserErrors name the
 * hook, the SAE and the field.
 */
export function checkReplacement(config: ModelConfig, hook: string, r: HookReplacement): void {
  const at = parseHook(config, hook, `intervention at "${hook}"`);
  if (r.kind === 'zero') return;
  if (r.kind !== 'sae') {
    throw new UserError(
      `intervention at "${hook}": unknown kind ${JSON.stringify((r as { kind: unknown }).kind)}`,
    );
  }
  const { sae } = r;
  const where = `intervention at "${hook}": SAE '${sae.name}'`;
  const input = r.input === undefined ? at : parseHook(config, r.input, `${where}: input hook`);
  if (input.order > at.order) {
    throw new UserError(`${where}: its input hook ${input.name} comes after the hook it replaces`);
  }
  const c = sae.config;
  const dOut = c.d_out ?? c.d_in;
  if (c.d_in !== width(config, input)) {
    throw new UserError(
      `${where}: d_in is ${c.d_in} but hook ${input.name} has width ${width(config, input)}`,
    );
  }
  if (dOut !== width(config, at)) {
    throw new UserError(
      `${where}: ${c.d_out === undefined ? 'd_in' : 'd_out'} is ${dOut} but hook ${at.name} has width ${width(config, at)}`,
    );
  }
  if (!['none', 'constant_norm_rescale', 'layer_norm'].includes(c.normalize_activations)) {
    throw new UserError(
      `${where}: normalize_activations '${c.normalize_activations}' has no inference form (fold its scaling factor first)`,
    );
  }
  if (c.apply_b_dec_to_input && c.d_in !== dOut) {
    throw new UserError(`${where}: apply_b_dec_to_input needs d_in = d_out, got ${c.d_in} and ${dOut}`);
  }
  const S = c.d_sae;
  const expected: Record<string, number[]> = { W_enc: [c.d_in, S], W_dec: [S, dOut], b_dec: [dOut] };
  if (sae.kind.encoder !== 'gated') expected.b_enc = [S];
  for (const name of ENCODER_TENSORS[sae.kind.encoder]) expected[name] = [S];
  if (sae.kind.skip) expected.W_skip = [dOut, c.d_in];
  for (const [name, shape] of Object.entries(expected)) {
    const t = sae.tensors[name];
    if (!t) throw new UserError(`${where}: no ${name} tensor (${sae.config.architecture} needs it)`);
    if (
      t.shape.length !== shape.length ||
      t.shape.some((d, i) => d !== shape[i]) ||
      t.data.length !== shape.reduce((a, b) => a * b, 1)
    ) {
      throw new UserError(
        `${where}: ${name} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`,
      );
    }
  }
  if (sae.kind.encoder === 'topk') {
    const k = c.k;
    if (typeof k !== 'number' || !Number.isInteger(k) || k < 1 || k > S) {
      throw new UserError(`${where}: k must be an integer in 1..${S} (d_sae), got ${String(k)}`);
    }
  }
}

export interface ReplacementInputs<T> {
  /** The value the forward computed at the replaced hook. */
  value: T;
  /** The value computed at the SAE's input hook (the replaced hook itself unless a transcoder's). */
  input: T;
  /** [batch, seq] float, 1 where an SAE replaces, 0 where the original is kept; absent: everywhere. */
  keep: T | undefined;
  /** Prefix of the SAE's weight constants (one key per SAE, so a graph stores its weights once). */
  saeKey: string;
  /** Rank of the hook's activation (3 for [batch, seq, d], 4 for heads). */
  rank: number;
}

/** The replacement's value at its hook (and, for an SAE, what it computed). */
export function applyReplacement<T>(
  o: Ops<T>,
  r: HookReplacement,
  { value, input, keep, saeKey, rank }: ReplacementInputs<T>,
): { value: T; sae?: SaeValues<T> } {
  if (r.kind === 'zero') return { value: o.zerosLike(value) };
  const rows = o.reshape(input, [-1, r.sae.config.d_in]);
  const sae = saeForward(o, r.sae, saeKey, rows);
  const shaped = o.reshapeLike(sae.reconstruction, value);
  if (keep === undefined) return { value: shaped, sae };
  // [batch, seq] -> [batch, seq, 1, ...] against the hook's trailing axes.
  const mask = o.reshape(keep, [0, 0, ...new Array<number>(rank - 2).fill(1)]);
  return { value: o.select(mask, shaped, value), sae };
}
