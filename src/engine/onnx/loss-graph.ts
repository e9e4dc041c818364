/**
 * Next-token losses and KL divergences computed inside the graph from [batch, seq, vocab] logits, so that
 * only per-position numbers leave it. Definitions as in Gpt2Model and the evaluator:
 * - loss[b, p] = logsumexp(logits[b, p]) - logits[b, p, token[b, p + 1]], for p < seq - 1;
 * - KL[b, p] = Σ_v p_v (log p_v - log q_v) = Σ_v p_v (a_v - b_v) + lse(b) - lse(a), with p = softmax(a) the
 *   reference (clean) distribution and q = softmax(b) the compared one, clamped at 0 against rounding. The
 *   log-probabilities are subtracted before the weighted sum, so no term is 0·log 0 and the large terms of
 *   nearly equal distributions cancel before they are summed.
 */
import type { SharingGraphBuilder } from './sharing-builder.js';

const int = (value: number) => ({ kind: 'int' as const, value });

/** log softmax over the vocabulary. */
export function logProbabilities(b: SharingGraphBuilder, logits: string, prefix: string): string {
  return b.op('LogSoftmax', [logits], prefix, undefined, { axis: int(-1) });
}

export function probabilities(b: SharingGraphBuilder, logits: string, prefix: string): string {
  return b.op('Softmax', [logits], prefix, undefined, { axis: int(-1) });
}

/** -log q(token p + 1) at every position but the last: [batch, seq - 1] from log-probabilities. */
export function nextTokenLoss(
  b: SharingGraphBuilder,
  logProbs: string,
  ids: string,
  prefix: string,
  output: string,
): string {
  // ids[:, 1:] as [batch, seq - 1, 1]: GatherElements reads only the first seq - 1 positions of the
  // [batch, seq, vocab] input (indices may be shorter than the input on the other axes), so nothing is sliced.
  const next = b.op(
    'Slice',
    [ids, b.int64('c.one', [1]), b.int64('c.int_max', [2 ** 31 - 1]), b.int64('c.one', [1])],
    prefix,
  );
  const indices = b.op('Unsqueeze', [next, b.int64('c.two', [2])], prefix);
  const picked = b.op('GatherElements', [logProbs, indices], prefix, undefined, { axis: int(2) });
  const squeezed = b.op('Squeeze', [picked, b.int64('c.two', [2])], prefix);
  return b.op('Neg', [squeezed], prefix, output);
}

/** KL(p ‖ q) per position, [batch, seq], from the reference's probabilities and both log-probabilities. */
export function klDivergence(
  b: SharingGraphBuilder,
  ref: { probs: string; logProbs: string },
  logProbs: string,
  prefix: string,
  output: string,
): string {
  const diff = b.op('Sub', [ref.logProbs, logProbs], prefix);
  const weighted = b.op('Mul', [ref.probs, diff], prefix);
  const kl = b.op('ReduceSum', [weighted, b.int64('c.last_axis', [-1])], prefix, undefined, {
    keepdims: int(0),
  });
  return b.op('Max', [kl, b.scalar('c.zero_f', 0)], prefix, output);
}
