/**
 * jumprelu SAE, as SAELens's JumpReLUTrainingSAE (Gemma Scope's recipe, "step" sparsity loss):
 *   h = x_c W_enc + b_enc,  θ = exp(log_threshold),  f = h · 1[h > θ],  x̂ = f W_decᵀ + b_dec (+ x W_skip)
 *   loss = mse + l0_coefficient · mean_b Σ_j 1[h_bj > θ_j]
 * Straight-through estimators with a rectangle kernel K(u) = 1[|u| < 1/2] of bandwidth ε:
 *   ∂f/∂h = 1[h > θ] (no estimator on h);  ∂f/∂θ ≈ -(θ/ε) K((h-θ)/ε);  ∂1[h > θ]/∂θ ≈ -(1/ε) K((h-θ)/ε)
 * and no gradient from the L0 term to h. log_threshold's gradient is θ · ∂L/∂θ.
 * Saved as SAELens's `jumprelu`: f = relu(h) · 1[h > threshold], threshold = exp(log_threshold).
 */
import { actsGrad, centeredInput, decodeLinear, encodeLinear, linearGrads, squaredError } from './common.js';
import { param } from './types.js';
import { copy, mapped } from '../host-tensor.js';
import type { Architecture, InferenceEncoder } from './types.js';

export const jumpreluEncoder: InferenceEncoder = {
  kind: 'jumprelu',
  tensors: ['b_enc', 'threshold'],
  encode(o, w, xc) {
    const h = o.matMul(xc, w('W_enc'), { bias: w('b_enc') });
    return o.mul(o.relu(h), o.greater(h, w('threshold')));
  },
};

export const jumprelu: Architecture = {
  name: 'jumprelu',
  options: {
    l0_coefficient: { kind: { type: 'number', min: 0 }, default: 1.0 },
    l0_warm_up_steps: { kind: { type: 'int', min: 0 }, default: 0 },
    jumprelu_bandwidth: { kind: { type: 'number', exclusiveMin: 0 }, default: 0.05 },
    jumprelu_init_threshold: { kind: { type: 'number', exclusiveMin: 0 }, default: 0.01 },
  },
  coefficient: { name: 'l0', value: 'l0_coefficient', warmUpSteps: 'l0_warm_up_steps' },
  savedEncoder: 'jumprelu',
  savedTensors: (get) => ({
    b_enc: copy(get('b_enc')),
    threshold: mapped(get('log_threshold'), Math.exp),
  }),
  encoder: jumpreluEncoder,
  featureParams: (cfg) => ({ b_enc: 0, log_threshold: Math.log(cfg.jumprelu_init_threshold) }),

  train(o, p, input, cfg) {
    const xc = centeredInput(o, p, input.x, cfg);
    const h = encodeLinear(o, p, xc, param(p, 'b_enc'));
    const theta = o.exp(param(p, 'log_threshold'));
    // θ > 0, so f > 0 exactly where active.
    const firing = o.greater(h, theta);
    const f = o.mul(h, firing);
    const reconstruction = decodeLinear(o, p, f, input.x);
    const mse = squaredError(o, reconstruction, input.target, input.invRows);
    const c = o.mul(input.coefficient, input.invRows);
    const dF = actsGrad(o, p, mse.grad);
    const dPre = o.mul(dF, firing);
    const bEnc = o.sum(dPre, 0);
    const terms = [{ acts: f, grad: mse.grad, skip: true }];
    const grads = linearGrads(o, p, cfg, { x: input.x, xc, terms, dPre, dPreSum: bEnc });
    const eps = o.scalar(cfg.jumprelu_bandwidth);
    const kernel = o.less(o.abs(o.div(o.sub(h, theta), eps)), o.scalar(0.5));
    // ∂L/∂θ = -(θ/ε) Σ_b K·∂L/∂f - (c/ε) Σ_b K
    const dTheta = o.sub(
      o.mul(o.sum(o.mul(dF, kernel), 0), o.div(theta, o.neg(eps))),
      o.mul(o.sum(kernel, 0), o.div(c, eps)),
    );
    return {
      losses: [
        ['mse_loss', mse.loss],
        ['l0_loss', o.mul(o.sum(firing), c)],
      ],
      stats: [],
      firing,
      reconstruction,
      grads: { ...grads, b_enc: bEnc, log_threshold: o.mul(dTheta, theta) },
    };
  },
};
