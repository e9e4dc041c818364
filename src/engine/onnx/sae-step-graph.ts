/**
 * One SAE training step as an ONNX graph: normalisation, forward, the architecture's loss terms, the
 * analytic backward pass of src/sae/architectures/ written out node by node, the decoder-norm gradient
 * projection, global gradient clipping, Adam (PyTorch's update) and the unit-norm re-projection of W_dec.
 * Parameters and Adam moments are graph inputs and their updated values graph outputs, so one session run
 * is one optimiser step with no host round trip in between; the caller keeps the old values until it has
 * checked the readback (losses and gradient norm finite) and only then swaps.
 *
 * The formulas and their order follow the tfjs modules exactly (the architectures' files document the
 * maths); products with a transposed operand are Gemm attributes, which MLAS reads without a copy. The
 * masks are multiplied in as 0/1 floats (Cast of a comparison) rather than selected with Where or Sign,
 * which onnxruntime runs ~3-5x slower per element (a 0 times an infinite activation would be NaN where
 * Where gives 0, but such a step is non-finite and dropped either way).
 *
 * Inputs:  x [B, d_in] raw, y [B, d_out] raw (transcoders), scalars scale_in, scale_out, inv_rows (1/B),
 *          coefficient, step_size (lr / (1 - β1^t)), bc2_sqrt (√(1 - β2^t)); topk/batchtopk with AuxK:
 *          dead_bias [d_sae] (0 for dead features, -1e30 for live), k_aux int64 [1], aux_weight
 *          (aux_loss_coefficient · min(n_dead / k_aux_base, 1)); batchtopk: keep int64 [1] (k·B);
 *          then every parameter P and its moments m.P, v.P.
 * Outputs: next.P, next.m.P, next.v.P for every parameter, and `readback` [n + d_sae]: the loss terms,
 *          the target's total variance, Σ grad² (before clipping), the stats, then firing counts per feature.
 */
import type { SaeTrainingConfig } from '../../sae/config.js';
import type { ParamName } from '../../sae/architectures/types.js';
import { ADAM_EPS } from '../../sae/optim/adam.js';
import { GraphBuilder } from './graph-builder.js';
import { GraphOps } from './graph-ops.js';
import { ONNX_IR_VERSION, ONNX_OPSET, TensorElemType } from './onnx-proto.js';
import type { OnnxModel, OnnxValueInfo } from './onnx-proto.js';

export interface SaeStepGraphOptions {
  /** topk/batchtopk: include the AuxK loss (a step with dead features). */
  auxK: boolean;
}

export interface SaeStepGraph {
  model: OnnxModel;
  paramNames: ParamName[];
  lossNames: string[];
  statNames: string[];
  /** Scalar float inputs the caller feeds each step (besides x, y and the parameters). */
  scalarInputs: string[];
}

/**
 * Parameter shapes in the graph's layout, in a fixed order (the order of inputs and outputs). Both
 * matrices are held as [width, d_sae]: W_enc as the trainer stores it and W_dec transposed. Their
 * gradients are then products Aᵀ·B whose transposed operand is the narrow [B, width] one, which MLAS
 * computes ~25% faster than with the [B, d_sae] one transposed; the forward products cost the same in
 * either layout.
 */
export function stepParamShapes(cfg: SaeTrainingConfig): [ParamName, number[]][] {
  const dOut = cfg.d_out ?? cfg.d_in;
  const shapes: [ParamName, number[]][] = [
    ['W_enc', [cfg.d_in, cfg.d_sae]],
    ['W_dec', [dOut, cfg.d_sae]],
    ['b_dec', [dOut]],
  ];
  if (cfg.skip_connection) shapes.push(['W_skip', [cfg.d_in, dOut]]);
  const perFeature: Record<SaeTrainingConfig['architecture'], ParamName[]> = {
    standard: ['b_enc'],
    topk: ['b_enc'],
    batchtopk: ['b_enc'],
    jumprelu: ['b_enc', 'log_threshold'],
    gated: ['b_gate', 'r_mag', 'b_mag'],
  };
  for (const name of perFeature[cfg.architecture]) shapes.push([name, [cfg.d_sae]]);
  return shapes;
}

/** Parameters then first then second moments: the order of the state inputs and `next.` outputs. */
export function stepStateKeys(paramNames: readonly ParamName[]): string[] {
  return ['', 'm.', 'v.'].flatMap((prefix) => paramNames.map((n) => `${prefix}${n}`));
}

interface Term {
  acts: string;
  grad: string;
  skip: boolean;
}

export function buildSaeStepGraph(cfg: SaeTrainingConfig, options: SaeStepGraphOptions): SaeStepGraph {
  const b = new GraphBuilder();
  const g = new GraphOps(b, 'step');
  const transcoder = cfg.d_out !== null;
  const dOut = cfg.d_out ?? cfg.d_in;
  const shapes = stepParamShapes(cfg);
  const has = (name: ParamName): boolean => shapes.some(([n]) => n === name);
  const inputs: OnnxValueInfo[] = [];
  const f32 = (name: string, dims: Array<number | string>): string => {
    inputs.push({ name, elemType: TensorElemType.FLOAT, dims });
    return name;
  };
  const i64 = (name: string): string => {
    inputs.push({ name, elemType: TensorElemType.INT64, dims: [1] });
    return name;
  };

  const x = f32('x', ['batch', cfg.d_in]);
  const y = transcoder ? f32('y', ['batch', dOut]) : undefined;
  const scalarInputs = ['scale_in', 'scale_out', 'inv_rows', 'coefficient', 'step_size', 'bc2_sqrt'];
  const [scaleIn, scaleOut, invRows, coefficient, stepSize, bc2Sqrt] = scalarInputs.map((n) =>
    f32(n, []),
  ) as [string, string, string, string, string, string];
  const selectsTopK = cfg.architecture === 'topk' || cfg.architecture === 'batchtopk';
  const aux = selectsTopK && options.auxK && cfg.aux_loss_coefficient > 0;
  let deadBias = '';
  let kAux = '';
  let auxWeight = '';
  if (aux) {
    deadBias = f32('dead_bias', [cfg.d_sae]);
    kAux = i64('k_aux');
    auxWeight = f32('aux_weight', []);
    scalarInputs.push('aux_weight');
  }
  const keep = cfg.architecture === 'batchtopk' ? i64('keep') : '';
  const p: Partial<Record<ParamName, string>> = {};
  for (const [name, dims] of shapes) p[name] = f32(name, dims);
  for (const [name, dims] of shapes) f32(`m.${name}`, dims);
  for (const [name, dims] of shapes) f32(`v.${name}`, dims);
  const P = (name: ParamName): string => {
    const v = p[name];
    if (v === undefined) throw new Error(`buildSaeStepGraph: no parameter ${name}`);
    return v;
  };

  // ---- inputs, normalised
  g.scope = 'input';
  const xs = g.mul(x, scaleIn);
  const target = y === undefined ? xs : g.mul(y, scaleOut);
  const xc = cfg.apply_b_dec_to_input ? g.sub(xs, P('b_dec')) : xs;
  const totalVariance = g.mul(g.sumSquare(g.sub(target, g.mean(target, 0))), invRows);

  // ---- shared pieces
  const decode = (acts: string, withSkip: boolean): string => {
    const out = g.gemm(acts, P('W_dec'), { transB: true, bias: P('b_dec') });
    return withSkip && has('W_skip') ? g.add(out, g.gemm(xs, P('W_skip'))) : out;
  };
  /** weight · mean_b Σ_d (recon - target)² and its gradient (weight a graph scalar or a constant). */
  const squaredError = (recon: string, tgt: string, weight?: string): { loss: string; grad: string } => {
    const diff = g.sub(recon, tgt);
    const w = weight === undefined ? invRows : g.mul(weight, invRows);
    return { loss: g.mul(g.sumSquare(diff), w), grad: g.mul(diff, g.mul(w, g.c(2))) };
  };
  /** ‖W_dec[j]‖ of every feature: the columns of the graph's [width, d_sae] layout. */
  const featureNorms = (w: string): string => g.sqrt(g.colSumSquare(w));

  const losses: [string, string][] = [];
  const stats: [string, string][] = [];
  const grads: Partial<Record<ParamName, string>> = {};
  /** 0/1 [B, d_sae]: where the features fire (f > 0). */
  let firing = '';
  const terms: Term[] = [];
  let dPre = '';
  const extraWDecGrads: string[] = [];

  /** dL/d(acts) of each term: G_i W_decᵀ (W_dec as held: [width, d_sae]). */
  const dActs = (t: Term): string => g.gemm(t.grad, P('W_dec'));

  g.scope = cfg.architecture;
  switch (cfg.architecture) {
    case 'standard': {
      const f = g.relu(g.gemm(xc, P('W_enc'), { bias: P('b_enc') }));
      const mse = squaredError(decode(f, true), target);
      const norms = featureNorms(P('W_dec'));
      const fSum = g.sum(f, 0);
      const c = g.mul(coefficient, invRows);
      losses.push(['mse_loss', mse.loss], ['l1_loss', g.mul(g.sum(g.mul(fSum, norms)), c)]);
      const term = { acts: f, grad: mse.grad, skip: true };
      terms.push(term);
      // dL/df = G W_decᵀ + c ‖W_dec[j]‖, the penalty's part as the Gemm's bias.
      const dF = g.gemm(mse.grad, P('W_dec'), { bias: g.mul(norms, c) });
      firing = g.positive(f);
      dPre = g.mul(dF, firing);
      grads.b_enc = g.sum(dPre, 0);
      extraWDecGrads.push(g.mul(P('W_dec'), g.div(g.mul(fSum, c), norms)));
      break;
    }
    case 'topk':
    case 'batchtopk': {
      const h = g.gemm(xc, P('W_enc'), { bias: P('b_enc') });
      const norms = cfg.rescale_acts_by_decoder_norm ? featureNorms(P('W_dec')) : undefined;
      const hr = norms === undefined ? h : g.mul(h, norms);
      let threshold: string;
      if (cfg.architecture === 'topk') {
        threshold = g.rowMin(g.topkValues(hr, b.int64('c.k', [cfg.k])));
      } else {
        threshold = g.minAll(g.topkValues(g.reshape(hr, [1, -1]), keep));
      }
      const a = g.mul(g.relu(h), g.toFloat(g.greaterOrEqual(hr, threshold)));
      const recon = decode(a, true);
      const mse = squaredError(recon, target);
      losses.push(['mse_loss', mse.loss]);
      const main = { acts: a, grad: mse.grad, skip: true };
      terms.push(main);
      // a > 0 exactly where f > 0 (the norms are positive).
      firing = g.positive(a);
      dPre = g.mul(dActs(main), firing);
      if (aux) {
        const masked = g.add(hr, deadBias);
        const auxSelected = g.toFloat(g.greaterOrEqual(masked, g.rowMin(g.topkValues(masked, kAux))));
        const auxActs = g.mul(h, auxSelected);
        const residual = g.sub(target, recon);
        const auxMse = squaredError(decode(auxActs, false), residual, auxWeight);
        losses.push(['auxiliary_reconstruction_loss', auxMse.loss]);
        const auxTerm = { acts: auxActs, grad: auxMse.grad, skip: false };
        terms.push(auxTerm);
        dPre = g.add(dPre, g.mul(dActs(auxTerm), auxSelected));
      } else {
        losses.push(['auxiliary_reconstruction_loss', g.c(0)]);
      }
      grads.b_enc = g.sum(dPre, 0);
      if (cfg.architecture === 'batchtopk') {
        // Smallest positive activation: zeros are lifted to 1e30 (1e30 means nothing fired).
        const f = norms === undefined ? a : g.mul(a, norms);
        const lifted = g.add(f, g.mul(g.sub(g.c(1), firing), g.c(1e30)));
        stats.push(['min_positive_act', g.minAll(lifted)]);
      }
      break;
    }
    case 'jumprelu': {
      const h = g.gemm(xc, P('W_enc'), { bias: P('b_enc') });
      const theta = g.exp(P('log_threshold'));
      // θ > 0, so f > 0 exactly where active.
      firing = g.toFloat(g.greater(h, theta));
      const f = g.mul(h, firing);
      const mse = squaredError(decode(f, true), target);
      const c = g.mul(coefficient, invRows);
      losses.push(['mse_loss', mse.loss], ['l0_loss', g.mul(g.sum(firing), c)]);
      const term = { acts: f, grad: mse.grad, skip: true };
      terms.push(term);
      const dF = dActs(term);
      dPre = g.mul(dF, firing);
      grads.b_enc = g.sum(dPre, 0);
      const eps = cfg.jumprelu_bandwidth;
      const kernel = g.toFloat(g.less(g.abs(g.div(g.sub(h, theta), g.c(eps))), g.c(0.5)));
      // ∂L/∂θ = -(θ/ε) Σ_b K·∂L/∂f - (c/(Bε)) Σ_b K
      const dTheta = g.sub(
        g.mul(g.sum(g.mul(dF, kernel), 0), g.div(theta, g.c(-eps))),
        g.mul(g.sum(kernel, 0), g.div(c, g.c(eps))),
      );
      grads.log_threshold = g.mul(dTheta, theta);
      break;
    }
    case 'gated': {
      const pre = g.gemm(xc, P('W_enc'));
      const piGate = g.add(pre, P('b_gate'));
      const expR = g.exp(P('r_mag'));
      const piMag = g.add(g.mul(pre, expR), P('b_mag'));
      // The gate's mask is also the derivative of relu(π_gate).
      const gateOpen = g.positive(piGate);
      const f = g.mul(g.relu(piMag), gateOpen);
      const mse = squaredError(decode(f, true), target);
      const gate = g.relu(piGate);
      const norms = featureNorms(P('W_dec'));
      const gSum = g.sum(gate, 0);
      const c = g.mul(coefficient, invRows);
      const auxMse = squaredError(decode(gate, true), target);
      losses.push(
        ['mse_loss', mse.loss],
        ['l1_loss', g.mul(g.sum(g.mul(gSum, norms)), c)],
        ['auxiliary_reconstruction_loss', auxMse.loss],
      );
      const main = { acts: f, grad: mse.grad, skip: true };
      const gateTerm = { acts: gate, grad: auxMse.grad, skip: true };
      terms.push(main, gateTerm);
      firing = g.positive(f);
      const dPiMag = g.mul(dActs(main), firing);
      const dGate = g.gemm(gateTerm.grad, P('W_dec'), { bias: g.mul(norms, c) });
      const dPiGate = g.mul(dGate, gateOpen);
      dPre = g.add(g.mul(dPiMag, expR), dPiGate);
      grads.b_gate = g.sum(dPiGate, 0);
      grads.b_mag = g.sum(dPiMag, 0);
      grads.r_mag = g.mul(g.sum(g.mul(dPiMag, pre), 0), expR);
      extraWDecGrads.push(g.mul(P('W_dec'), g.div(g.mul(gSum, c), norms)));
      break;
    }
  }

  // ---- decoder and encoder backward
  g.scope = 'backward';
  let wDecGrad = '';
  for (const t of terms) {
    // Gemm's C input accumulates the terms: Σ_i Gᵢᵀ actsᵢ (the [width, d_sae] layout) without separate adds.
    wDecGrad = g.gemm(t.grad, t.acts, { transA: true, ...(wDecGrad === '' ? {} : { bias: wDecGrad }) });
  }
  for (const extra of extraWDecGrads) wDecGrad = g.add(wDecGrad, extra);
  let bDecGrad = terms.map((t) => g.sum(t.grad, 0)).reduce((acc, s) => g.add(acc, s));
  if (has('W_skip')) {
    const skipGrads = terms.filter((t) => t.skip).map((t) => t.grad);
    grads.W_skip = g.gemm(
      xs,
      skipGrads.reduce((acc, s) => g.add(acc, s)),
      { transA: true },
    );
  }
  grads.W_enc = g.gemm(xc, dPre, { transA: true });
  if (cfg.apply_b_dec_to_input) {
    const dPreSum = cfg.architecture === 'gated' ? g.sum(dPre, 0) : grads.b_enc!;
    bDecGrad = g.add(bDecGrad, g.neg(g.reshape(g.gemm(P('W_enc'), g.column(dPreSum)), [-1])));
  }
  if (cfg.normalize_sae_decoder) {
    // Remove from each feature's gradient its component along the feature's decoder vector.
    const w = P('W_dec');
    const coef = g.div(g.sum(g.mul(wDecGrad, w), 0), g.colSumSquare(w));
    wDecGrad = g.sub(wDecGrad, g.mul(w, coef));
  }
  grads.W_dec = wDecGrad;
  grads.b_dec = bDecGrad;

  // ---- clipping and Adam
  g.scope = 'adam';
  const gradSq = shapes.map(([name]) => g.sumSquare(grads[name]!)).reduce((acc, s) => g.add(acc, s));
  const clip =
    cfg.max_grad_norm > 0
      ? g.min(g.div(g.c(cfg.max_grad_norm), g.add(g.sqrt(gradSq), g.c(1e-6))), g.c(1))
      : undefined;
  const b1 = cfg.adam_beta1;
  const b2 = cfg.adam_beta2;
  // PyTorch's update, p -= step_size · m / (√v / √(1-β2^t) + eps), with the clip factor and the bias
  // corrections folded into scalars so that each parameter is read and written as few times as possible:
  // m = β1·m + (1-β1)·clip·g, v = β2·v + (1-β2)·clip²·g², p -= (step_size·√(1-β2^t)) · m / (√v + eps·√(1-β2^t)).
  const mScale = clip === undefined ? g.c(1 - b1) : g.mul(clip, g.c(1 - b1));
  const vScale = clip === undefined ? g.c(1 - b2) : g.mul(g.mul(clip, clip), g.c(1 - b2));
  const epsScaled = g.mul(bc2Sqrt, g.c(ADAM_EPS));
  const stepScaled = g.mul(stepSize, bc2Sqrt);
  for (const [name] of shapes) {
    const grad = grads[name]!;
    const m = g.add(g.mul(`m.${name}`, g.c(b1)), g.mul(grad, mScale), `next.m.${name}`);
    const v = g.add(g.mul(`v.${name}`, g.c(b2)), g.mul(g.mul(grad, grad), vScale), `next.v.${name}`);
    const updated = g.mul(g.div(m, g.add(g.sqrt(v), epsScaled)), stepScaled);
    if (name === 'W_dec' && cfg.normalize_sae_decoder) {
      const w = g.sub(P(name), updated);
      g.div(w, g.sqrt(g.colSumSquare(w)), `next.${name}`);
    } else {
      g.sub(P(name), updated, `next.${name}`);
    }
  }

  // ---- readback
  g.scope = 'readback';
  const fired = g.sum(firing, 0);
  const scalars = [...losses.map(([, t]) => t), totalVariance, gradSq, ...stats.map(([, t]) => t)];
  g.concat([...scalars.map((s) => g.reshape(s, [1])), fired], 'readback');

  const outputs: OnnxValueInfo[] = [];
  for (const prefix of ['next.', 'next.m.', 'next.v.']) {
    for (const [name, dims] of shapes)
      outputs.push({ name: `${prefix}${name}`, elemType: TensorElemType.FLOAT, dims });
  }
  outputs.push({
    name: 'readback',
    elemType: TensorElemType.FLOAT,
    dims: [scalars.length + cfg.d_sae],
  });
  return {
    model: {
      graph: {
        name: `sae_step_${cfg.architecture}`,
        nodes: b.nodes,
        initializers: b.initializers,
        inputs,
        outputs,
      },
      opset: ONNX_OPSET,
      irVersion: ONNX_IR_VERSION,
      producer: 'saeflow',
    },
    paramNames: shapes.map(([n]) => n),
    lossNames: losses.map(([n]) => n),
    statNames: stats.map(([n]) => n),
    scalarInputs,
  };
}
