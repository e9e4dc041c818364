/**
 * standard (ReLU) SAE, as SAELens's StandardTrainingSAE:
 *   h = x_c W_enc + b_enc,  f = relu(h),  x̂ = f W_decᵀ + b_dec (+ x W_skip)
 *   loss = mse + l1_coefficient · mean_b Σ_j f_bj ‖W_dec[j]‖
 * Saved as SAELens's `standard`: f = relu(x_c W_enc + b_enc).
 */
import {
  actsGrad,
  centeredInput,
  decodeLinear,
  encodeLinear,
  featureNorms,
  linearGrads,
  normPenaltyGrad,
  squaredError,
} from './common.js';
import { param } from './types.js';
import { copy } from '../host-tensor.js';
import type { Architecture, InferenceEncoder } from './types.js';

export const standardEncoder: InferenceEncoder = {
  kind: 'standard',
  tensors: ['b_enc'],
  encode: (o, w, xc) => o.relu(o.matMul(xc, w('W_enc'), { bias: w('b_enc') })),
};

/** The L1 penalty's options and coefficient, shared with gated. */
export const L1_PENALTY: Pick<Architecture, 'options' | 'coefficient'> = {
  options: {
    l1_coefficient: { kind: { type: 'number', min: 0 }, default: 1.0 },
    l1_warm_up_steps: { kind: { type: 'int', min: 0 }, default: 0 },
  },
  coefficient: { name: 'l1', value: 'l1_coefficient', warmUpSteps: 'l1_warm_up_steps' },
};

export const standard: Architecture = {
  name: 'standard',
  ...L1_PENALTY,
  savedEncoder: 'standard',
  savedTensors: (get) => ({ b_enc: copy(get('b_enc')) }),
  encoder: standardEncoder,
  featureParams: () => ({ b_enc: 0 }),

  train(o, p, input, cfg) {
    const xc = centeredInput(o, p, input.x, cfg);
    const f = o.relu(encodeLinear(o, p, xc, param(p, 'b_enc')));
    const reconstruction = decodeLinear(o, p, f, input.x);
    const mse = squaredError(o, reconstruction, input.target, input.invRows);
    const norms = featureNorms(o, param(p, 'W_dec'));
    const fSum = o.sum(f, 0);
    const c = o.mul(input.coefficient, input.invRows);
    const l1 = o.mul(o.sum(o.mul(fSum, norms)), c);
    // dL/df = G W_dec + c ‖W_dec[j]‖, the penalty's part as the product's bias.
    const firing = o.greater(f, o.scalar(0));
    const dPre = o.mul(actsGrad(o, p, mse.grad, o.mul(norms, c)), firing);
    const bEnc = o.sum(dPre, 0);
    const grads = linearGrads(o, p, cfg, {
      x: input.x,
      xc,
      terms: [{ acts: f, grad: mse.grad, skip: true }],
      dPre,
      dPreSum: bEnc,
      extraWDec: [normPenaltyGrad(o, param(p, 'W_dec'), norms, o.mul(fSum, c))],
    });
    return {
      losses: [
        ['mse_loss', mse.loss],
        ['l1_loss', l1],
      ],
      stats: [],
      firing,
      reconstruction,
      grads: { ...grads, b_enc: bEnc },
    };
  },
};
