/**
 * Hook replacements of the ONNX GPT-2 described as data (the tfjs model takes JS functions instead): zero
 * ablation, or an SAE's reconstruction of the activation (a transcoder reads its input at an earlier hook).
 * The SAE's inference forward is the one of src/sae/sae.ts, on the same host weights (an SAELens folder's
 * tensors): standard, topk (with rescale_acts_by_decoder_norm), jumprelu (batchtopk is saved as one) and
 * gated encoders, apply_b_dec_to_input, the run-time normalisations constant_norm_rescale and layer_norm,
 * and transcoders with or without W_skip. As in the evaluator, the reconstruction is decode(encode(x)) with
 * a per-token normalisation undone for SAEs but not for transcoders (whose output has another width).
 */
import type { Gpt2Config } from '../../model/gpt2-config.js';
import { hookShape, parseHookName } from '../../model/hook-points.js';
import type { HookPoint } from '../../model/hook-points.js';
import { UserError } from '../../pipeline/errors.js';
import type { HostTensor } from '../../sae/fold.js';
import type { SaeFolderConfig } from '../../sae/saelens-folder.js';
import type { SavedArchitecture } from '../../sae/saved-architecture.js';
import type { SharingGraphBuilder } from './sharing-builder.js';

/** An SAE or transcoder as saved (cfg.json and its weights, normalisation folded in). */
export interface OnnxSae {
  /** Names the SAE in error messages. */
  name: string;
  config: SaeFolderConfig;
  kind: SavedArchitecture;
  /** W_enc [d_in, d_sae], b_enc, W_dec [d_sae, d_out], b_dec; threshold, b_gate/b_mag/r_mag, W_skip [d_out, d_in]. */
  tensors: Readonly<Record<string, HostTensor>>;
}

export type HookReplacement =
  /** Every position replaced by zeros. */
  | { kind: 'zero' }
  /**
   * The SAE's reconstruction of the activation at `input` (default: the replaced hook itself; a
   * transcoder's input hook, which must come no later), at the positions the run's keep mask allows.
   */
  | { kind: 'sae'; sae: OnnxSae; input?: string };

/** What a replaced hook's SAE computed, per token: [batch * seq, d_sae] and [batch * seq, d_out]. */
export interface SaeOutputNames {
  features: string;
  reconstruction: string;
}

function width(config: Gpt2Config, hook: HookPoint): number {
  return hookShape(config, hook.site, 1, 1)
    .slice(2)
    .reduce((a, b) => a * b, 1);
}

function parseHook(config: Gpt2Config, name: string, what: string): HookPoint {
  try {
    return parseHookName(config, name);
  } catch (e) {
    if (e instanceof UserError) throw new UserError(`${what}: ${e.message}`);
    throw e;
  }
}

/** Tensors each encoder needs, beyond W_enc, b_enc, W_dec and b_dec. */
const ENCODER_TENSORS: Record<SavedArchitecture['encoder'], string[]> = {
  standard: [],
  topk: [],
  jumprelu: ['threshold'],
  gated: ['b_gate', 'b_mag', 'r_mag'],
};

/**
 * Checks a replacement against the model before any graph is built: the hooks exist, a transcoder's input
 * comes no later than the hook it replaces, and the SAE's widths and weight shapes fit. UserErrors name the
 * hook, the SAE and the field.
 */
export function checkReplacement(config: Gpt2Config, hook: string, r: HookReplacement): void {
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

const int = (value: number) => ({ kind: 'int' as const, value });

/**
 * Adds the SAE's forward on the activation `x` (a hook's tensor, any leading shape, `d_in` per token) to the
 * graph; `id` prefixes its weights so that one SAE's weights are stored once. Returns its features and
 * reconstruction, one row per token.
 */
export function emitSae(b: SharingGraphBuilder, sae: OnnxSae, id: string, x: string): SaeOutputNames {
  const { config: c, kind } = sae;
  const dIn = c.d_in;
  const p = id;
  const w = (name: string): string => {
    const t = sae.tensors[name]!;
    return b.constant(`${id}.${name}`, t.shape, t.data);
  };
  const op = (
    type: string,
    inputs: string[],
    attributes?: Parameters<SharingGraphBuilder['op']>[4],
  ): string => b.op(type, inputs, p, undefined, attributes);
  const rowSum = (v: string): string => op('ReduceSum', [v, b.int64('c.one', [1])], { keepdims: int(1) });

  const rows = op('Reshape', [x, b.int64(`c.rows_${dIn}`, [-1, dIn])]);

  // Per-token normalisation (SAELens's run-time constant_norm_rescale / layer_norm) and its inverse.
  let xn = rows;
  let undo = (y: string): string => y;
  if (c.normalize_activations === 'constant_norm_rescale') {
    const norm = op('Sqrt', [rowSum(op('Mul', [rows, rows]))]);
    const coeff = op('Div', [b.scalar(`c.sqrt_${dIn}`, Math.sqrt(dIn)), norm]);
    xn = op('Mul', [rows, coeff]);
    undo = (y) => op('Div', [y, coeff]);
  } else if (c.normalize_activations === 'layer_norm') {
    const mu = op('ReduceMean', [rows], { axes: { kind: 'ints', value: [1] }, keepdims: int(1) });
    const centred = op('Sub', [rows, mu]);
    // torch.std is the unbiased estimate.
    const variance = op('Div', [
      rowSum(op('Mul', [centred, centred])),
      b.scalar(`c.bessel_${dIn}`, Math.max(1, dIn - 1)),
    ]);
    const std = op('Sqrt', [variance]);
    xn = op('Div', [centred, op('Add', [std, b.scalar('c.ln_eps_1e-5', 1e-5)])]);
    undo = (y) => op('Add', [op('Mul', [y, std]), mu]);
  }

  const xc = c.apply_b_dec_to_input ? op('Sub', [xn, w('b_dec')]) : xn;
  // Created only where used: onnxruntime warns about unused initializers.
  const zero = (): string => b.scalar('c.zero_f', 0);
  // ||W_dec row||, constant-folded by onnxruntime; only topk's rescale_acts_by_decoder_norm uses it.
  const decoderNorms = (): string =>
    op('Sqrt', [
      op('ReduceSum', [op('Mul', [w('W_dec'), w('W_dec')]), b.int64('c.one', [1])], { keepdims: int(0) }),
    ]);
  const rescaled = kind.encoder === 'topk' && c.rescale_acts_by_decoder_norm === true;

  let features: string;
  switch (kind.encoder) {
    case 'standard':
      features = op('Relu', [op('Add', [op('MatMul', [xc, w('W_enc')]), w('b_enc')])]);
      break;
    case 'jumprelu': {
      const h = op('Add', [op('MatMul', [xc, w('W_enc')]), w('b_enc')]);
      features = op('Where', [op('Greater', [h, w('threshold')]), op('Relu', [h]), zero()]);
      break;
    }
    case 'topk': {
      let h = op('Add', [op('MatMul', [xc, w('W_enc')]), w('b_enc')]);
      if (rescaled) h = op('Mul', [h, decoderNorms()]);
      const k = c.k!;
      const [values] = b.multi('TopK', [h, b.int64(`c.k_${k}`, [k])], p, 2, {
        axis: int(-1),
        largest: int(1),
        sorted: int(1),
      });
      const kth = op('Slice', [
        values!,
        b.int64(`c.k_minus_one_${k}`, [k - 1]),
        b.int64(`c.k_${k}`, [k]),
        b.int64('c.one', [1]),
      ]);
      features = op('Where', [op('GreaterOrEqual', [h, kth]), op('Relu', [h]), zero()]);
      break;
    }
    case 'gated': {
      const P = op('MatMul', [xc, w('W_enc')]);
      const gate = op('Greater', [op('Add', [P, w('b_gate')]), zero()]);
      const magnitude = op('Relu', [op('Add', [op('Mul', [P, op('Exp', [w('r_mag')])]), w('b_mag')])]);
      features = op('Where', [gate, magnitude, zero()]);
      break;
    }
  }

  const acts = rescaled ? op('Div', [features, decoderNorms()]) : features;
  let out = op('Add', [op('MatMul', [acts, w('W_dec')]), w('b_dec')]);
  // SAELens's skip connection reads the raw input.
  if (kind.skip) out = op('Add', [out, op('Gemm', [rows, w('W_skip')], { transB: int(1) })]);
  return { features, reconstruction: kind.transcoder ? out : undo(out) };
}
