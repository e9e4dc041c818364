/**
 * Next-token loss and KL divergence on the op layer, one definition for both engines (onnxruntime computes
 * them inside its graph, TensorFlow.js eagerly, a chunk of sequences at a time):
 * - loss[b, p] = -log softmax(logits[b, p])[token[b, p + 1]], for p < seq - 1;
 * - KL[b, p] = Σ_v p_v (log p_v - log q_v), p the reference (clean) distribution, q the compared one,
 *   clamped at 0 against rounding. The log-probabilities are subtracted before the weighted sum, so no term
 *   is 0·log 0 and the large terms of nearly equal distributions cancel before they are summed.
 */
import type { Ops } from '../ops/ops.js';

/** -log q(token p + 1) at every position but the last: [batch, seq - 1] from log-probabilities [batch, seq, vocab]. */
export function nextTokenLoss<T>(o: Ops<T>, logProbs: T, ids: T): T {
  // ids[:, 1:] as [batch, seq - 1, 1]: gatherLast reads only the first seq - 1 positions of logProbs, so
  // nothing is sliced out of the [batch, seq, vocab] tensor.
  // Sizes copied (0) rather than inferred (-1): a one-token sequence has no next token, and -1 cannot be
  // inferred for an empty tensor.
  const next = o.reshape(o.slice(ids, 1, 1, Infinity), [0, 0, 1]);
  return o.neg(o.reshape(o.gatherLast(logProbs, next), [0, 0]));
}

/** The reference side of a KL: softmax and log softmax of the clean logits. */
export interface ReferenceLogits<T> {
  probs: T;
  logProbs: T;
}

export function referenceOf<T>(o: Ops<T>, logits: T): ReferenceLogits<T> {
  return { probs: o.softmax(logits), logProbs: o.logSoftmax(logits) };
}

/** KL(reference ‖ q) per position, [batch, seq], from q's log-probabilities. */
export function klDivergence<T>(o: Ops<T>, ref: ReferenceLogits<T>, logProbs: T): T {
  const kl = o.sum(o.mul(ref.probs, o.sub(ref.logProbs, logProbs)), -1);
  return o.maximum(kl, o.scalar(0));
}
