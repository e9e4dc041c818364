/**
 * gated SAE, as SAELens's GatedTrainingSAE:
 *   P = x_c W_enc,  π_gate = P + b_gate,  π_mag = P ⊙ exp(r_mag) + b_mag
 *   f = 1[π_gate > 0] ⊙ relu(π_mag),  x̂ = f W_decᵀ + b_dec (+ x W_skip)
 *   g = relu(π_gate)
 *   loss = mse + l1_coefficient · mean_b Σ_j g_bj ‖W_dec[j]‖ + mean_b ‖g W_decᵀ + b_dec (+ x W_skip) - y‖²
 * The gate's step has no gradient; the auxiliary reconstruction trains the gate path.
 * Saved as SAELens's `gated` (W_enc, b_gate, r_mag, b_mag; no b_enc).
 */
import {
  actsGrad,
  centeredInput,
  decodeLinear,
  featureNorms,
  linearGrads,
  normPenaltyGrad,
  squaredError,
} from './common.js';
import { L1_PENALTY } from './standard.js';
import { param } from './types.js';
import { copy } from '../host-tensor.js';
import type { Architecture, InferenceEncoder } from './types.js';

export const gatedEncoder: InferenceEncoder = {
  kind: 'gated',
  tensors: ['b_gate', 'b_mag', 'r_mag'],
  encode(o, w, xc) {
    const pre = o.matMul(xc, w('W_enc'));
    const gate = o.greater(o.add(pre, w('b_gate')), o.scalar(0));
    return o.mul(gate, o.relu(o.add(o.mul(pre, o.exp(w('r_mag'))), w('b_mag'))));
  },
};

export const gated: Architecture = {
  name: 'gated',
  ...L1_PENALTY,
  savedEncoder: 'gated',
  savedTensors: (get) => ({
    b_gate: copy(get('b_gate')),
    r_mag: copy(get('r_mag')),
    b_mag: copy(get('b_mag')),
  }),
  encoder: gatedEncoder,
  featureParams: () => ({ b_gate: 0, r_mag: 0, b_mag: 0 }),

  train(o, p, input, cfg) {
    const xc = centeredInput(o, p, input.x, cfg);
    const pre = o.matMul(xc, param(p, 'W_enc'));
    const piGate = o.add(pre, param(p, 'b_gate'));
    const expR = o.exp(param(p, 'r_mag'));
    const piMag = o.add(o.mul(pre, expR), param(p, 'b_mag'));
    // The gate's mask is also the derivative of relu(π_gate).
    const gateOpen = o.greater(piGate, o.scalar(0));
    const f = o.mul(o.relu(piMag), gateOpen);
    const reconstruction = decodeLinear(o, p, f, input.x);
    const mse = squaredError(o, reconstruction, input.target, input.invRows);
    const gate = o.relu(piGate);
    const norms = featureNorms(o, param(p, 'W_dec'));
    const gSum = o.sum(gate, 0);
    const c = o.mul(input.coefficient, input.invRows);
    const aux = squaredError(o, decodeLinear(o, p, gate, input.x), input.target, input.invRows);
    const firing = o.greater(f, o.scalar(0));
    const dPiMag = o.mul(actsGrad(o, p, mse.grad), firing);
    const dPiGate = o.mul(actsGrad(o, p, aux.grad, o.mul(norms, c)), gateOpen);
    const dPre = o.add(o.mul(dPiMag, expR), dPiGate);
    const terms = [
      { acts: f, grad: mse.grad, skip: true },
      { acts: gate, grad: aux.grad, skip: true },
    ];
    const grads = linearGrads(o, p, cfg, {
      x: input.x,
      xc,
      terms,
      dPre,
      dPreSum: o.sum(dPre, 0),
      extraWDec: [normPenaltyGrad(o, param(p, 'W_dec'), norms, o.mul(gSum, c))],
    });
    return {
      losses: [
        ['mse_loss', mse.loss],
        ['l1_loss', o.mul(o.sum(o.mul(gSum, norms)), c)],
        ['auxiliary_reconstruction_loss', aux.loss],
      ],
      stats: [],
      firing,
      reconstruction,
      grads: {
        ...grads,
        b_gate: o.sum(dPiGate, 0),
        b_mag: o.sum(dPiMag, 0),
        r_mag: o.mul(o.sum(o.mul(dPiMag, pre), 0), expR),
      },
    };
  },
};
