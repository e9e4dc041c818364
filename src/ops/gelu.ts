/**
 * GELU written out in elementwise ops, for backends without a fused kernel (TensorFlow.js). The graph
 * backend runs onnxruntime's FastGelu / Gelu, which compute these same formulas in one pass.
 */
import type { ElementwiseOps, GeluApproximation } from './ops.js';

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

export function geluFormula<T>(o: ElementwiseOps<T>, x: T, approximate: GeluApproximation): T {
  if (approximate === 'tanh') {
    // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), HF's NewGELUActivation (GPT-2's gelu_new).
    const cube = o.mul(o.mul(x, x), x);
    const inner = o.mul(o.add(x, o.mul(cube, o.scalar(0.044715))), o.scalar(SQRT_2_OVER_PI));
    return o.mul(o.mul(x, o.scalar(0.5)), o.add(o.tanh(inner), o.scalar(1)));
  }
  return o.mul(o.mul(x, o.scalar(0.5)), o.add(o.erf(o.mul(x, o.scalar(Math.SQRT1_2))), o.scalar(1)));
}
