/**
 * One SAE training step, written once on the op layer: the inputs' normalisation, the architecture's
 * forward and analytic backward (src/sae/architectures/), the decoder-norm gradient projection, the
 * statistics the trainer reads back, global gradient clipping, Adam and the unit-norm re-projection of
 * W_dec. The onnx engine builds it into one graph (a session run per step, or per chunk of steps inside
 * an ONNX Loop); the tfjs engine runs the same functions eagerly, summing `stepGradients` over row chunks
 * when a batch is too large for the wasm heap.
 *
 * The readback is [losses..., the target's total variance, Σ grad² (before clipping), stats..., firing
 * count per feature].
 */
import type { IntArg, Ops } from '../ops/ops.js';
import { architectureOf } from './architectures/registry.js';
import type { AuxKInputs, ParamName, ParamValues } from './architectures/types.js';
import type { SaeTrainingConfig } from './config.js';
import { adamUpdate } from './optim/adam.js';
import type { AdamState } from './optim/adam.js';

/**
 * Parameter shapes in the step's layout, in a fixed order (the order of graph inputs and outputs). The
 * dense step holds both matrices as [width, d_sae]: W_enc as the trainer stores it and W_dec transposed;
 * the sparse step holds both as rows [d_sae, width] (architectures/types.ts says why).
 */
export function stepParamShapes(cfg: SaeTrainingConfig, sparse = false): [ParamName, number[]][] {
  const dOut = cfg.d_out ?? cfg.d_in;
  const shapes: [ParamName, number[]][] = [
    ['W_enc', sparse ? [cfg.d_sae, cfg.d_in] : [cfg.d_in, cfg.d_sae]],
    ['W_dec', sparse ? [cfg.d_sae, dOut] : [dOut, cfg.d_sae]],
    ['b_dec', [dOut]],
  ];
  if (cfg.skip_connection) shapes.push(['W_skip', [cfg.d_in, dOut]]);
  for (const name of Object.keys(architectureOf(cfg.architecture).featureParams(cfg)) as ParamName[])
    shapes.push([name, [cfg.d_sae]]);
  return shapes;
}

/** A step's inputs: raw activations and the scalars the trainer computes per step. */
export interface StepInputs<T> {
  /** [rows, d_in] raw. */
  x: T;
  /** [rows, d_out] raw target (transcoders). */
  y?: T;
  scaleIn: T;
  scaleOut: T;
  /** 1 / rows of the whole batch. */
  invRows: T;
  coefficient: T;
  aux?: AuxKInputs<T>;
  keep?: IntArg<T>;
  /** The sparse topk step, parameters in its rows layout (`stepParamShapes(cfg, true)`). */
  sparse?: boolean;
}

/** Which topk step an engine runs: `auto` applies the measured rule of `sparseStepApplies`. */
export type TopKPath = 'auto' | 'sparse' | 'dense';

/**
 * k at most d_sae / SPARSE_MIN_RATIO takes the sparse step on onnxruntime. From the profile of the sparse
 * step at d_sae 6144, k 32 (README "Performance"): its gathers, batched products and scatter-adds together
 * cost about one encoder GEMM, and they grow with k, while the dense step spends four more GEMMs of the
 * encoder's size on what they replace; so the sparse step stops paying near k = d_sae / 48. 64 keeps a
 * margin, since the gathers and scatters are memory-bound and lose more than GEMMs on a loaded machine.
 */
export const SPARSE_MIN_RATIO = 64;

/**
 * Whether a step of `cfg` on `backend` runs sparse. `auto`: the onnx engine, an architecture with a sparse
 * step and k <= d_sae / SPARSE_MIN_RATIO (batchtopk's rows vary around k; the rule uses k). TensorFlow.js
 * stays dense: its wasm backend runs one thread, and the dense step is what its row chunks were built on.
 */
export function sparseStepApplies(
  cfg: SaeTrainingConfig,
  backend: 'onnx' | 'tfjs',
  path: TopKPath = 'auto',
): boolean {
  const arch = architectureOf(cfg.architecture);
  const possible = arch.sparseStep?.(cfg) === true;
  if (path === 'sparse') {
    if (!possible) throw new Error(`${cfg.architecture}: no sparse step for this configuration`);
    return true;
  }
  if (path === 'dense') return false;
  return possible && backend === 'onnx' && cfg.k * SPARSE_MIN_RATIO <= cfg.d_sae;
}

/** The axis of a held W_dec that runs over the output width (its feature norms sum over it). */
export function decoderWidthAxis(sparse: boolean | undefined): number {
  return sparse ? 1 : 0;
}

export interface GradientPass<T> {
  losses: [string, T][];
  stats: [string, T][];
  /** [d_sae] how many rows each feature fired on. */
  fired: T;
  /** Σ over rows of ‖target - mean target‖², times invRows. */
  variance: T;
  grads: ParamValues<T>;
}

/**
 * Forward and backward of a batch (or of a row chunk of one: `targetMean` then carries the whole batch's
 * mean target and `batchThreshold` the batchtopk threshold over the whole batch).
 */
export function stepGradients<T>(
  o: Ops<T>,
  cfg: SaeTrainingConfig,
  p: ParamValues<T>,
  inp: StepInputs<T>,
  chunk: { targetMean?: T; batchThreshold?: T } = {},
): GradientPass<T> {
  const arch = architectureOf(cfg.architecture);
  if (inp.sparse && arch.sparseStep?.(cfg) !== true)
    throw new Error(`${cfg.architecture}: no sparse step for this configuration`);
  const { xs, target, variance } = o.scope('input', () => {
    const xs = o.mul(inp.x, inp.scaleIn);
    const target = inp.y === undefined ? xs : o.mul(inp.y, inp.scaleOut);
    const mean = chunk.targetMean ?? o.mean(target, 0);
    return { xs, target, variance: o.mul(o.sumSquares(o.sub(target, mean)), inp.invRows) };
  });
  const out = o.scope(cfg.architecture, () =>
    arch.train(
      o,
      p,
      {
        x: xs,
        target,
        invRows: inp.invRows,
        coefficient: inp.coefficient,
        ...(inp.aux === undefined ? {} : { aux: inp.aux }),
        ...(inp.keep === undefined ? {} : { keep: inp.keep }),
        ...(chunk.batchThreshold === undefined ? {} : { batchThreshold: chunk.batchThreshold }),
        ...(inp.sparse ? { sparse: true } : {}),
      },
      cfg,
    ),
  );
  const grads = { ...out.grads };
  if (cfg.normalize_sae_decoder) {
    // Remove from each feature's gradient its component along the feature's decoder vector.
    const w = p.W_dec!;
    const g = grads.W_dec!;
    const axis = decoderWidthAxis(inp.sparse);
    const coef = o.div(o.sum(o.mul(g, w), axis, true), o.sum(o.mul(w, w), axis, true));
    grads.W_dec = o.sub(g, o.mul(w, coef));
  }
  const fired = out.fired ?? o.sum(out.firing, 0);
  return { losses: out.losses, stats: out.stats, fired, variance, grads };
}

/** Σ grad² over every parameter, in `names` order. */
export function gradientSquares<T>(o: Ops<T>, grads: ParamValues<T>, names: readonly ParamName[]): T {
  return names.map((n) => o.sumSquares(grads[n]!)).reduce((acc, s) => o.add(acc, s));
}

/** The readback vector of a step. */
export function readbackOf<T>(o: Ops<T>, pass: Omit<GradientPass<T>, 'grads'>, gradSq: T): T {
  const scalars = [...pass.losses.map(([, t]) => t), pass.variance, gradSq, ...pass.stats.map(([, t]) => t)];
  return o.concat([...scalars.map((s) => o.reshape(s, [1])), pass.fired], 0);
}

/** Clipping, Adam and (normalize_sae_decoder) unit-norm decoder columns: the next parameters and moments. */
export function stepUpdate<T>(
  o: Ops<T>,
  cfg: SaeTrainingConfig,
  state: Readonly<Record<string, AdamState<T>>>,
  grads: ParamValues<T>,
  gradSq: T,
  adam: { stepSize: T; bc2Sqrt: T },
  sparse = false,
): Record<string, AdamState<T>> {
  return o.scope('adam', () => {
    const next = adamUpdate(
      o,
      { beta1: cfg.adam_beta1, beta2: cfg.adam_beta2, maxGradNorm: cfg.max_grad_norm },
      state,
      grads as Record<string, T>,
      gradSq,
      adam,
    );
    if (cfg.normalize_sae_decoder) {
      const w = next.W_dec!.param;
      const norms = o.sqrt(o.sum(o.mul(w, w), decoderWidthAxis(sparse), true));
      next.W_dec = { ...next.W_dec!, param: o.div(w, norms) };
    }
    return next;
  });
}

/** A whole step: gradients, readback and update. */
export function saeStep<T>(
  o: Ops<T>,
  cfg: SaeTrainingConfig,
  state: Readonly<Record<string, AdamState<T>>>,
  inp: StepInputs<T>,
  adam: { stepSize: T; bc2Sqrt: T },
): { next: Record<string, AdamState<T>>; readback: T; lossNames: string[]; statNames: string[] } {
  const names = stepParamShapes(cfg, inp.sparse).map(([n]) => n);
  const p: ParamValues<T> = {};
  for (const n of names) p[n] = state[n]!.param;
  const pass = stepGradients(o, cfg, p, inp);
  const gradSq = o.scope('adam', () => gradientSquares(o, pass.grads, names));
  const next = stepUpdate(o, cfg, state, pass.grads, gradSq, adam, inp.sparse);
  const readback = o.scope('readback', () => readbackOf(o, pass, gradSq));
  return {
    next,
    readback,
    lossNames: pass.losses.map(([n]) => n),
    statNames: pass.stats.map(([n]) => n),
  };
}
